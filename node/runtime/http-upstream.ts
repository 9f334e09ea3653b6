import type { Logger } from 'pino'
import { Backoff } from '../../protocol/backoff.ts'
import { errorMessage, NexusError } from '../../protocol/errors.ts'
import type { Era } from '../../protocol/modern-era.ts'
import type { HttpServerConfig, ServerConfig } from '../config.ts'
import { serverUnavailable } from '../era-bridge/bridge-session.ts'
import { EmulatedLegacySession, type ModernChannel } from '../era-bridge/legacy-emulation.ts'
import { forwardModern, probeEras } from '../era-bridge/modern-forward.ts'
import { ActiveSessions } from './active-sessions.ts'
import type { HttpEndpoint } from './http-endpoint.ts'
import { HttpSession } from './http-session.ts'
import { resolveLaunch } from './launch.ts'
import { freePort, portAccepts } from './ports.ts'
import { ProcessLauncher } from './process-launcher.ts'
import type { StdioProcess } from './stdio-process.ts'
import type { Upstream, UpstreamEvents, UpstreamSession, UpstreamStatus } from './upstream.ts'

const START_TIMEOUT_MS = 30_000
/** The port a sandboxed HTTP server listens on, inside its own network namespace. */
const SANDBOXED_PORT = 8000

/**
 * A server reached over streamable HTTP: either one the operator already runs (`url`), or one process the node
 * starts on a free loopback port and restarts with back-off. Sessions are the server's own MCP sessions.
 */
export class HttpUpstream implements Upstream {
  readonly config: HttpServerConfig
  readonly #logger: Logger
  readonly #events: UpstreamEvents | undefined
  readonly #active = new ActiveSessions<HttpSession | EmulatedLegacySession>()
  readonly #backoff = new Backoff()
  #endpoint: HttpEndpoint | undefined
  #proc: StdioProcess | undefined
  #restartTimer: NodeJS.Timeout | undefined
  /** The eras the server speaks: from its manifest, else probed once it is reachable. */
  #eras: Era[] = ['legacy']
  #restarts = 0
  #stopped = false

  readonly #launcher: ProcessLauncher

  constructor(
    config: HttpServerConfig,
    logger: Logger,
    events?: UpstreamEvents,
    launcher = new ProcessLauncher(),
  ) {
    this.#launcher = launcher
    this.config = config
    this.#logger = logger.child({ server: config.id })
    this.#events = events
  }

  async start(): Promise<void> {
    if (this.config.url !== undefined) this.#endpoint = { url: new URL(this.config.url) }
    else await this.#launch()
    this.#eras = this.config.eras ?? (await probeEras(this.#endpoint!))
    this.#logger.info({ eras: this.#eras }, 'server eras')
  }

  whenIdle(): Promise<void> {
    return this.#active.whenEmpty()
  }

  modernEndpoint(): HttpEndpoint | undefined {
    return this.#eras.includes('modern') ? this.#endpoint : undefined
  }

  async open(): Promise<UpstreamSession> {
    if (this.#endpoint === undefined)
      throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${this.config.id} is not running`)
    const release = () => this.#active.delete(session)
    // A server of the modern era alone gets legacy sessions the node plays for it, request by request.
    const session = this.#eras.includes('legacy')
      ? new HttpSession(this.#endpoint, this.#logger, release)
      : new EmulatedLegacySession(this.#modernChannel, this.#logger, release)
    this.#active.add(session)
    return session
  }

  /** Modern requests to the server wherever it listens now (a restarted process has a new port). */
  readonly #modernChannel: ModernChannel = (request, sink) => {
    if (this.#endpoint === undefined) {
      sink.respond(serverUnavailable(request.id, `server ${this.config.id} is not running`))
      return () => {}
    }
    return forwardModern(this.#endpoint, request, sink)
  }

  status(): UpstreamStatus {
    return {
      id: this.config.id,
      version: this.config.version,
      transport: 'streamable-http',
      eras: this.#eras,
      ready: this.#endpoint !== undefined && !this.#stopped,
      activeSessions: this.#active.size,
      idleInstances: 0,
      restarts: this.#restarts,
      pids: this.#proc?.child.pid === undefined || this.#proc.exited ? [] : [this.#proc.child.pid],
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#restartTimer)
    await Promise.all([...this.#active].map((s) => s.close()))
    await this.#proc?.stop()
  }

  async #launch(): Promise<void> {
    // In a sandbox the server has a network of its own: any port is free there.
    const port = this.#launcher.sandboxed ? SANDBOXED_PORT : await freePort()
    const { process: proc, socketPath } = this.#launcher.startHttp(
      this.config,
      resolveLaunch(this.config, { [this.config.portEnv]: String(port) }),
      this.#logger,
      port,
    )
    proc.onMessage = (line) => this.#logger.debug({ stdout: Buffer.from(line).toString() }, 'server stdout')
    this.#proc = proc
    const deadline = Date.now() + START_TIMEOUT_MS
    const retry = new Backoff(25, 500)
    while (!(await portAccepts(socketPath ?? port))) {
      if (proc.exited)
        throw new NexusError('UPSTREAM_UNAVAILABLE', `server ${this.config.id} ${proc.exitDescription}`)
      if (Date.now() > deadline) {
        await proc.stop()
        throw new NexusError(
          'UPSTREAM_UNAVAILABLE',
          `server ${this.config.id} did not listen on port ${port}`,
        )
      }
      await new Promise((resolve) => setTimeout(resolve, retry.fail()))
    }
    this.#endpoint = { url: new URL(`http://127.0.0.1:${port}${this.config.path}`), socketPath }
    proc.onExit = (description) => this.#onExit(proc, description)
    this.#events?.processStarted(this.config.id, proc.child.pid)
  }

  #onExit(proc: StdioProcess, description: string): void {
    if (this.#stopped || proc !== this.#proc) return
    this.#endpoint = undefined
    this.#restarts++
    // The server's sessions died with it; a restarted process would not know their ids.
    for (const session of [...this.#active])
      session.fail('UPSTREAM_EXITED', `the server process ${description}`)
    const delay = this.#backoff.restartDelay(Date.now() - proc.startedAt)
    this.#logger.warn({ description, retryInMs: delay }, 'server process exited; restarting it')
    this.#events?.processExited(this.config.id, description, delay)
    this.#restartTimer = setTimeout(() => {
      this.#launch().catch((err) => {
        this.#logger.error({ err }, 'server restart failed')
        this.#onExit(proc, errorMessage(err))
      })
    }, delay)
  }
}

/** The eras a server's configuration declares; a stdio server, or one declaring none, is taken as legacy. */
export function serverEras(config: ServerConfig): Era[] {
  return (config.transport === 'streamable-http' ? config.eras : undefined) ?? ['legacy']
}
