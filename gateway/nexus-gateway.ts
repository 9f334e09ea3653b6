import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { createLogger } from '../protocol/logger.ts'
import { createPeer, type NexusPeer } from '../protocol/peer.ts'
import type { AuthContext } from '../protocol/session-handshake.ts'
import { type GatewayConfig, type GatewayConfigInput, parseGatewayConfig } from './config.ts'
import { type ClientChannel, GatewaySession } from './gateway-session.ts'
import { sendHttpError, sendJson } from './http-responses.ts'
import { LEGACY_MESSAGES_PATH, LegacySseEndpoint } from './legacy-sse-endpoint.ts'
import { NetworkView } from './network-view.ts'
import { connectToHost } from './node-link.ts'
import { isLoopbackHost, refuseByOrigin } from './origin-guard.ts'
import type { SessionFactory } from './session-factory.ts'
import { StreamableEndpoint } from './streamable-endpoint.ts'

export interface NexusGatewayOptions {
  logger?: Logger
  privateKey?: PrivateKey
}

export interface NexusGatewayEvents {
  'session-opened': [GatewaySession]
  'session-closed': [GatewaySession]
}

const ANONYMOUS: AuthContext = { principal: 'anonymous' }

/**
 * A libp2p peer plus an HTTP server that speaks MCP to agents and relays each session to a node hosting the
 * server it asked for.
 */
export class NexusGateway extends EventEmitter<NexusGatewayEvents> implements SessionFactory {
  readonly config: GatewayConfig
  readonly logger: Logger
  readonly sessions = new Map<string, GatewaySession>()
  readonly #privateKey: PrivateKey | undefined
  #peer: NexusPeer | undefined
  #view: NetworkView | undefined
  #http: Server | undefined
  #streamable: StreamableEndpoint | undefined
  #legacy: LegacySseEndpoint | undefined
  #sweeper: NodeJS.Timeout | undefined

  constructor(config: GatewayConfigInput = {}, options: NexusGatewayOptions = {}) {
    super()
    this.config = parseGatewayConfig(config)
    this.logger = options.logger ?? createLogger('gateway')
    this.#privateKey = options.privateKey
  }

