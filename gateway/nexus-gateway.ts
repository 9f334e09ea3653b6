import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ConnectionGater, PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { type DemandReport, decodeDemandReport } from '../protocol/demand.ts'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { DEFAULT_FRESHNESS, GossipRecords } from '../protocol/gossip-records.ts'
import { InputGuard } from '../protocol/input-guard.ts'
import { createLogger } from '../protocol/logger.ts'
import { DEMAND_TOPIC } from '../protocol/names.ts'
import { serveOps } from '../protocol/ops-endpoints.ts'
import { isLoopbackHost, refuseByOrigin } from '../protocol/origin-guard.ts'
import { createPeer, type NexusPeer } from '../protocol/peer.ts'
import type { AuthContext } from '../protocol/session-handshake.ts'
import { type OpenedWhitelist, openWhitelist } from '../trust/open-whitelist.ts'
import type { Whitelist } from '../trust/whitelist.ts'
import { Authenticator, mayUseServer } from './authenticator.ts'
import { type GatewayConfig, type GatewayConfigInput, parseGatewayConfig } from './config.ts'
import { applyCors } from './cors.ts'
import { DemandReporter } from './demand-reporter.ts'
import { EventBudget } from './event-store.ts'
import { GatewayMetrics } from './gateway-metrics.ts'
import { type ClientChannel, type FailoverEvent, GatewaySession } from './gateway-session.ts'
import type { LocalLoad } from './host-selection.ts'
import { type Exchange, runPipeline, type Stage } from './http-pipeline.ts'
import { sendHttpError, sendJson } from './http-responses.ts'
import { InFlightBudget } from './in-flight-budget.ts'
import { KeptStreams } from './kept-streams.ts'
import { LegacySseEndpoint } from './legacy-sse-endpoint.ts'
import { ModernEndpoint } from './modern-endpoint.ts'
import { NetworkFeed } from './network-page/network-feed.ts'
import { sendNetworkPage } from './network-page/send-page.ts'
import { ADMIT_ALL, type HostAdmission, NetworkView } from './network-view.ts'
import { connectToHost } from './node-link.ts'
import { RateLimiter } from './rate-limiter.ts'
import { BodyBudget, type BodyLimits, readJsonBodyOrReply } from './request-body.ts'
import { requestTarget } from './request-target.ts'
import { ResponseBacklog } from './response-backlog.ts'
import { RetrySafety } from './retry-safety.ts'
import { matchRoute, opensSession, PROTECTED_RESOURCE_PATH } from './routes.ts'
import type { SessionFactory } from './session-factory.ts'
import { StreamableEndpoint } from './streamable-endpoint.ts'
import { UnifiedEndpoint } from './unified/unified-endpoint.ts'
import { mergeUnmet, UnmetDemand, type UnmetEntry } from './unmet-demand.ts'

export interface NexusGatewayOptions {
  logger?: Logger
  privateKey?: PrivateKey
  connectionGater?: ConnectionGater
  /** Source of randomness for choosing hosts (power of two choices); tests may seed it. */
  random?: () => number
}

export interface NexusGatewayEvents {
  /** Another gateway's demand report arrived (its unmet requests now count in `unmetDemand()`). */
  'demand-report': [{ peerId: string }]
  'session-opened': [GatewaySession]
  'session-closed': [GatewaySession]
  failover: [FailoverEvent]
  /** A session stopped reading from its node until its agent catches up. */
  'back-pressure': [GatewaySession]
  /** A response stream that took nothing for `slowClientTimeoutMs` was closed. */
  'slow-client-cut': [serverId: string]
}

/**
 * A libp2p peer plus an HTTP server that speaks MCP to agents and relays each session to a node hosting the
 * server it asked for.
 */
