import type { Logger } from 'pino'
import { Backoff } from '../../../protocol/backoff.ts'
import { errorMessage, NexusError } from '../../../protocol/errors.ts'
import type { StdioServerConfig } from '../../config.ts'
import { ActiveSessions } from '../active-sessions.ts'
import { type LaunchSpec, resolveLaunch } from '../launch.ts'
import { ProcessLauncher } from '../process-launcher.ts'
import type { StartAdmission } from '../start-admission.ts'
import { stdioStatus } from '../stdio-status.ts'
import type { TeardownQueue } from '../teardown-queue.ts'
import type { Upstream, UpstreamEvents, UpstreamSession, UpstreamStatus } from '../upstream.ts'
import { SharedProcess } from './shared-process.ts'
import { SharedSession } from './shared-session.ts'

const NODE_VERSION = '1.0.0'

/**
 * A stdio server its manifest declares safe to share: each process serves up to `sessionsPerProcess` sessions
 * (`SharedProcess`), so a thousand sessions cost a few processes rather than a thousand. New sessions fill the
 * fullest process that has room, so that processes are few. `warmPool` processes with no session are kept
 * ready, and when a session takes the last free slot another starts, so that sessions do not wait for a cold
 * start; one started for a session goes through the node's start admission. A process left with no session
 * beyond the warm ones stops.
 */
export class SharedStdioUpstream implements Upstream {
  readonly config: StdioServerConfig
  readonly #capacity: number
  readonly #logger: Logger
  readonly #events: UpstreamEvents | undefined
  readonly #teardowns: TeardownQueue
  readonly #launcher: ProcessLauncher
  readonly #admission: StartAdmission | undefined
  readonly #processes: SharedProcess[] = []
  readonly #active = new ActiveSessions<SharedSession>()
  readonly #backoff = new Backoff()
  #spec: LaunchSpec | undefined
  #refillTimer: NodeJS.Timeout | undefined
  #restarts = 0
  #stopped = false
  #warmPool: number

  constructor(
    config: StdioServerConfig & { shared: { sessionsPerProcess: number } },
    logger: Logger,
    events: UpstreamEvents | undefined,
    teardowns: TeardownQueue,
    launcher = new ProcessLauncher(),
    admission?: StartAdmission,
  ) {
    this.config = config
    this.#capacity = config.shared.sessionsPerProcess
    this.#logger = logger.child({ server: config.id, shared: this.#capacity })
    this.#events = events
    this.#teardowns = teardowns
    this.#launcher = launcher
    this.#admission = admission
    this.#warmPool = config.warmPool
  }

  async start(): Promise<void> {
    this.#spec = resolveLaunch(this.config)
    this.#refill()
  }

  async open(): Promise<UpstreamSession> {
    const roomy = this.#processes
      .filter((p) => !p.process.exited && p.sessions.size < this.#capacity)
      .sort((a, b) => b.sessions.size - a.sessions.size)
    const shared = roomy[0] ?? (await this.#startForSession())
    try {
      await shared.ready()
    } catch (err) {
      throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${this.config.id}: ${errorMessage(err)}`)
    }
    if (shared.process.exited)
      throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${this.config.id} exited while starting`)
    const session = new SharedSession(shared, () => {
      this.#active.delete(session)
      this.#retireIfSurplus(shared)
    })
    this.#active.add(session)
    // The next session should not wait for a cold start either: with every slot taken, a warm process starts.
    if (this.#warmPool > 0 && this.#freeSlots() === 0) this.#spawn()
    return session
  }

  #freeSlots(): number {
    return this.#processes
      .filter((p) => !p.process.exited)
      .reduce((free, p) => free + Math.max(0, this.#capacity - p.sessions.size), 0)
  }

  async #startForSession(): Promise<SharedProcess> {
    // A cold start waits its turn among the node's starts (or is refused, NODE_BUSY).
    const release = await this.#admission?.acquire()
    if (this.#stopped) {
      release?.()
      throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${this.config.id} is stopping`)
    }
    const shared = this.#spawn()
    if (release !== undefined) void shared.ready().then(release, release)
    return shared
  }

  whenIdle(): Promise<void> {
    return this.#active.whenEmpty()
  }

  resize(warmPool: number): void {
    this.#warmPool = warmPool
    for (const shared of [...this.#processes]) this.#retireIfSurplus(shared)
    if (this.#spec !== undefined && this.#refillTimer === undefined) this.#refill()
  }

  status(): UpstreamStatus {
    return stdioStatus(
      this.config,
      {
        ready: this.#spec !== undefined && !this.#stopped,
        activeSessions: this.#active.size,
        idleInstances: this.#processes.filter((p) => p.sessions.size === 0 && !p.process.exited).length,
        restarts: this.#restarts,
      },
      this.#processes.map((p) => p.process),
    )
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#refillTimer)
    const processes = this.#processes.splice(0)
    await Promise.all([
      ...[...this.#active].map((s) => s.close()),
      ...processes.map((p) => this.#teardowns.run(() => p.process.stop())),
    ])
  }

  #spawn(): SharedProcess {
    if (this.#spec === undefined) throw new Error(`server ${this.config.id} is not started`)
    const process = this.#launcher.start(this.config, this.#spec, this.#logger)
    const shared = new SharedProcess(process, this.#logger, NODE_VERSION)
    this.#processes.push(shared)
    this.#events?.processStarted(this.config.id, process.child.pid)
    process.onExit = (description) => this.#onExit(shared, description)
    return shared
  }

  /** A process left with no session stops, unless it is one of the warm ones. */
  #retireIfSurplus(shared: SharedProcess): void {
    if (this.#stopped || shared.sessions.size > 0 || shared.process.exited) return
    const idle = this.#processes.filter((p) => p.sessions.size === 0 && !p.process.exited)
    if (idle.length <= this.#warmPool) return
    this.#processes.splice(this.#processes.indexOf(shared), 1)
    void this.#teardowns.run(() => shared.process.stop())
  }

  #refill(): void {
    this.#refillTimer = undefined
    const idle = () => this.#processes.filter((p) => p.sessions.size === 0 && !p.process.exited).length
    while (!this.#stopped && idle() < this.#warmPool) this.#spawn()
  }

  #onExit(shared: SharedProcess, description: string): void {
    const index = this.#processes.indexOf(shared)
    if (index === -1 || this.#stopped) {
      shared.exited(description)
      return
    }
    this.#processes.splice(index, 1)
    this.#restarts++
    shared.exited(description)
    const delay = this.#backoff.restartDelay(Date.now() - shared.process.startedAt)
    this.#logger.warn({ description, retryInMs: delay }, 'shared server process exited; replacing it')
    this.#events?.processExited(this.config.id, description, delay)
    clearTimeout(this.#refillTimer)
    this.#refillTimer = setTimeout(() => this.#refill(), delay)
  }
}
