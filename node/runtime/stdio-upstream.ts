import type { Logger } from 'pino'
import type { NexusErrorCode } from '../../protocol/errors.ts'
import type { StdioServerConfig } from '../config.ts'
import { Backoff } from './backoff.ts'
import { type LaunchSpec, resolveLaunch } from './launch.ts'
import { StdioProcess } from './stdio-process.ts'
import type { Upstream, UpstreamSession, UpstreamStatus } from './upstream.ts'

/** A process that dies sooner than this after starting counts as a crash loop and backs off. */
const STABLE_AFTER_MS = 5_000

/**
 * A stdio server: one child process per session, taken from a pool of pre-started ones so that a new session
 * does not pay the server's start-up time. Pooled processes that die are replaced with back-off.
 */
export class StdioUpstream implements Upstream {
  readonly config: StdioServerConfig
  readonly #logger: Logger
  readonly #idle: StdioProcess[] = []
  readonly #active = new Set<StdioSession>()
  readonly #backoff = new Backoff()
  #spec: LaunchSpec | undefined
  #refillTimer: NodeJS.Timeout | undefined
  #restarts = 0
  #stopped = false

  constructor(config: StdioServerConfig, logger: Logger) {
    this.config = config
    this.#logger = logger.child({ server: config.id })
  }

  async start(): Promise<void> {
    this.#spec = resolveLaunch(this.config)
    this.#refill()
  }

  async open(): Promise<UpstreamSession> {
    let proc = this.#idle.shift()
    while (proc?.exited) proc = this.#idle.shift()
    proc ??= this.#spawn()
    if (this.#refillTimer === undefined) this.#refill()
    const session = new StdioSession(proc, () => this.#active.delete(session))
    this.#active.add(session)
    return session
  }

  status(): UpstreamStatus {
    return {
      id: this.config.id,
      version: this.config.version,
      transport: 'stdio',
      ready: this.#spec !== undefined && !this.#stopped,
      activeSessions: this.#active.size,
      idleInstances: this.#idle.length,
      restarts: this.#restarts,
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#refillTimer)
    const idle = this.#idle.splice(0)
    await Promise.all([...idle.map((p) => p.stop()), ...[...this.#active].map((s) => s.close())])
  }

  #spawn(): StdioProcess {
    if (this.#spec === undefined) throw new Error(`server ${this.config.id} is not started`)
    return new StdioProcess(this.#spec, this.#logger)
  }

  #refill(): void {
    this.#refillTimer = undefined
    while (!this.#stopped && this.#idle.length < this.config.warmPool) {
      const proc = this.#spawn()
      proc.onExit = (description) => this.#onIdleExit(proc, description)
      this.#idle.push(proc)
    }
  }

  #onIdleExit(proc: StdioProcess, description: string): void {
    const index = this.#idle.indexOf(proc)
    if (index === -1 || this.#stopped) return
    this.#idle.splice(index, 1)
    this.#restarts++
    let delay = 0
    if (Date.now() - proc.startedAt < STABLE_AFTER_MS) delay = this.#backoff.fail()
    else this.#backoff.succeed()
    this.#logger.warn({ description, retryInMs: delay }, 'pooled server process exited; replacing it')
    clearTimeout(this.#refillTimer)
    this.#refillTimer = setTimeout(() => this.#refill(), delay)
  }
}

class StdioSession implements UpstreamSession {
  onMessage: ((message: Uint8Array) => void) | undefined
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  readonly #proc: StdioProcess
  readonly #release: () => void
  #closing = false

  constructor(proc: StdioProcess, release: () => void) {
    this.#proc = proc
    this.#release = release
    proc.onMessage = (message) => this.onMessage?.(message)
    proc.onExit = (description) => {
      this.#release()
      if (!this.#closing) this.onEnd?.('UPSTREAM_EXITED', `the server process ${description}`)
    }
    if (proc.exited) queueMicrotask(() => proc.onExit?.(proc.exitDescription))
  }

  send(message: Uint8Array): boolean {
    return this.#proc.send(message)
  }

  drained(): Promise<void> {
    return this.#proc.drained()
  }

  setOutputPaused(paused: boolean): void {
    this.#proc.setOutputPaused(paused)
  }

  async close(): Promise<void> {
    this.#closing = true
    await this.#proc.stop()
    this.#release()
  }
}