  get peer(): NexusPeer {
    if (this.#peer === undefined) throw new NexusError('STOPPED', 'gateway is not started')
    return this.#peer
  }

  get view(): NetworkView {
    if (this.#view === undefined) throw new NexusError('STOPPED', 'gateway is not started')
    return this.#view
  }

  /** The base URL agents use, e.g. http://127.0.0.1:8080. */
  get url(): string {
    const address = this.#http?.address() as AddressInfo | null | undefined
    if (address == null) throw new NexusError('STOPPED', 'gateway is not started')
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    return `http://${host}:${address.port}`
  }

  /** The streamable HTTP endpoint of one server. */
  serverUrl(serverId: string): string {
    return `${this.url}/mcp/${serverId}`
  }

  /** The legacy HTTP+SSE endpoint of one server. */
  sseUrl(serverId: string): string {
    return `${this.url}/sse/${serverId}`
  }

  async start(): Promise<void> {
    this.#peer = await createPeer({
      transport: this.config.transport,
      listen: this.config.listen,
      bootstrap: this.config.bootstrap,
      privateKey: this.#privateKey,
    })
    this.#view = new NetworkView(this.#peer, this.config.announcementTtlMs, this.logger)
    this.#view.start()
    this.#streamable = new StreamableEndpoint(this, this.config, this.logger)
    this.#legacy = new LegacySseEndpoint(this, this.config, this.logger)
    const http = createServer((req, res) => void this.#route(req, res))
    this.#http = http
    try {
      await new Promise<void>((resolve, reject) => {
        http.once('error', reject)
        http.listen(this.config.http.port, this.config.http.host, () => resolve())
      })
    } catch (err) {
      await this.stop()
      throw new NexusError(
        'INVALID_CONFIG',
        `cannot listen on ${this.config.http.host}:${this.config.http.port}: ${errorMessage(err)}`,
      )
    }
    const sweepEvery = Math.min(30_000, Math.max(50, Math.floor(this.config.sessions.idleTimeoutMs / 4)))
    this.#sweeper = setInterval(() => this.#closeIdleSessions(), sweepEvery)
    this.logger.info({ url: this.url, peerId: this.#peer.peerId.toString() }, 'gateway started')
  }

  async stop(): Promise<void> {
    clearInterval(this.#sweeper)
    await Promise.all([this.#streamable?.closeAll(), this.#legacy?.closeAll()])
    if (this.#http !== undefined) {
      const http = this.#http
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    }
    this.#view?.stop()
    await this.#peer?.stop()
    this.#http = undefined
    this.#view = undefined
    this.#peer = undefined
    this.logger.info('gateway stopped')
  }

  isServed(serverId: string): boolean {
    return this.view.hostsOf(serverId).length > 0
  }

  authenticate(): AuthContext {
    return ANONYMOUS
  }

  createSession(
    serverId: string,
    sessionId: string,
    client: ClientChannel,
    auth: AuthContext,
  ): GatewaySession {
    const logger = this.logger.child({ sessionId, serverId })
    const session = new GatewaySession({
      id: sessionId,
      serverId,
      auth,
      client,
      logger,
      connect: () =>
        connectToHost(
          this.peer,
          this.view,
          (peerId) => this.#sessionsOn(peerId),
          { serverId, sessionId, auth, handshakeTimeoutMs: this.config.handshakeTimeoutMs },
          logger,
        ),
      onClosed: (s) => {
        if (this.sessions.get(s.id) !== s) return
        this.sessions.delete(s.id)
        this.emit('session-closed', s)
      },
    })
    this.sessions.set(sessionId, session)
    this.emit('session-opened', session)
    return session
  }

  #sessionsOn(peerId: string): number {
    let count = 0
    for (const session of this.sessions.values()) if (session.nodePeerId === peerId) count++
    return count
  }

  #closeIdleSessions(): void {
    const cutoff = Date.now() - this.config.sessions.idleTimeoutMs
    for (const session of this.sessions.values()) {
      if (session.lastActivity < cutoff && session.inFlightCount === 0) {
        this.logger.info({ sessionId: session.id }, 'closing idle session')
        void session.close()
      }
    }
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://gateway')
      if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' })
      if (url.pathname === '/servers' && req.method === 'GET') {
        const servers = this.view.serverIds().map((id) => ({ id, hosts: this.view.hostsOf(id).length }))
        return sendJson(res, 200, { servers })
      }
      const refusal = refuseByOrigin(req, {
        allowedHosts: this.config.http.allowedHosts,
        allowedOrigins: this.config.http.allowedOrigins,
        loopbackOnly: isLoopbackHost(this.config.http.host),
      })
      if (refusal !== undefined) return sendHttpError(res, 403, -32000, `Forbidden: ${refusal}`)
      const [, kind, serverId, extra] = url.pathname.split('/')
      if (kind === 'mcp' && serverId && extra === undefined) {
        if (!['GET', 'POST', 'DELETE'].includes(req.method ?? '')) {
          return sendHttpError(res, 405, -32000, 'Method not allowed', { allow: 'GET, POST, DELETE' })
        }
        return await this.#streamable!.handle(req, res, serverId)
      }
      if (kind === 'sse' && serverId && extra === undefined && req.method === 'GET') {
        return await this.#legacy!.open(res, serverId)
      }
      if (url.pathname === LEGACY_MESSAGES_PATH && req.method === 'POST') {
        return await this.#legacy!.post(req, res, url.searchParams.get('sessionId'))
      }
      sendHttpError(
        res,
        404,
        -32000,
        `Not found: ${url.pathname}; MCP endpoints are /mcp/<server-id> and /sse/<server-id>`,
      )
    } catch (err) {
      this.logger.error({ err }, 'request failed')
      sendHttpError(res, 500, -32603, 'Internal error')
    }
  }
}
