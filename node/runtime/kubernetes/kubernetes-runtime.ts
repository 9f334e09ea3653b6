import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import type { Logger } from 'pino'
import { Backoff } from '../../../protocol/backoff.ts'
import { errorMessage, isNexusError, NexusError, type NexusErrorCode } from '../../../protocol/errors.ts'
import type { KubernetesRuntimeConfig } from '../../config.ts'
import { EmulatedLegacySession } from '../../era-bridge/legacy-emulation.ts'
import { forwardModern } from '../../era-bridge/modern-forward.ts'
import type { HttpEndpoint } from '../http-endpoint.ts'
import { HttpSession } from '../http-session.ts'
import { serverEras } from '../http-upstream.ts'
import type { Runtime, RuntimeServer } from '../runtime.ts'
import type { UpstreamSession, UpstreamStatus } from '../upstream.ts'
import { EndpointWatch, type PodEndpoint } from './endpoint-watch.ts'
import { imageOf } from './image-pin.ts'
import {
  DEPLOYMENTS,
  type KubeApi,
  type KubeObject,
  NETWORK_POLICIES,
  type ResourceType,
  SERVICES,
} from './kube-api.ts'
import { PodHostSession } from './pod-host-session.ts'
import {
  ANNOTATION_SPEC_HASH,
  managedSelector,
  nodeSelector,
  type WorkloadContext,
  type WorkloadSpec,
  workloadName,
  workloadObjects,
} from './workload.ts'
import { podServerConfig, workloadSpec } from './workload-spec.ts'

const MANAGED_TYPES: Record<string, ResourceType> = {
  Deployment: DEPLOYMENTS,
  Service: SERVICES,
  NetworkPolicy: NETWORK_POLICIES,
}

/** One version of one server in the cluster: its objects, and the sessions the node has on its pods. */
interface Placement {
  name: string
  spec: WorkloadSpec
  /** Open sessions, by pod endpoint (`address:port`): the node's own load figures for choosing a pod. */
  sessionsByEndpoint: Map<string, number>
  sessions: Set<UpstreamSession>
  /** When a replaced version's remaining sessions are moved (the drain timeout). */
  drainTimer?: NodeJS.Timeout
}

interface HostedServer {
  server: RuntimeServer
  current: Placement
}

export interface KubernetesRuntimeEvents {
  /** Ready pods of a server came or went (the node re-announces when one has none or gets its first). */
  status: []
  /** One pass that brought the cluster in line: how many objects it wanted, how many it wrote and deleted. */
  synced: [{ objects: number; applied: number; deleted: number }]
}

export interface KubernetesRuntimeOptions {
  api: KubeApi
  config: KubernetesRuntimeConfig
  logger: Logger
  /** How long sessions on a replaced version may run before they are moved (the node's drain timeout). */
  drainTimeoutMs?: number
}

function objectKey(object: Pick<KubeObject, 'kind'> & { metadata: { name: string } }): string {
  return `${object.kind}/${object.metadata.name}`
}

function sessionCount(placement: Placement): number {
  return placement.sessions.size
}

/**
 * Runs the node's servers as workloads in a Kubernetes cluster: per server version a Deployment, Service and
 * NetworkPolicy, server-side applied under the node's own field manager; pods reached through the ready
 * endpoints of EndpointSlices it watches, the least loaded first (by the node's own session counts). stdio
 * servers sit behind the pod host (`node/pod-host`); streamable-HTTP servers are reached directly.
 *
 * Reconciles rather than assumes: the first `ensure` lists what carries this node's label and adopts it
 * (unchanged objects cost no write, by the spec hash they carry) or deletes it. A new version of a server
 * gets objects of its own beside the old ones; new sessions go to it, and the old objects go once their
 * sessions have ended (or been moved after the drain timeout).
 */
/** How long `ensure` keeps trying when the API server answers with an error that should pass. */
const ENSURE_PATIENCE_MS = 5_000

export class KubernetesRuntime extends EventEmitter<KubernetesRuntimeEvents> implements Runtime {
  readonly runsImages = true
  readonly #api: KubeApi
  readonly #config: KubernetesRuntimeConfig
  readonly #logger: Logger
  readonly #context: WorkloadContext
  readonly #watch: EndpointWatch
  readonly #drainTimeoutMs: number
  readonly #servers = new Map<string, HostedServer>()
  /** Replaced versions still serving sessions, by workload name. */
  readonly #retiring = new Map<string, Placement>()
  /** What the cluster holds of this node's objects, as last listed or applied, by `Kind/name`. */
  readonly #known = new Map<string, KubeObject>()
  readonly #retry = new Backoff(200, 10_000)
  #adopted: Promise<void> | undefined
  #syncing: Promise<void> = Promise.resolve()
  #syncTimer: NodeJS.Timeout | undefined
  #problem: string | undefined
  #readySignature = ''
  #stopped = false