export class NexusGateway extends EventEmitter<NexusGatewayEvents> implements SessionFactory {
  readonly config: GatewayConfig
  readonly logger: Logger
  readonly sessions = new Map<string, GatewaySession>()
  /** The bytes of resumable events every session keeps, against `sessions.maxStoredEventBytesTotal`. */
  readonly eventBudget: EventBudget
  readonly bodyLimits: BodyLimits
  /** Prometheus metrics, served at `/metrics`. */
  readonly metrics = new GatewayMetrics({
    sessionsPerServer: () => this.#sessionsPerServer(),
    storedEventBytes: () => this.eventBudget.bytes,
    sessionsHeldBack: () => {
      let held = 0
      for (const session of this.sessions.values()) if (session.heldBack) held++
      return held
    },
    peers: () => this.#peer?.getConnections().length ?? 0,
    announcements: () => this.#view?.announcements.counts ?? { accepted: 0, ignored: 0, rejected: 0 },
    keptStreams: () => ({ waiting: this.keptStreams.size, counts: this.keptStreams.counts }),
  })
  /** Counts, logs and contains what hostile or broken input does (see `protocol/input-guard.ts`). */
  readonly guard: InputGuard
  /** The agents' requests waiting for answers, per principal and in all. */
  readonly inFlightBudget: InFlightBudget
  readonly #options: NexusGatewayOptions
  readonly #retrySafety = new RetrySafety()
  /** Streams to nodes kept open between modern requests. */
  readonly keptStreams: KeptStreams
  #peer: NexusPeer | undefined
  #view: NetworkView | undefined
  #trust: OpenedWhitelist | undefined
  readonly #authenticator: Authenticator
  readonly #rateLimiter: RateLimiter
  #stopping = false
  #demandRecords: GossipRecords<DemandReport> | undefined
  #demand: DemandReporter | undefined
  /** What agents asked this gateway for that no node offers; gossiped in its demand reports. */
  readonly unmet = new UnmetDemand()
  /** The latest demand report of each other gateway, for the network's unmet demand. */
  readonly #otherReports = new Map<string, DemandReport>()
  #probing = new Set<GatewaySession>()
  #http: Server | undefined
  #streamable: StreamableEndpoint | undefined
  #unified: UnifiedEndpoint | undefined
  #feed: NetworkFeed | undefined
  #legacy: LegacySseEndpoint | undefined
  #sweeper: NodeJS.Timeout | undefined

