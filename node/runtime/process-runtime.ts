import { EventEmitter } from 'node:events'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { NexusError } from '../../protocol/errors.ts'
import type { ServerConfig } from '../config.ts'
import { createStdioUpstream } from './create-stdio-upstream.ts'
import type { HttpEndpoint } from './http-endpoint.ts'
import { HttpUpstream } from './http-upstream.ts'
import { ProcessLauncher, type SandboxReports } from './process-launcher.ts'
import type { Runtime, RuntimeServer } from './runtime.ts'
import { Sandbox, type SandboxMode } from './sandbox/sandbox.ts'
import { StartAdmission, type StartAdmissionOptions } from './start-admission.ts'
import { TeardownQueue } from './teardown-queue.ts'
import type { Upstream, UpstreamEvents, UpstreamSession, UpstreamStatus } from './upstream.ts'

export type { Runtime } from './runtime.ts'

/** Whether two configurations start the same processes; the warm pool size can change in place. */
function sameLaunch(a: ServerConfig, b: ServerConfig): boolean {
  const launch = (c: ServerConfig) => JSON.stringify({ ...c, warmPool: undefined })
  return launch(a) === launch(b)
}

export interface ProcessRuntimeEvents {
  'process-started': [{ serverId: string; pid: number | undefined }]
  'process-exited': [{ serverId: string; description: string; retryInMs: number }]
  /** `ensure` is done: these servers (`id@version`) run now. */
  'servers-applied': [{ servers: string[] }]
  /** An old version of a server stopped, its last session over (or its drain timed out). */
  'version-drained': [{ serverId: string; version: string }]
}

export interface ProcessRuntimeOptions {
  /** Server processes stopped at once; more wait their turn (default 4). */
  maxConcurrentTeardowns?: number
  /** Each server process in a sandbox of its own (`node.sandbox`; off unless given). */
  sandbox?: { mode?: SandboxMode; processes: number; openFiles: number }
  /** How long an old version's sessions may go on after a new version starts (default 10 min). */
  drainTimeoutMs?: number
  /** What the sandboxes report: instances that hit their limits, egress let through or refused. */
  reports?: SandboxReports
  /** How many server processes start at once, and how long sessions may queue for a start (`node.admission`). */
  admission?: StartAdmissionOptions
}