  constructor(options: KubernetesRuntimeOptions) {
    super()
    this.#api = options.api
    this.#config = options.config
    this.#logger = options.logger.child({ runtime: 'kubernetes', namespace: options.config.namespace })
    this.#drainTimeoutMs = options.drainTimeoutMs ?? 10_000
    const nodeName = options.config.nodeName ?? hostname()
    this.#context = {
      namespace: options.config.namespace,
      nodeName,
      nodeNamespace: options.config.nodeNamespace ?? options.config.namespace,
      nodePodLabels: options.config.nodePodLabels,
    }
    this.#watch = new EndpointWatch(this.#api, options.config.namespace, nodeSelector(nodeName), this.#logger)
    this.#watch.on('change', () => this.#readinessMayHaveChanged())
    this.#watch.on('problem', () => this.emit('status'))
  }

  /** The name this node's objects carry. */
  get nodeName(): string {
    return this.#context.nodeName
  }

  /** The EndpointSlice watch, for operators' diagnostics and the benchmark's recovery figures. */
  get endpointWatch(): EndpointWatch {
    return this.#watch
  }

  admit(server: RuntimeServer): void {
    imageOf(server, this.#config.images)
  }

  async ensure(servers: RuntimeServer[]): Promise<void> {
    if (this.#stopped) throw new NexusError('STOPPED', 'the runtime is stopped')
    this.#watch.start()
    this.#adopted ??= this.#adopt()
    await this.#adopted
    const wanted = new Map(servers.map((s) => [s.config.id, s]))
    for (const [id, hosted] of this.#servers) {
      const next = wanted.get(id)
      const nextName =
        next === undefined ? undefined : workloadName(this.#specOf(next, 0), this.#context.nodeName)
      if (nextName === hosted.current.name) continue
      this.#servers.delete(id)
      this.#retire(hosted.current)
    }
    for (const server of wanted.values()) {
      const hosted = this.#servers.get(server.config.id)
      if (hosted !== undefined) {
        hosted.server = server
        continue
      }
      const spec = this.#specOf(server, 0)
      const name = workloadName(spec, this.#context.nodeName)
      // A version that was retired and comes back takes its old pods and sessions back.
      const revived = this.#retiring.get(name)
      this.#retiring.delete(name)
      const placement: Placement = revived ?? {
        name,
        spec,
        sessionsByEndpoint: new Map(),
        sessions: new Set(),
      }
      clearTimeout(placement.drainTimer)
      this.#servers.set(server.config.id, { server, current: placement })
    }
    await this.#syncPatiently()
    this.#readinessMayHaveChanged()
  }

  /**
   * A sync that rides out a moment of the API server's: an answer such as a 500 while it has just restarted
   * ("failed to allocate a serviceIP: range is full" before its allocator has caught up) is tried again for a
   * few seconds before `ensure` fails. A refusal (the Role lacks a verb) fails at once.
   */
  async #syncPatiently(): Promise<void> {
    const deadline = Date.now() + ENSURE_PATIENCE_MS
    for (let wait = 100; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        return await this.#sync()
      } catch (err) {
        if (!isNexusError(err, 'CLUSTER_UNAVAILABLE') || Date.now() + wait > deadline || this.#stopped)
          throw err
        await new Promise((resolve) => setTimeout(resolve, wait))
      }
    }
  }

  has(serverId: string): boolean {
    return this.#servers.has(serverId)
  }

  /**
   * A server whose manifest says it speaks the modern era takes modern requests itself, at its least loaded
   * pod. (Pods come and go, so the eras are the manifest's, not probed.)
   */
  modernEndpoint(serverId: string): HttpEndpoint | undefined {
    const hosted = this.#servers.get(serverId)
    if (hosted === undefined || !serverEras(hosted.server.config).includes('modern')) return undefined
    const endpoint = this.#leastLoaded(hosted.current)
    return endpoint === undefined
      ? undefined
      : { url: new URL(`http://${hostPort(endpoint)}${hosted.current.spec.httpPath}`) }
  }

  async open(serverId: string): Promise<UpstreamSession> {
    const hosted = this.#servers.get(serverId)
    if (hosted === undefined) throw new NexusError('UNKNOWN_SERVER', `server ${serverId} is not hosted here`)
    const placement = hosted.current
    const endpoint = this.#leastLoaded(placement)
    if (endpoint === undefined)
      throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${serverId} has no ready pod (${placement.name})`)
    const key = `${endpoint.address}:${endpoint.port}`
    placement.sessionsByEndpoint.set(key, (placement.sessionsByEndpoint.get(key) ?? 0) + 1)
    let released = false
    let session: UpstreamSession | undefined
    const release = () => {
      if (released) return
      released = true
      const left = (placement.sessionsByEndpoint.get(key) ?? 1) - 1
      if (left > 0) placement.sessionsByEndpoint.set(key, left)
      else placement.sessionsByEndpoint.delete(key)
      if (session !== undefined) placement.sessions.delete(session)
      this.#scheduleSync()
    }
    const url = () => ({ url: new URL(`http://${hostPort(endpoint)}${placement.spec.httpPath}`) })
    const config = hosted.server.config
    const opened =
      config.transport === 'stdio'
        ? await PodHostSession.open(endpoint.address, endpoint.port, serverId, release)
        : serverEras(config).includes('legacy')
          ? new HttpSession(url(), this.#logger, release)
          : // A server of the modern era alone: the node plays the legacy session, request by request.
            new EmulatedLegacySession(
              (request, sink) => forwardModern(url(), request, sink),
              this.#logger,
              release,
            )
    session = opened
    placement.sessions.add(opened)
    this.#scheduleSync()
    return opened
  }

  status(): UpstreamStatus[] {
    return [...this.#servers.values()].map(({ server, current }) => {
      const ready = this.#watch.endpoints(current.name)
      return {
        id: server.config.id,
        version: server.config.version,
        transport: server.config.transport,
        eras: serverEras(server.config),
        ready: ready.length > 0,
        activeSessions: sessionCount(current),
        idleInstances: ready.length,
        restarts: 0,
        pids: [],
      }
    })
  }

  /** What the runtime runs now, as the node last gave it. */
  servers(): RuntimeServer[] {
    return [...this.#servers.values()].map((h) => h.server)
  }

  /** The name of the objects of the version of a server that takes new sessions. */
  workloadOf(serverId: string): string | undefined {
    return this.#servers.get(serverId)?.current.name
  }

  /** The node's sessions on each ready pod of a server (`address:port`), as it balances them. */
  sessionsByPod(serverId: string): Record<string, number> {
    const placement = this.#servers.get(serverId)?.current
    if (placement === undefined) return {}
    const load: Record<string, number> = {}
    for (const endpoint of this.#watch.endpoints(placement.name))
      load[hostPort(endpoint)] = placement.sessionsByEndpoint.get(`${endpoint.address}:${endpoint.port}`) ?? 0
    return load
  }

  onStatusChange(listener: () => void): void {
    this.on('status', listener)
  }

  notReadyBecause(): string | undefined {
    return this.#watch.problem ?? this.#problem
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    clearTimeout(this.#syncTimer)
    for (const placement of this.#retiring.values()) clearTimeout(placement.drainTimer)
    await this.#syncing
    await this.#watch.stop()
    const placements = [...[...this.#servers.values()].map((h) => h.current), ...this.#retiring.values()]
    await Promise.all(placements.flatMap((p) => [...p.sessions].map((s) => s.close())))
    if (this.#config.onStop === 'delete') {
      await Promise.allSettled([...this.#known.values()].map((object) => this.#delete(object)))
    }
    this.#servers.clear()
    this.#retiring.clear()
  }

  /** The workload of a server at `replicas` pods. */
  #specOf(server: RuntimeServer, replicas: number): WorkloadSpec {
    return workloadSpec(
      server,
      imageOf(server, this.#config.images),
      podServerConfig(server.config),
      replicas,
      this.#config.sessionsPerPod,
    )
  }

  /** Pods a placement should have: enough for its sessions plus one more, within the configured bounds. */
  #replicasFor(placement: Placement): number {
    const { minPods, maxPods, sessionsPerPod } = this.#config
    const needed = Math.ceil((sessionCount(placement) + 1) / sessionsPerPod)
    return Math.min(maxPods, Math.max(minPods, needed))
  }

  #leastLoaded(placement: Placement): PodEndpoint | undefined {
    let best: PodEndpoint | undefined
    let bestLoad = Number.POSITIVE_INFINITY
    for (const endpoint of this.#watch.endpoints(placement.name)) {
      const load = placement.sessionsByEndpoint.get(`${endpoint.address}:${endpoint.port}`) ?? 0
      if (load < bestLoad) {
        best = endpoint
        bestLoad = load
      }
    }
    return best
  }

  #retire(placement: Placement): void {
    if (sessionCount(placement) === 0) return
    this.#retiring.set(placement.name, placement)
    this.#logger.info(
      { workload: placement.name, sessions: sessionCount(placement) },
      'version replaced; its sessions finish on the old pods',
    )
    // Sessions still there after the drain timeout end with NODE_DRAINING: their gateways move them.
    placement.drainTimer = setTimeout(() => {
      for (const session of placement.sessions)
        endSession(session, 'NODE_DRAINING', 'the server was upgraded')
    }, this.#drainTimeoutMs)
    placement.drainTimer.unref()
  }

  /** Lists the objects that carry this node's label, so that the first sync adopts or deletes them. */
  async #adopt(): Promise<void> {
    const selector = managedSelector(this.#context.nodeName)
    for (const [kind, type] of Object.entries(MANAGED_TYPES)) {
      const list = await this.#api.list(type, this.#context.namespace, selector)
      for (const item of list.items) {
        const object = { ...item, kind, apiVersion: type.apiVersion }
        this.#known.set(objectKey(object), object)
      }
    }
    this.#logger.info({ objects: this.#known.size }, 'listed the objects this node manages')
  }

  #scheduleSync(): void {
    if (this.#stopped || this.#syncTimer !== undefined) return
    // Session changes come in bursts: one pass for a burst keeps writes (replica changes) few.
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined
      this.#sync().catch(() => {})
    }, 250)
    this.#syncTimer.unref()
  }

  /** Serialised: one pass at a time brings the cluster in line with what this node wants. */
  #sync(): Promise<void> {
    const pass = this.#syncing.then(() => this.#syncOnce())
    this.#syncing = pass.catch(() => {})
    return pass
  }

  async #syncOnce(): Promise<void> {
    if (this.#stopped) return
    for (const [name, placement] of this.#retiring)
      if (sessionCount(placement) === 0) {
        clearTimeout(placement.drainTimer)
        this.#retiring.delete(name)
      }
    const desired = new Map<string, KubeObject>()
    for (const { server, current } of this.#servers.values()) {
      current.spec = this.#specOf(server, this.#replicasFor(current))
      for (const object of workloadObjects(current.spec, this.#context))
        desired.set(objectKey(object), object)
    }
    const keep = new Set(desired.keys())
    for (const name of this.#retiring.keys())
      for (const kind of Object.keys(MANAGED_TYPES)) keep.add(`${kind}/${name}`)
    const toApply = [...desired.values()].filter((object) => {
      const known = this.#known.get(objectKey(object))
      return (
        known?.metadata.annotations?.[ANNOTATION_SPEC_HASH] !==
        object.metadata.annotations?.[ANNOTATION_SPEC_HASH]
      )
    })
    const toDelete = [...this.#known.values()].filter((object) => !keep.has(objectKey(object)))
    const failures: string[] = []
    await Promise.all([
      ...toApply.map(async (object) => {
        try {
          const applied = await this.#api.apply(object, this.#config.fieldManager)
          this.#known.set(objectKey(object), { ...applied, kind: object.kind, apiVersion: object.apiVersion })
        } catch (err) {
          failures.push(errorMessage(err))
        }
      }),
      ...toDelete.map(async (object) => {
        try {
          await this.#delete(object)
          this.#known.delete(objectKey(object))
        } catch (err) {
          failures.push(errorMessage(err))
        }
      }),
    ])
    this.#problem = failures.length === 0 ? undefined : `cannot apply this node's workloads: ${failures[0]}`
    this.emit('synced', { objects: desired.size, applied: toApply.length, deleted: toDelete.length })
    if (failures.length === 0) {
      this.#retry.succeed()
      return
    }
    this.#logger.error({ failures }, 'applying workloads failed; retrying')
    // Conflicts and outages are retried; what already runs keeps serving meanwhile.
    setTimeout(() => this.#scheduleSync(), this.#retry.fail()).unref()
    throw new NexusError(
      failures.some((f) => f.includes('lacks the verb')) ? 'CLUSTER_FORBIDDEN' : 'CLUSTER_UNAVAILABLE',
      this.#problem!,
    )
  }

  #delete(object: KubeObject): Promise<void> {
    const type = MANAGED_TYPES[object.kind]
    if (type === undefined) return Promise.resolve()
    return this.#api.delete(type, this.#context.namespace, object.metadata.name)
  }

  #readinessMayHaveChanged(): void {
    // Ready pods per server: a server that gains or loses its last pod changes what the node announces.
    const signature = this.status()
      .map((s) => `${s.id}:${s.idleInstances}`)
      .join(',')
    if (signature === this.#readySignature) return
    this.#readySignature = signature
    this.emit('status')
  }
}

function hostPort(endpoint: PodEndpoint): string {
  return endpoint.address.includes(':')
    ? `[${endpoint.address}]:${endpoint.port}`
    : `${endpoint.address}:${endpoint.port}`
}

function endSession(session: UpstreamSession, code: NexusErrorCode, reason: string): void {
  session.onEnd?.(code, reason)
  void session.close()
}
