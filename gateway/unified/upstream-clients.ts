import { randomUUID } from 'node:crypto'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import type { AuthContext } from '../../protocol/session-handshake.ts'
import type { SessionFactory } from '../session-factory.ts'
import { SessionTransport } from './session-transport.ts'

/** One server as the unified endpoint reaches it: an SDK client over a gateway session. */
export interface Upstream {
  serverId: string
  client: Client
  transport: SessionTransport
}

export interface UpstreamClientsOptions {
  factory: SessionFactory
  auth: AuthContext
  /** The agent's session: each server's session is named after it. */
  sessionId: string
  capabilities: () => ClientCapabilities
  clientInfo: () => { name: string; version: string }
  /** Sets up what a server may send back (its requests and notifications) on a new client. */
  wire: (upstream: Upstream) => void
  /** A server's session ended (no host left, the node refused it, the agent left). */
  onEnded: (serverId: string) => void
  logger: Logger
}

/**
 * The servers one agent session of the unified endpoint uses, each opened on first use — a session through
 * the gateway's routing and failover, initialized with the agent's own capabilities — and forgotten when it
 * ends, so that the next use opens it again where a host is.
 */
export class UpstreamClients {
  readonly #options: UpstreamClientsOptions
  readonly #open = new Map<string, Promise<Upstream>>()
  #closed = false

  constructor(options: UpstreamClientsOptions) {
    this.#options = options
  }

  /** The servers opened so far (connected or connecting). */
  get serverIds(): string[] {
    return [...this.#open.keys()]
  }

  get(serverId: string): Promise<Upstream> {
    if (this.#closed) return Promise.reject(new Error('the session has ended'))
    let opening = this.#open.get(serverId)
    if (opening === undefined) {
      const { promise, resolve, reject } = Promise.withResolvers<Upstream>()
      opening = promise
      this.#open.set(serverId, promise)
      promise.catch(() => this.#forget(serverId, promise))
      this.#connect(serverId, promise).then(resolve, reject)
    }
    return opening
  }

  async close(): Promise<void> {
    this.#closed = true
    const open = [...this.#open.values()]
    this.#open.clear()
    await Promise.allSettled(open.map(async (o) => (await o).client.close()))
  }

  async #connect(serverId: string, opening: Promise<Upstream>): Promise<Upstream> {
    const { factory, auth, sessionId, logger } = this.#options
    const transport = new SessionTransport()
    const session = factory.createSession(
      serverId,
      `${sessionId}/${serverId}/${randomUUID()}`,
      transport.channel,
      auth,
    )
    transport.attach(session)
    const info = this.#options.clientInfo()
    const client = new Client(
      { name: info.name, version: info.version },
      { capabilities: this.#options.capabilities() },
    )
    const upstream: Upstream = { serverId, client, transport }
    this.#options.wire(upstream)
    client.onclose = () => {
      this.#forget(serverId, opening)
      this.#options.onEnded(serverId)
    }
    await client.connect(transport)
    logger.debug({ serverId }, 'unified endpoint: server session opened')
    return upstream
  }

  #forget(serverId: string, opening: Promise<Upstream>): void {
    if (this.#open.get(serverId) === opening) this.#open.delete(serverId)
  }
}
