import type { Logger } from 'pino'
import { Backoff } from '../../protocol/backoff.ts'
import { NexusError, type NexusErrorCode } from '../../protocol/errors.ts'
import type { StdioServerConfig } from '../config.ts'
import { ActiveSessions } from './active-sessions.ts'
import { type LaunchSpec, resolveLaunch } from './launch.ts'
import { ProcessLauncher } from './process-launcher.ts'
import type { StartAdmission } from './start-admission.ts'
import type { StdioProcess } from './stdio-process.ts'
import { stdioStatus } from './stdio-status.ts'
import type { TeardownQueue } from './teardown-queue.ts'
import type { Upstream, UpstreamEvents, UpstreamSession, UpstreamStatus } from './upstream.ts'

/**
 * A stdio server: one child process per session, taken from a pool of pre-started ones so that a new session
 * does not pay the server's start-up time. Pooled processes that die are replaced with back-off.
 */
/** How long a start may hold its admission slot at most, for a server that says nothing until asked twice. */
const MAX_START_MS = 30_000

export class StdioUpstream implements Upstream {
  readonly config: StdioServerConfig
  readonly #logger: Logger
  readonly #events: UpstreamEvents | undefined
  readonly #idle: StdioProcess[] = []
  readonly #active = new ActiveSessions<StdioSession>()
  readonly #backoff = new Backoff()
  readonly #teardowns: TeardownQueue
  readonly #launcher: ProcessLauncher
  readonly #admission: StartAdmission | undefined
  #spec: LaunchSpec | undefined
  #refillTimer: NodeJS.Timeout | undefined
  #restarts = 0
  #stopped = false
  #warmPool: number

  constructor(
    config: StdioServerConfig,
    logger: Logger,
    events: UpstreamEvents | undefined,
    teardowns: TeardownQueue,
    launcher = new ProcessLauncher(),
    admission?: StartAdmission,
  ) {
    this.#admission = admission
    this.#launcher = launcher
    this.config = config
    this.#teardowns = teardowns
    this.#warmPool = config.warmPool
    this.#logger = logger.child({ server: config.id })
    this.#events = events
  }

  async start(): Promise<void> {
    this.#spec = resolveLaunch(this.config)
    this.#refill()
  }

  async open(): Promise<UpstreamSession> {
    let proc = this.#idle.shift()
    while (proc?.exited) proc = this.#idle.shift()
    if (proc === undefined) {
      // A cold start: it waits its turn among the node's starts (or is refused, NODE_BUSY).
      const release = await this.#admission?.acquire()
      if (this.#stopped) {
        release?.()
        throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${this.config.id} is stopping`)
      }
      proc = this.#spawn()
      if (release !== undefined) {
        const cap = setTimeout(release, MAX_START_MS)
        proc.onStarted = () => {
          clearTimeout(cap)
          release()
        }
      }
    }
    if (this.#refillTimer === undefined) this.#refill()
    const session = new StdioSession(proc, this.#teardowns, () => this.#active.delete(session))
    this.#active.add(session)
    return session
  }

  whenIdle(): Promise<void> {
    return this.#active.whenEmpty()
  }

  resize(warmPool: number): void {
    this.#warmPool = warmPool
    for (const extra of this.#idle.splice(warmPool)) void this.#teardowns.run(() => extra.stop())
    if (this.#spec !== undefined && this.#refillTimer === undefined) this.#refill()
  }

  status(): UpstreamStatus {
    return stdioStatus(
      this.config,
      {
        ready: this.#spec !== undefined && !this.#stopped,
        activeSessions: this.#active.size,
        idleInstances: this.#idle.length,
        restarts: this.#restarts,
      },
      [...this.#idle, ...[...this.#active].map((s) => s.process)],
    )
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#refillTimer)
    const idle = this.#idle.splice(0)
    await Promise.all([
      ...idle.map((p) => this.#teardowns.run(() => p.stop())),
      ...[...this.#active].map((s) => s.close()),
    ])
  }

  #spawn(): StdioProcess {
    if (this.#spec === undefined) throw new Error(`server ${this.config.id} is not started`)
    return this.#launcher.start(this.config, this.#spec, this.#logger)
  }

  #refill(): void {
    this.#refillTimer = undefined
    while (!this.#stopped && this.#idle.length < this.#warmPool) {
      const proc = this.#spawn()
      proc.onExit = (description) => this.#onIdleExit(proc, description)
      this.#idle.push(proc)
      this.#events?.processStarted(this.config.id, proc.child.pid)
    }
  }

  #onIdleExit(proc: StdioProcess, description: string): void {
    const index = this.#idle.indexOf(proc)
    if (index === -1 || this.#stopped) return
    this.#idle.splice(index, 1)
    this.#restarts++
    const delay = this.#backoff.restartDelay(Date.now() - proc.startedAt)
    this.#logger.warn({ description, retryInMs: delay }, 'pooled server process exited; replacing it')
    this.#events?.processExited(this.config.id, description, delay)
    clearTimeout(this.#refillTimer)
    this.#refillTimer = setTimeout(() => this.#refill(), delay)
  }
}

class StdioSession implements UpstreamSession {
  onMessage: ((message: Uint8Array) => void) | undefined
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  readonly process: StdioProcess
  readonly #teardowns: TeardownQueue
  readonly #release: () => void
  #closing = false

  constructor(proc: StdioProcess, teardowns: TeardownQueue, release: () => void) {
    this.process = proc
    this.#teardowns = teardowns
    this.#release = release
    proc.onMessage = (message) => this.onMessage?.(message)
    proc.onExit = (description) => {
      this.#release()
      if (!this.#closing) this.onEnd?.('UPSTREAM_EXITED', `the server process ${description}`)
    }
    if (proc.exited) queueMicrotask(() => proc.onExit?.(proc.exitDescription))
  }

  send(message: Uint8Array): boolean {
    return this.process.send(message)
  }

  drained(): Promise<void> {
    return this.process.drained()
  }

  setOutputPaused(paused: boolean): void {
    this.process.setOutputPaused(paused)
  }

  async close(): Promise<void> {
    this.#closing = true
    await this.#teardowns.run(() => this.process.stop())
    this.#release()
  }
}
