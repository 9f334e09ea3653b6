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
import { LABEL_NODE, MANAGED_BY, POD_HOST_SERVER_ENV } from '../../node/runtime/kubernetes/workload.ts'
import { freePort, portAccepts } from '../../node/runtime/ports.ts'
import type { Container as OciContainer } from '../support/oci-runtime.ts'
import type { ImageContainer, OciPods } from './oci-pods.ts'

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

const POD_HOST_CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'nexus-pod-host.ts')
export const PODS: ResourceType = { apiVersion: 'v1', plural: 'pods' }
const SERVICE_ACCOUNTS: ResourceType = { apiVersion: 'v1', plural: 'serviceaccounts' }

interface Deployment extends KubeObject {
  spec: {
    replicas?: number
    template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[] } }
  }
}
interface Container extends ImageContainer {
  command?: string[]
  args?: string[]
  env?: { name: string; value?: string }[]
  ports?: { containerPort: number }[]
}

/** A pod the actor runs: its Pod object in the API server, and the real process behind it on loopback. */
export interface LocalPod {
  name: string
  namespace: string
  deployment: string
  /** The node whose Deployment it belongs to (its `nexus.mcp/node` label). */
  node: string
  /** The pod's process; none when the actor only simulates pods (`simulatePodsAt`). */
  process?: ChildProcess
  /** When the pod runs its real image: the container the OCI runtime runs. */
  container?: OciContainer
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
  readonly #simulated: { port: number } | undefined
  readonly #images: OciPods | undefined
  readonly #deployments = new Map<string, Deployment>()
  /** Deployments whose pods are not replaced for now (`crash(pod, { replace: false })`). */
  readonly #held = new Set<string>()
  #reconciling: Promise<void> = Promise.resolve()
  /** Where this actor's pods listen (a pod IP stand-in). */
  readonly address = podAddress()

  /**
   * `simulatePodsAt`: publish every pod's endpoint at this port without starting a process, for measuring the
   * control path alone (the benchmark's 100 servers); what answers there is up to the caller. `images`: pods
   * whose image is in this local OCI layout run that image with the OCI runtime.
   */
  constructor(
    api: KubeApi,
    namespaces: string[],
    options: { simulatePodsAt?: { port: number }; images?: OciPods } = {},
  ) {
    super()
    this.#api = api
    this.#namespaces = namespaces
    this.#simulated = options.simulatePodsAt
    this.#images = options.images
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

  /** The pods of a namespace, of one Deployment, or of one node's Deployments. */
  podsOf(namespace: string, of?: { deployment?: string; node?: string }): LocalPod[] {
    return [...this.pods.values()].filter(
      (p) =>
        p.namespace === namespace &&
        (of?.deployment === undefined || p.deployment === of.deployment) &&
        (of?.node === undefined || p.node === of.node),
    )
  }

  /**
   * Kills a pod's process as a crashed container would die, and takes its endpoint away. With `replace: false`
   * the Deployment gets no new pod until `release()` (a node whose pods cannot be scheduled, say).
   */
  async crash(pod: LocalPod, options: { replace?: boolean } = {}): Promise<void> {
    if (options.replace === false) this.#held.add(`${pod.namespace}/${pod.deployment}`)
    this.pods.delete(`${pod.namespace}/${pod.name}`)
    await this.#stopProcess(pod)
    await this.#api.delete(ENDPOINT_SLICES, pod.namespace, pod.name).catch(() => {})
    await this.#api.delete(PODS, pod.namespace, pod.name).catch(() => {})
    this.emit('pod-stopped', pod)
    this.#schedule(pod.namespace)
  }

  /** Lets a held Deployment have its pods again. */
  release(namespace: string, deployment: string): void {
    this.#held.delete(`${namespace}/${deployment}`)
    this.#schedule(namespace)
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
    for (const [key, deployment] of wanted) {
      if (this.#held.has(key)) continue
      const pods = this.podsOf(namespace, { deployment: deployment.metadata.name })
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
    const container = template.spec.containers[0]!
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' }
    for (const variable of container.env ?? []) env[variable.name] = variable.value ?? ''
    env.NEXUS_LOG_LEVEL = 'warn'
    const { child, port, running } =
      this.#simulated !== undefined
        ? { child: undefined, port: this.#simulated.port, running: undefined }
        : this.#images?.digestOf(container.image) !== undefined
          ? await this.#runImage(name, container)
          : env[POD_HOST_SERVER_ENV] === undefined
            ? { ...(await this.#runServer(container, env)), running: undefined }
            : { ...(await this.#runPodHost(env)), running: undefined }
    const pod: LocalPod = {
      name,
      namespace,
      deployment: deployment.metadata.name,
      node: deployment.metadata.labels?.[LABEL_NODE] ?? '',
      process: child,
      container: running,
      port,
    }
    this.pods.set(`${namespace}/${name}`, pod)
    await this.#publish(pod, deployment)
    this.emit('pod-ready', pod)
    return true
  }

  /**
   * A pod whose image is here: the image itself, run by the OCI runtime with the pod's variables and limits.
   * Its pod host is told the actor's address and a port of its own (every pod here shares the machine's
   * address), where a kubelet would give the pod its own IP and the image's default port.
   */
  async #runImage(
    name: string,
    container: Container,
  ): Promise<{ child: ChildProcess; port: number; running: OciContainer }> {
    const env: Record<string, string> = { NEXUS_LOG_LEVEL: 'warn' }
    for (const variable of container.env ?? []) env[variable.name] = variable.value ?? ''
    const { container: running, port } = await this.#images!.start(name, container, env, [
      '--host',
      this.address,
      '--port',
      '0',
    ])
    return { child: running.child, port, running }
  }

  /** A stdio server's pod: the pod host (the image's entrypoint), which says its port once it listens. */
  async #runPodHost(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
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
    return { child, port }
  }

  /**
   * A streamable-HTTP server's pod: the container's own command. Every pod here shares this machine's address,
   * so the actor gives each its own port through the variable that carries the container port, and plays the
   * kubelet's TCP readiness probe until the server accepts connections.
   */
  async #runServer(
    container: Container,
    env: Record<string, string>,
  ): Promise<{ child: ChildProcess; port: number }> {
    const containerPort = String(container.ports?.[0]?.containerPort ?? '')
    const portEnv = (container.env ?? []).find((v) => v.value === containerPort)?.name
    if (container.command === undefined || portEnv === undefined)
      throw new Error('an HTTP server pod needs a command and the variable of its port')
    const port = await freePort()
    env[portEnv] = String(port)
    const [command, ...commandArgs] = container.command
    const child = spawn(command!, [...commandArgs, ...(container.args ?? [])], { env, stdio: 'ignore' })
    for (let wait = 20; !(await portAccepts(port, this.address)); wait = Math.min(wait * 2, 250)) {
      if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}) before listening`)
      await delay(wait)
    }
    return { child, port }
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
    if (pod.container !== undefined) return pod.container.stop()
    if (pod.process === undefined || pod.process.exitCode !== null || pod.process.signalCode !== null) return
    pod.process.kill('SIGTERM')
    await once(pod.process, 'exit')
  }
}