  constructor(config: GatewayConfigInput = {}, options: NexusGatewayOptions = {}) {
    super()
    this.config = parseGatewayConfig(config)
    this.logger = options.logger ?? createLogger('gateway')
    this.#options = options
    this.#authenticator = new Authenticator(this.config.auth)
    this.#rateLimiter = new RateLimiter(this.config.limits.requestsPerSecond, this.config.limits.burst)
    this.inFlightBudget = new InFlightBudget({
      perSession: this.config.limits.inFlightPerSession,
      perPrincipal: this.config.limits.inFlightPerPrincipal,
      total: this.config.limits.maxInFlight,
    })
    this.eventBudget = new EventBudget(this.config.sessions.maxStoredEventBytesTotal)
    this.keptStreams = new KeptStreams({ idleMs: this.config.keptStreamIdleMs })
    this.guard = new InputGuard(this.metrics.registry, 'nexus_gateway', this.logger)
    this.bodyLimits = {
      maxBodyBytes: this.config.http.maxBodyBytes,
      onRefused: (reason) => this.guard.refused('agent', reason),
      // One body of the largest size must always fit.
      budget: new BodyBudget(Math.max(this.config.http.maxBufferedBodyBytes, this.config.http.maxBodyBytes)),
    }
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

  /** The whitelist this gateway routes by (loaded at start). */
  get whitelist(): Whitelist {
    if (this.#trust === undefined) throw new NexusError('STOPPED', 'gateway is not started')
    return this.#trust.whitelist
  }

  #admission(): HostAdmission {
    if (this.config.trust.allowUnverified) return ADMIT_ALL
    const whitelist = this.whitelist
    return {
      announced: (server) => whitelist.allows(server.id, server.version, server.manifestHash),
      provided: (serverId) => whitelist.allowsSomeVersion(serverId),
    }
  }

  async start(): Promise<void> {
    this.#trust = await openWhitelist(this.config.trust, this.logger)
    this.#trust.whitelist.on('change', () => this.#view?.emit('change'))
    this.#peer = await createPeer({
      transport: this.config.transport,
      listen: this.config.listen,
      bootstrap: this.config.bootstrap,
      privateKey: this.#options.privateKey,
      maxConnections: this.config.maxConnections,
      connectionTrim: this.config.connectionTrim,
      connectionGater: this.#options.connectionGater,
      logger: this.logger,
    })
    this.#view = new NetworkView(this.#peer, this.config.discovery, this.logger, this.#admission())
    this.#view.start()
    this.#demandRecords = new GossipRecords(
      this.#peer,
      DEMAND_TOPIC,
      decodeDemandReport,
      DEFAULT_FRESHNESS,
      this.logger,
    )
    this.#demandRecords.start({ subscribe: this.config.discovery.gossip })
    this.#demandRecords.on('record', (report) => {
      if (report.peerId === this.peer.peerId.toString()) return
      this.#otherReports.set(report.peerId, report)
      this.emit('demand-report', { peerId: report.peerId })
    })
    this.#demand = new DemandReporter(
      this.#demandRecords,
      this.#peer.peerId.toString(),
      this.config.demandIntervalMs,
      () => this.#sessionsPerServer(),
      this.logger,
      () => this.unmet.ranked(64),
    )
    this.#demand.start()
    const modern = new ModernEndpoint({
      connect: (serverId, auth, hosts, request) =>
        connectToHost(this.peer, this.view, (peerId) => this.#localLoad(peerId), {
          serverId,
          sessionId: `modern-${randomUUID()}`,
          auth,
          era: 'modern',
          firstMessage: request,
          handshakeTimeoutMs: this.config.handshakeTimeoutMs,
          maxUnsentBytes: this.config.sessions.maxUnsentBytes,
          guard: this.guard,
          exclude: hosts.exclude,
          only: hosts.only,
          random: this.#options.random,
          admits: this.#admits(),
          kept: this.keptStreams,
        }),
      retrySafety: this.#retrySafety,
      logger: this.logger,
      onRequestDone: (serverId, method, outcome, seconds) => {
        this.#demand?.countCall(serverId)
        this.metrics.requestDone(serverId, method, outcome as never, seconds)
      },
    })
    this.#streamable = new StreamableEndpoint(this, this.config, this.eventBudget, modern)
    this.#unified = new UnifiedEndpoint(this, this.config, this.view, this.eventBudget, modern, this.logger)
    this.#feed = new NetworkFeed({
      view: this.view,
      peerId: () => this.peer.peerId.toString(),
      links: () => [...new Set(this.peer.getConnections().map((c) => c.remotePeer.toString()))],
      sessions: () => this.sessions.size,
      onFailover: (listener) => {
        this.on('failover', listener)
        return () => this.off('failover', listener)
      },
    })
    this.#legacy = new LegacySseEndpoint(this, this.logger)
    // Idle keep-alive sockets stay open longer than clients keep them (undici: 4 s), so that a client never
    // reuses a socket the server is closing at that moment (which it would see as ECONNRESET).
    const { headersTimeoutMs, requestTimeoutMs, maxConnections } = this.config.http
    const http = createServer(
      {
        keepAliveTimeout: 65_000,
        // A client trickling its headers or body byte by byte holds a socket and little else; these bound how
        // long (408 and the connection closed), checked often enough for the bounds to mean something.
        headersTimeout: headersTimeoutMs,
        requestTimeout: Math.max(requestTimeoutMs, headersTimeoutMs),
        connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(headersTimeoutMs / 4))),
      },
      (req, res) => void this.#route(req, res),
    )
    http.maxConnections = maxConnections
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
    const sweepEvery = Math.min(
      1_000,
      Math.max(50, Math.floor(this.config.sessions.idleTimeoutMs / 4)),
      Math.max(50, Math.floor(this.config.failover.probeAfterMs / 2)),
    )
    this.#sweeper = setInterval(() => this.guard.run('timer', () => this.#sweep()), sweepEvery)
    this.logger.info({ url: this.url, peerId: this.#peer.peerId.toString() }, 'gateway started')
  }

  /**
   * Stops gracefully: new sessions are refused (503), requests in flight get up to `shutdownTimeoutMs` to be
   * answered, the rest are answered with an error saying the gateway shut down, then the sessions end and the
   * gateway leaves the network. No agent request goes unanswered.
   */
  async stop(): Promise<void> {
    this.#stopping = true
    this.#feed?.close()
    clearInterval(this.#sweeper)
    this.#demand?.stop()
    const sessions = [...this.sessions.values()]
    const deadline = AbortSignal.timeout(this.config.shutdownTimeoutMs)
    const timedOut = new Promise<void>((resolve) => deadline.addEventListener('abort', () => resolve()))
    await Promise.race([Promise.all(sessions.map((s) => s.whenIdle())), timedOut])
    await Promise.all(sessions.map((s) => s.shutdown('the gateway shut down before the server answered')))
    await Promise.all([this.#streamable?.closeAll(), this.#unified?.closeAll(), this.#legacy?.closeAll()])
    if (this.#http !== undefined) {
      const http = this.#http
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    }
    this.keptStreams.closeAll()
    this.#view?.stop()
    this.#demandRecords?.stop()
    await this.#peer?.stop()
    await this.#trust?.close()
    this.#trust = undefined
    this.#http = undefined
    this.#view = undefined
    this.#peer = undefined
    this.logger.info('gateway stopped')
  }

  async isServed(serverId: string, askedBy?: string): Promise<boolean> {
    const served = (await this.view.findHosts(serverId)).length > 0
    if (served) this.unmet.forget(serverId)
    else if (askedBy !== undefined && this.unmet.record(serverId, askedBy)) this.metrics.unmetRequest()
    return served
  }

  /**
   * What the network's agents asked for and could not get: this gateway's counts and the latest report of
   * every other gateway heard from within three of its intervals, ranked by demand. Servers some node now
   * offers are left out.
   */
  unmetDemand(): UnmetEntry[] {
    const now = Date.now()
    const fresh = [...this.#otherReports.values()].filter((r) => r.timestamp + 3 * r.intervalMs >= now)
    const offered = new Set(this.view.serverIds())
    return mergeUnmet([this.unmet.ranked(), ...fresh.map((r) => r.unmet ?? [])]).filter(
      (e) => !offered.has(e.id),
    )
  }

  createBacklog(serverId: string): ResponseBacklog {
    return new ResponseBacklog({
      stallTimeoutMs: this.config.sessions.slowClientTimeoutMs,
      onCut: () => {
        this.metrics.slowClientCut(serverId)
        this.logger.info({ serverId }, 'closed a response its client stopped reading')
        this.emit('slow-client-cut', serverId)
      },
    })
  }

  createSession(
    serverId: string,
    sessionId: string,
    client: ClientChannel,
    auth: AuthContext,
  ): GatewaySession {
    const logger = this.logger.child({ sessionId, serverId, principal: auth.principal })
    const session = new GatewaySession({
      id: sessionId,
      serverId,
      auth,
      client,
      logger,
      retrySafety: this.#retrySafety,
      inFlightBudget: this.inFlightBudget,
      guard: this.guard,
      replayTimeoutMs: this.config.failover.replayTimeoutMs,
      takeoverTimeoutMs: this.config.failover.takeoverTimeoutMs,
      connect: (exclude) =>
        connectToHost(this.peer, this.view, (peerId) => this.#localLoad(peerId), {
          serverId,
          sessionId,
          auth,
          handshakeTimeoutMs: this.config.handshakeTimeoutMs,
          maxUnsentBytes: this.config.sessions.maxUnsentBytes,
          guard: this.guard,
          exclude,
          random: this.#options.random,
          admits: this.#admits(),
        }),
      onClientRequest: () => this.#demand?.countCall(serverId),
      onRequestDone: (method, outcome, seconds) =>
        this.metrics.requestDone(serverId, method, outcome, seconds),
      onFailover: (event) => {
        this.metrics.failover(serverId)
        this.emit('failover', event)
      },
      onBackPressure: (s) => {
        this.metrics.backPressure(serverId)
        this.emit('back-pressure', s)
      },
      onClosed: (s) => {
        if (this.sessions.get(s.id) !== s) return
        this.sessions.delete(s.id)
        this.emit('session-closed', s)
      },
    })
    this.sessions.set(sessionId, session)
    this.metrics.sessionOpened(serverId)
    this.emit('session-opened', session)
    return session
  }

  /** Whether a node's declared server may be used: whitelisted, unless unverified servers are allowed. */
  #admits(): ((server: { id: string; version: string; manifestHash: string }) => boolean) | undefined {
    if (this.config.trust.allowUnverified) return undefined
    return (server) => this.whitelist.allows(server.id, server.version, server.manifestHash)
  }

  #localLoad(peerId: string): LocalLoad {
    let sessions = 0
    let inFlight = 0
    for (const session of this.sessions.values()) {
      if (session.nodePeerId !== peerId) continue
      sessions++
      inFlight += session.inFlightCount
    }
    return { sessions, inFlight }
  }

  /** OAuth 2.0 Protected Resource Metadata (RFC 9728), which MCP clients read to find the authorization server. */
  #resourceMetadata() {
    const auth = this.config.auth
    const servers = auth.authorizationServers ?? (auth.jwt === undefined ? [] : [auth.jwt.issuer])
    return {
      resource: auth.resource ?? this.url,
      authorization_servers: servers,
      bearer_methods_supported: ['header'],
      scopes_supported: ['server:*', ...this.view.serverIds().map((id) => `server:${id}`)],
      resource_name: 'MCP Nexus gateway',
    }
  }

  /**
   * A 401 or 403 with the `WWW-Authenticate` challenge the MCP authorization spec asks for: it points clients
   * at the resource metadata, and says whether the token was refused or lacks a scope.
   */
  #challenge(
    res: ServerResponse,
    status: 401 | 403,
    failure: { reason: string; tokenPresented?: boolean; scope?: string },
  ): void {
    const metadata = `${this.config.auth.resource ?? this.url}${PROTECTED_RESOURCE_PATH}`
    const quote = (value: string) => `"${value.replace(/["\\]/g, '')}"`
    const parts = [`resource_metadata=${quote(metadata)}`]
    if (status === 403) parts.push('error="insufficient_scope"', `scope=${quote(failure.scope ?? '')}`)
    else if (failure.tokenPresented) parts.push('error="invalid_token"')
    if (status === 403 || failure.tokenPresented) parts.push(`error_description=${quote(failure.reason)}`)
    const message = status === 401 ? `Unauthorized: ${failure.reason}` : `Forbidden: ${failure.reason}`
    sendHttpError(res, status, -32000, message, { 'www-authenticate': `Bearer ${parts.join(', ')}` })
  }

  /** 429 with Retry-After: the client may come back, and nothing it already has is disturbed. */
  #tooMany(res: ServerResponse, waitSeconds: number, why: string): void {
    const retryAfter = String(Math.max(1, Math.ceil(waitSeconds)))
    sendHttpError(res, 429, -32000, `Too many requests: ${why}; retry after ${retryAfter} s`, {
      'retry-after': retryAfter,
    })
  }

  /** A refusal when opening one more session would exceed the principal's or the gateway's limit. */
  #sessionLimit(auth: AuthContext): ((res: ServerResponse) => void) | undefined {
    const { sessionsPerPrincipal, maxSessions } = this.config.limits
    if (this.sessions.size >= maxSessions)
      return (res) =>
        sendHttpError(res, 503, -32000, `Service unavailable: the gateway holds ${maxSessions} sessions`, {
          'retry-after': '5',
        })
    let mine = 0
    for (const session of this.sessions.values()) if (session.auth.principal === auth.principal) mine++
    if (mine >= sessionsPerPrincipal)
      return (res) =>
        this.#tooMany(res, 5, `${auth.principal} already holds ${sessionsPerPrincipal} sessions`)
    return undefined
  }

  /** Why the gateway cannot serve agents yet (not joined, no host known), or undefined when it can. */
  #notReadyBecause(): string | undefined {
    if (this.#peer === undefined || this.#view === undefined) return 'not started'
    if (this.#stopping) return 'shutting down'
    if (this.#peer.getConnections().length === 0) return 'not connected to any peer'
    if (this.#view.serverIds().length === 0) return 'no node known to host any server'
    return undefined
  }

  #sessionsPerServer(): Map<string, number> {
    const counts = new Map<string, number>()
    for (const session of this.sessions.values())
      counts.set(session.serverId, (counts.get(session.serverId) ?? 0) + 1)
    return counts
  }

  #sweep(): void {
    const now = Date.now()
    const idleCutoff = now - this.config.sessions.idleTimeoutMs
    for (const session of this.sessions.values()) {
      if (session.lastActivity < idleCutoff && session.inFlightCount === 0) {
        this.logger.info({ sessionId: session.id }, 'closing idle session')
        void session.close()
      } else {
        this.#checkLiveness(session, now)
      }
    }
  }

  /**
   * A session whose node has said nothing for a while although a request waits, or whose node stopped
   * announcing itself, gets a probe on its stream; no answer in time, and the session moves to another node.
   */
  #checkLiveness(session: GatewaySession, now: number): void {
    const link = session.link
    // A paused link is silent because the gateway stopped reading it for a slow agent, not because its node hung.
    if (link === undefined || link.paused || this.#probing.has(session)) return
    const silentFor = now - link.lastFrameAt
    const waiting = session.inFlightCount > 0 && silentFor > this.config.failover.probeAfterMs
    const heartbeatLost =
      this.config.discovery.gossip &&
      !this.view.isLive(link.peerId) &&
      silentFor > this.config.failover.probeAfterMs
    if (!waiting && !heartbeatLost) return
    this.#probing.add(session)
    void link.probe(this.config.failover.probeTimeoutMs).then((answered) => {
      this.#probing.delete(session)
      if (answered || session.link !== link) return
      this.logger.warn({ sessionId: session.id, node: link.peerId }, 'node did not answer a probe')
      session.abandonNode(`the node stopped answering for ${Date.now() - link.lastFrameAt} ms`)
    })
  }

  /**
   * The gateway's HTTP handling, in the order it runs — the security pipeline at a glance. Each stage answers
   * the request or lets it through; routes come from one table (`routes.ts`).
   */
  readonly #pipeline: readonly Stage[] = [
    { name: 'request target', run: (x) => this.#checkTarget(x) },
    // Before anything is answered: a rebinding page must not read metrics or the server list either.
    { name: 'origin', run: (x) => this.#checkOrigin(x) },
    { name: 'operations', run: (x) => this.#serveOperations(x) },
    { name: 'cors', run: (x) => applyCors(x.req, x.res) },
    { name: 'route', run: (x) => this.#matchRoute(x) },
    { name: 'authentication', run: (x) => this.#authenticate(x) },
    { name: 'authorization', run: (x) => this.#authorize(x) },
    { name: 'rate limit', run: (x) => this.#limitRate(x) },
    { name: 'admission', run: (x) => this.#admit(x) },
    { name: 'endpoint', run: (x) => this.#dispatch(x) },
  ]

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await runPipeline(this.#pipeline, { req, res, url: new URL('http://gateway/') })
    } catch (err) {
      // A bug that one request reached: that request alone fails, without saying what went wrong inside.
      this.guard.failed('agent', err, { method: req.method })
      sendHttpError(res, 500, -32603, 'Internal error')
    }
  }

  #checkTarget(x: Exchange): boolean {
    const url = requestTarget(x.req.url)
    if (url !== undefined) {
      x.url = url
      return false
    }
    this.guard.refused('agent', 'request target is not a URL')
    sendHttpError(x.res, 400, -32000, 'Bad Request: the request target is not a valid URL path')
    return true
  }

  #checkOrigin(x: Exchange): boolean {
    const refusal = refuseByOrigin(x.req, {
      allowedHosts: this.config.http.allowedHosts,
      allowedOrigins: this.config.http.allowedOrigins,
      loopbackOnly: isLoopbackHost(this.config.http.host),
    })
    if (refusal === undefined) return false
    sendHttpError(x.res, 403, -32000, `Forbidden: ${refusal}`)
    return true
  }

  /** `/healthz`, `/readyz`, `/metrics` and the server list: for operators, before any agent-facing stage. */
  async #serveOperations(x: Exchange): Promise<boolean> {
    const served = await serveOps(x.url.pathname, x.res, {
      notReadyBecause: () => this.#notReadyBecause(),
      registry: this.metrics.registry,
    })
    if (served) return true
    // The page is a shell with no data of its own; what it shows comes from /network/events, behind auth.
    if (x.url.pathname === '/network' && x.req.method === 'GET') {
      sendNetworkPage(x.res)
      return true
    }
    if (x.url.pathname !== '/servers' || x.req.method !== 'GET') return false
    const servers = this.view.serverIds().map((id) => ({ id, hosts: this.view.hostsOf(id).length }))
    sendJson(x.res, 200, { servers })
    return true
  }

  /**
   * `/requests`: GET ranks what the network's agents asked for and could not get; POST is an agent's explicit
   * request for a server (`{ "server": "<id>", "package": "npm:<name>@<version>" }`), counted like an attempt.
   */
  async #serveRequests(x: Exchange): Promise<void> {
    if (x.req.method === 'GET') return sendJson(x.res, 200, { requests: this.unmetDemand() })
    const read = await readJsonBodyOrReply(x.req, x.res, this.bodyLimits)
    if (read === undefined) return
    const body = read.value as { server?: unknown; package?: unknown }
    const spec = typeof body.package === 'string' ? body.package : undefined
    if (typeof body.server !== 'string' || !this.unmet.record(body.server, x.auth!.principal, spec))
      return sendHttpError(
        x.res,
        400,
        -32602,
        'Invalid params: give "server" (a server id) and, optionally, "package" (npm:<name>@<version> or pypi:<name>==<version>)',
      )
    this.metrics.unmetRequest()
    sendJson(x.res, 202, { request: this.unmet.ranked().find((e) => e.id === body.server) })
  }

  #matchRoute(x: Exchange): boolean {
    const match = matchRoute(x.req.method, x.url)
    if (match !== undefined && 'route' in match) {
      x.route = match.route
      if (match.route.kind === 'mcp' || match.route.kind === 'sse') x.serverId = match.route.serverId
      if (match.route.kind === 'legacy-messages') x.serverId = this.#legacy!.serverOf(match.route.sessionId)
      if (match.route.kind !== 'resource-metadata') return false
      sendJson(x.res, 200, this.#resourceMetadata())
      return true
    }
    if (match !== undefined)
      sendHttpError(x.res, 405, -32000, 'Method not allowed', { allow: match.notAllowed.join(', ') })
    else
      sendHttpError(
        x.res,
        404,
        -32000,
        `Not found: ${x.url.pathname}; MCP endpoints are /mcp, /mcp/v/<name>, /mcp/<server-id> and /sse/<server-id>`,
      )
    return true
  }

  async #authenticate(x: Exchange): Promise<boolean> {
    const authentication = await this.#authenticator.authenticate(x.req)
    if (authentication.ok) {
      x.auth = authentication.auth
      return false
    }
    this.#challenge(x.res, 401, authentication)
    return true
  }

  #authorize(x: Exchange): boolean {
    if (x.serverId === undefined || mayUseServer(x.auth!, x.serverId)) return false
    this.#challenge(x.res, 403, {
      reason: `no scope for server ${x.serverId}`,
      scope: `server:${x.serverId}`,
    })
    return true
  }

  #limitRate(x: Exchange): boolean {
    const wait = this.#rateLimiter.take(x.auth!.principal)
    if (wait <= 0) return false
    this.#tooMany(x.res, wait, `more than ${this.config.limits.requestsPerSecond} requests/s`)
    return true
  }

  /** New sessions: none while the gateway stops, and none past the principal's share. */
  #admit(x: Exchange): boolean {
    if (!opensSession(x.route!, x.req)) return false
    if (this.#stopping) {
      sendHttpError(x.res, 503, -32000, 'Service unavailable: the gateway is shutting down', {
        'retry-after': '1',
      })
      return true
    }
    const refusal = this.#sessionLimit(x.auth!)
    if (refusal === undefined) return false
    refusal(x.res)
    return true
  }

  async #dispatch(x: Exchange): Promise<boolean> {
    const route = x.route!
    if (route.kind === 'mcp') await this.#streamable!.handle(x.req, x.res, route.serverId, x.auth!)
    else if (route.kind === 'network-events') this.#feed!.watch(x.res)
    else if (route.kind === 'unified') await this.#unified!.handle(x.req, x.res, route.virtual, x.auth!)
    else if (route.kind === 'sse') await this.#legacy!.open(x.res, route.serverId, x.auth!)
    else if (route.kind === 'unified-sse') await this.#unified!.openSse(x.res, route.virtual, x.auth!)
    else if (route.kind === 'legacy-messages' && this.#unified!.ownsSse(route.sessionId))
      await this.#unified!.postSse(x.req, x.res, route.sessionId!, x.auth!)
    else if (route.kind === 'legacy-messages')
      await this.#legacy!.post(x.req, x.res, route.sessionId, x.auth!)
    else if (route.kind === 'requests') await this.#serveRequests(x)
    return true
  }
}
