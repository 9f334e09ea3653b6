import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import {
  DEPLOYMENTS,
  ENDPOINT_SLICES,
  type KubeApi,
  KubeApiError,
  type KubeObject,
  type ResourceType,
} from '../../node/runtime/kubernetes/kube-api.ts'
import { MANAGED_BY } from '../../node/runtime/kubernetes/workload.ts'

/**
 * The address the actor's pods listen on: EndpointSlices refuse loopback addresses, so the machine's own
 * (non-loopback) IPv4 address stands in for a pod IP.
 */
export function podAddress(): string {
  for (const addresses of Object.values(networkInterfaces()))
    for (const address of addresses ?? [])
      if (address.family === 'IPv4' && !address.internal) return address.address
  throw new Error(
    'this machine has no non-loopback IPv4 address to give pods (EndpointSlices refuse loopback)',
  )
}

const POD_HOST_CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'node', 'pod-host', 'cli.ts')
export const PODS: ResourceType = { apiVersion: 'v1', plural: 'pods' }
const SERVICE_ACCOUNTS: ResourceType = { apiVersion: 'v1', plural: 'serviceaccounts' }

interface Deployment extends KubeObject {
  spec: {
    replicas?: number
    template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[] } }
  }
}
interface Container {
  env?: { name: string; value?: string }[]
}

/** A pod the actor runs: its Pod object in the API server, and the real process behind it on loopback. */
export interface LocalPod {
  name: string
  namespace: string
  deployment: string
  process: ChildProcess
  port: number
}

export interface ClusterActorEvents {
  'pod-ready': [LocalPod]
  'pod-stopped': [LocalPod]
  /** The API server refused a Pod of a Deployment's template (admission, PodSecurity). */
  'pod-refused': [{ deployment: string; namespace: string; message: string }]
  /** A reconcile pass finished for a namespace (every Deployment's pods match its replicas). */
  settled: [string]
  /** Something the actor could not do (a test that listens sees it; otherwise it is thrown). */
  error: [Error]
}

/**
 * Plays the parts of a cluster that cannot run here — the ReplicaSet controller, the kubelet and the
 * EndpointSlice controller — explicitly: for each Deployment a node applies, it creates the Pods through the
 * real API server (so admission, PodSecurity `restricted` included, judges the node's pod template), runs each
 * pod as a real local process (the pod host the image's entrypoint would run, with the container's
 * environment), and publishes the EndpointSlices that make it reachable, labelled as the real controller does
 * (the Service's labels plus `kubernetes.io/service-name`). It follows Deployments with a watch and resumes
 * after the API server comes back.
 */
export class ClusterActor extends EventEmitter<ClusterActorEvents> {
  readonly #api: KubeApi
  readonly #namespaces: string[]
  readonly pods = new Map<string, LocalPod>()
  readonly #abort = new AbortController()
  readonly #loops: Promise<void>[] = []
  readonly #deployments = new Map<string, Deployment>()
  #reconciling: Promise<void> = Promise.resolve()
  /** Where this actor's pods listen (a pod IP stand-in). */
  readonly address = podAddress()

  constructor(api: KubeApi, namespaces: string[]) {
    super()
    this.#api = api
    this.#namespaces = namespaces
  }