/** The embedded runtime: servers run as child processes of the node. */
export class ProcessRuntime extends EventEmitter<ProcessRuntimeEvents> implements Runtime {
  readonly #logger: Logger
  readonly #upstreams = new Map<string, Upstream>()
  readonly #events: UpstreamEvents = {
    processStarted: (serverId, pid) => this.emit('process-started', { serverId, pid }),
    processExited: (serverId, description, retryInMs) =>
      this.emit('process-exited', { serverId, description, retryInMs }),
  }

  /** Stops the processes of ended sessions a few at a time, so that a mass teardown cannot starve the node. */
  readonly teardowns: TeardownQueue
  /** Starts server processes a few at a time, so that a burst of new sessions cannot starve it either. */
  readonly admission: StartAdmission

  constructor(logger: Logger, options: ProcessRuntimeOptions = {}) {
    super()
    this.#logger = logger
    this.teardowns = new TeardownQueue(options.maxConcurrentTeardowns ?? 4)
    this.admission = new StartAdmission(
      options.admission ?? { maxStarting: availableParallelism(), maxQueued: 256, queueTimeoutMs: 5_000 },
    )
    this.#drainTimeoutMs = options.drainTimeoutMs ?? 600_000
    // Off unless asked for: a node passes its configuration's setting (which defaults to the machine's best).
    const mode = options.sandbox === undefined ? 'off' : options.sandbox.mode
    const { sandbox, unavailable } = Sandbox.create(mode)
    this.#sandbox = sandbox
    this.#launcher = new ProcessLauncher(sandbox, options.sandbox, options.reports)
    if (sandbox !== undefined)
      logger.info({ limits: sandbox.enforcement }, 'server processes run in sandboxes (bubblewrap)')
    else if (mode !== 'off') logger.warn({ reason: unavailable }, 'server processes run WITHOUT a sandbox')
  }

  readonly #sandbox: Sandbox | undefined
  readonly #launcher: ProcessLauncher
  readonly #drainTimeoutMs: number

  /** How server processes are confined here: `bubblewrap, cgroup v1` (or v2, or rlimits), or `none`. */
  get sandbox(): string {
    return this.#sandbox === undefined ? 'none' : `bubblewrap, ${this.#sandbox.enforcement}`
  }

  readonly runsImages = false

  async ensure(servers: RuntimeServer[]): Promise<void> {
    const wanted = new Map(servers.map(({ config }) => [config.id, config]))
    const retired = [...this.#upstreams.values()].filter((u) => {
      const next = wanted.get(u.config.id)
      return next === undefined || !sameLaunch(next, u.config)
    })
    for (const upstream of retired) this.#upstreams.delete(upstream.config.id)
    // A server that stays, in another version (or launched otherwise), drains: its sessions go on where they
    // are, new ones go to the new version, and the old one stops once its last session ends (or at the drain
    // timeout). A server that goes stops now: the node has already ended or moved its sessions.
    const changed = retired.filter((u) => wanted.has(u.config.id))
    for (const upstream of changed) this.#drain(upstream)
    await Promise.all(retired.filter((u) => !changed.includes(u)).map((u) => u.stop()))
    const started: Upstream[] = []
    for (const config of wanted.values()) {
      const running = this.#upstreams.get(config.id)
      if (running !== undefined && config.transport === 'stdio') running.resize?.(config.warmPool)
      if (running !== undefined) continue
      const upstream =
        config.transport === 'stdio'
          ? createStdioUpstream(
              config,
              this.#logger,
              this.#events,
              this.teardowns,
              this.#launcher,
              this.admission,
            )
          : new HttpUpstream(config, this.#logger, this.#events, this.#launcher)
      started.push(upstream)
    }
    const results = await Promise.allSettled(started.map((u) => u.start()))
    results.forEach((result, index) => {
      const upstream = started[index]!
      if (result.status === 'fulfilled') this.#upstreams.set(upstream.config.id, upstream)
      else this.#logger.error({ server: upstream.config.id, err: result.reason }, 'server failed to start')
    })
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`${started[i]!.config.id}: ${r.reason}`] : [],
    )
    this.emit('servers-applied', {
      servers: [...this.#upstreams.values()].map((u) => `${u.config.id}@${u.config.version}`),
    })
    if (failed.length > 0)
      throw new NexusError('UPSTREAM_UNAVAILABLE', `servers failed to start: ${failed.join('; ')}`)
  }

  has(serverId: string): boolean {
    return this.#upstreams.has(serverId)
  }

  open(serverId: string): Promise<UpstreamSession> {
    const upstream = this.#upstreams.get(serverId)
    if (upstream === undefined)
      return Promise.reject(new NexusError('UNKNOWN_SERVER', `server ${serverId} is not hosted here`))
    return upstream.open()
  }

  modernEndpoint(serverId: string): HttpEndpoint | undefined {
    return this.#upstreams.get(serverId)?.modernEndpoint?.()
  }

  status(): UpstreamStatus[] {
    return [...this.#upstreams.values()].map((u) => u.status())
  }

  onStatusChange(listener: () => void): void {
    this.on('process-started', listener)
    this.on('process-exited', listener)
  }

  /** Versions draining: they serve the sessions they have, and take no new ones. */
  readonly #draining = new Set<Upstream>()

  #drain(upstream: Upstream): void {
    this.#draining.add(upstream)
    upstream.resize?.(0)
    this.#logger.info(
      {
        server: upstream.config.id,
        version: upstream.config.version,
        sessions: upstream.status().activeSessions,
      },
      'a new version of the server runs; the old one drains',
    )
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, this.#drainTimeoutMs).unref())
    void Promise.race([upstream.whenIdle(), timeout]).then(async () => {
      if (!this.#draining.delete(upstream)) return
      await upstream.stop()
      this.emit('version-drained', { serverId: upstream.config.id, version: upstream.config.version })
    })
  }

  async stop(): Promise<void> {
    const upstreams = [...this.#upstreams.values(), ...this.#draining]
    this.#upstreams.clear()
    this.#draining.clear()
    await Promise.all(upstreams.map((u) => u.stop()))
    this.#sandbox?.dispose()
  }
}