  async start(): Promise<void> {
    for (const namespace of this.#namespaces) {
      // The ServiceAccount controller's part: admission wants the namespace's default account to exist.
      await this.#api
        .create(SERVICE_ACCOUNTS, namespace, {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name: 'default' },
        })
        .catch((err) => {
          if (!(err instanceof KubeApiError && err.status === 409)) throw err
        })
      this.#loops.push(this.#follow(namespace))
    }
  }

  async stop(): Promise<void> {
    this.#abort.abort()
    await Promise.allSettled(this.#loops)
    await this.#reconciling.catch(() => {})
    await Promise.all([...this.pods.values()].map((pod) => this.#stopProcess(pod)))
    this.pods.clear()
  }

  podsOf(namespace: string, deployment?: string): LocalPod[] {
    return [...this.pods.values()].filter(
      (p) => p.namespace === namespace && (deployment === undefined || p.deployment === deployment),
    )
  }

  /** Kills a pod's process as a crashed container would die, and marks its endpoint not ready. */
  async crash(pod: LocalPod): Promise<void> {
    this.pods.delete(`${pod.namespace}/${pod.name}`)
    await this.#stopProcess(pod)
    await this.#api.delete(ENDPOINT_SLICES, pod.namespace, pod.name).catch(() => {})
    await this.#api.delete(PODS, pod.namespace, pod.name).catch(() => {})
    this.emit('pod-stopped', pod)
    this.#schedule(pod.namespace)
  }

  async #follow(namespace: string): Promise<void> {
    const signal = this.#abort.signal
    const selector = `app.kubernetes.io/managed-by=${MANAGED_BY}`
    while (!signal.aborted) {
      try {
        const list = await this.#api.list<Deployment>(DEPLOYMENTS, namespace, selector)
        for (const key of [...this.#deployments.keys()])
          if (key.startsWith(`${namespace}/`)) this.#deployments.delete(key)
        for (const item of list.items) this.#deployments.set(`${namespace}/${item.metadata.name}`, item)
        this.#schedule(namespace)
        let version = list.metadata.resourceVersion
        while (!signal.aborted) {
          await this.#api.watch<Deployment>(
            DEPLOYMENTS,
            namespace,
            version,
            (event) => {
              version = event.object.metadata.resourceVersion ?? version
              if (event.type === 'BOOKMARK') return
              const key = `${namespace}/${event.object.metadata.name}`
              if (event.type === 'DELETED') this.#deployments.delete(key)
              else this.#deployments.set(key, event.object)
              this.#schedule(namespace)
            },
            signal,
            selector,
          )
        }
      } catch {
        if (signal.aborted) return
        // The API server is away: like a real controller, try again shortly (the pods keep running).
        await delay(200, undefined, { signal }).catch(() => {})
      }
    }
  }

  #schedule(namespace: string): void {
    this.#reconciling = this.#reconciling
      .then(() => this.#reconcile(namespace))
      .catch((err) => this.emit('error', err))
      .then(() => {
        if (!this.#abort.signal.aborted) this.emit('settled', namespace)
      })
  }

  async #reconcile(namespace: string): Promise<void> {
    if (this.#abort.signal.aborted) return
    const wanted = [...this.#deployments].filter(([key]) => key.startsWith(`${namespace}/`))
    const names = new Set(wanted.map(([, d]) => d.metadata.name))
    for (const pod of this.podsOf(namespace)) if (!names.has(pod.deployment)) await this.#remove(pod)
    for (const [, deployment] of wanted) {
      const pods = this.podsOf(namespace, deployment.metadata.name)
      const replicas = deployment.spec.replicas ?? 1
      for (const extra of pods.slice(replicas)) await this.#remove(extra)
      for (let i = pods.length; i < replicas; i++) {
        const started = await this.#startPod(namespace, deployment)
        if (!started) break
      }
    }
  }

  async #startPod(namespace: string, deployment: Deployment): Promise<boolean> {
    const name = `${deployment.metadata.name}-${randomBytes(3).toString('hex')}`
    const template = deployment.spec.template
    try {
      await this.#api.create(PODS, namespace, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace, labels: template.metadata.labels },
        spec: template.spec,
      })
    } catch (err) {
      this.emit('pod-refused', {
        deployment: deployment.metadata.name,
        namespace,
        message: (err as Error).message,
      })
      return false
    }
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' }
    for (const variable of template.spec.containers[0]?.env ?? []) env[variable.name] = variable.value ?? ''
    env.NEXUS_LOG_LEVEL = 'warn'
    const child = spawn(process.execPath, [POD_HOST_CLI, '--host', this.address, '--port', '0'], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const port = await new Promise<number>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        const match = /listening on (\d+)/.exec(out)
        if (match !== null) resolve(Number(match[1]))
      })
      child.once('exit', (code) => reject(new Error(`pod host exited (${code}) before listening`)))
    })
    const pod: LocalPod = { name, namespace, deployment: deployment.metadata.name, process: child, port }
    this.pods.set(`${namespace}/${name}`, pod)
    await this.#publish(pod, deployment)
    this.emit('pod-ready', pod)
    return true
  }

  /** The EndpointSlice controller's part: one slice per pod, with the Service's labels. */
  async #publish(pod: LocalPod, deployment: Deployment): Promise<void> {
    const service = deployment.metadata.name
    await this.#api.create(ENDPOINT_SLICES, pod.namespace, {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: pod.name,
        labels: {
          ...deployment.metadata.labels,
          'kubernetes.io/service-name': service,
          'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        },
      },
      addressType: 'IPv4',
      endpoints: [
        {
          addresses: [this.address],
          conditions: { ready: true, serving: true, terminating: false },
          targetRef: { kind: 'Pod', name: pod.name, namespace: pod.namespace },
        },
      ],
      ports: [{ name: 'mcp', port: pod.port, protocol: 'TCP' }],
    })
  }

  async #remove(pod: LocalPod): Promise<void> {
    this.pods.delete(`${pod.namespace}/${pod.name}`)
    await this.#api.delete(ENDPOINT_SLICES, pod.namespace, pod.name).catch(() => {})
    await this.#api.delete(PODS, pod.namespace, pod.name).catch(() => {})
    await this.#stopProcess(pod)
    this.emit('pod-stopped', pod)
  }

  async #stopProcess(pod: LocalPod): Promise<void> {
    if (pod.process.exitCode !== null || pod.process.signalCode !== null) return
    pod.process.kill('SIGTERM')
    await once(pod.process, 'exit')
  }
}
