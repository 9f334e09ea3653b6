import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { isInitializeRequest, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import type { AuthContext } from '../../protocol/session-handshake.ts'
import { mayUseServer } from '../authenticator.ts'
import type { GatewayConfig } from '../config.ts'
import { BoundedEventStore, type EventBudget } from '../event-store.ts'
import { sendHttpError } from '../http-responses.ts'
import { LEGACY_MESSAGES_PATH, readSseMessage } from '../legacy-sse-endpoint.ts'
import type { ModernEndpoint } from '../modern-endpoint.ts'
import { isModernHttpRequest } from '../modern-validation.ts'
import type { NetworkView } from '../network-view.ts'
import { readJsonBodyOrReply } from '../request-body.ts'
import type { SessionFactory } from '../session-factory.ts'
import { Namespacing } from './namespacing.ts'
import { UnifiedModern } from './unified-modern.ts'
import { UnifiedServer } from './unified-server.ts'
import { mayUseVirtual, ToolView } from './virtual-servers.ts'

interface Entry {
  transport: StreamableHTTPServerTransport | SSEServerTransport
  unified: UnifiedServer
  principal: string
  /** `''` for `/mcp`, the virtual server's name otherwise. */
  virtual: string
  lastActivity: number
}

/**
 * `/mcp` and `/mcp/v/<name>`: one MCP server for all the servers a principal may use (or a virtual server's
 * share of them), on the streamable HTTP transport of the 2025-11-25 era, with Last-Event-ID resumption; and
 * `/sse`, `/sse/v/<name>` for clients of the HTTP+SSE transport.
 */
export class UnifiedEndpoint {
  readonly #factory: SessionFactory
  readonly #config: GatewayConfig
  readonly #view: NetworkView
  readonly #eventBudget: EventBudget
  readonly #logger: Logger
  readonly #names: Namespacing
  readonly #entries = new Map<string, Entry>()
  readonly #onViewChange = () => {
    for (const entry of this.#entries.values()) entry.unified.refresh()
  }
  readonly #idleSweep: NodeJS.Timeout
  readonly #modern: UnifiedModern

  constructor(
    factory: SessionFactory,
    config: GatewayConfig,
    view: NetworkView,
    eventBudget: EventBudget,
    modern: ModernEndpoint,
    logger: Logger,
  ) {
    this.#factory = factory
    this.#config = config
    this.#view = view
    this.#eventBudget = eventBudget
    this.#logger = logger.child({ endpoint: 'unified' })
    this.#names = new Namespacing(config.unified.separator)
    this.#modern = new UnifiedModern(modern, this.#names, config.unified.listTimeoutMs)
    view.on('change', this.#onViewChange)
    const idle = config.sessions.idleTimeoutMs
    this.#idleSweep = setInterval(() => this.#closeIdle(idle), Math.min(idle, 60_000)).unref()
  }

  async handle(req: IncomingMessage, res: ServerResponse, virtual: string, auth: AuthContext): Promise<void> {
    if (!this.#mayOpen(virtual, auth))
      return sendHttpError(res, 404, -32001, `Unknown virtual server ${virtual}`)
    let body: unknown
    if (req.method === 'POST') {
      const read = await readJsonBodyOrReply(req, res, this.#factory.bodyLimits)
      if (read === undefined) return
      body = read.value
    }
    if (isModernHttpRequest(req.headers, body)) {
      if (req.method !== 'POST')
        return sendHttpError(res, 405, -32000, 'Method not allowed in protocol 2026-07-28: POST only', {
          allow: 'POST',
        })
      const view = this.#toolView(virtual)
      return this.#modern.handle(req, res, body, {
        view,
        servers: [...this.#visibleServers(auth, view).keys()],
        auth,
        name: this.#serverName(virtual),
      })
    }
    const sessionId = req.headers['mcp-session-id']
    if (typeof sessionId === 'string') {
      const entry = this.#entries.get(sessionId)
      if (entry === undefined || entry.principal !== auth.principal || entry.virtual !== virtual)
        return sendHttpError(
          res,
          404,
          -32001,
          'Session not found: it ended or never existed; initialize a new one',
        )
      entry.lastActivity = Date.now()
      if (!(entry.transport instanceof StreamableHTTPServerTransport))
        return sendHttpError(res, 404, -32001, 'Session not found: that session uses HTTP+SSE (/messages)')
      await entry.transport.handleRequest(req, res, body)
      return
    }
    if (req.method !== 'POST')
      return sendHttpError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required')
    if (!isInitializeRequest(body) || !isJSONRPCRequest(body))
      return sendHttpError(
        res,
        400,
        -32000,
        'Bad Request: Mcp-Session-Id header is required for anything but an initialize request',
      )
    const entry = await this.#startSession(virtual, auth)
    await (entry.transport as StreamableHTTPServerTransport).handleRequest(req, res, body)
  }

  async closeAll(): Promise<void> {
    clearInterval(this.#idleSweep)
    this.#view.off('change', this.#onViewChange)
    await Promise.allSettled([...this.#entries.values()].map((e) => e.transport.close()))
  }

  /** `GET /sse` or `/sse/v/<name>`: the same endpoint on the HTTP+SSE transport of 2024-11-05. */
  async openSse(res: ServerResponse, virtual: string, auth: AuthContext): Promise<void> {
    if (!this.#mayOpen(virtual, auth))
      return sendHttpError(res, 404, -32001, `Unknown virtual server ${virtual}`)
    const transport = new SSEServerTransport(LEGACY_MESSAGES_PATH, res)
    await this.#connect(transport, transport.sessionId, virtual, auth)
  }

  /** Whether a `/messages?sessionId=` post is for one of this endpoint's HTTP+SSE sessions. */
  ownsSse(sessionId: string | null): boolean {
    return sessionId !== null && this.#entries.get(sessionId)?.transport instanceof SSEServerTransport
  }

  async postSse(
    req: IncomingMessage,
    res: ServerResponse,
    sessionId: string,
    auth: AuthContext,
  ): Promise<void> {
    const entry = this.#entries.get(sessionId)
    if (
      entry === undefined ||
      entry.principal !== auth.principal ||
      !(entry.transport instanceof SSEServerTransport)
    )
      return sendHttpError(res, 404, -32001, 'Session not found: open a new one with GET /sse')
    entry.lastActivity = Date.now()
    await readSseMessage(req, res, this.#factory.bodyLimits, (message) =>
      (entry.transport as SSEServerTransport).handleMessage(message),
    )
  }

  #mayOpen(virtual: string, auth: AuthContext): boolean {
    if (virtual === '') return true
    const definition = this.#config.virtualServers[virtual]
    return definition !== undefined && mayUseVirtual(definition, auth)
  }

  async #startSession(virtual: string, auth: AuthContext): Promise<Entry> {
    const sessionId = randomUUID()
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => sessionId,
      eventStore: new BoundedEventStore(
        this.#config.sessions.maxStoredEvents,
        this.#config.sessions.maxStoredEventBytes,
        this.#eventBudget,
      ),
      retryInterval: this.#config.sessions.sseRetryMs,
    })
    return this.#connect(transport, sessionId, virtual, auth)
  }

  /** One agent session: a unified server for the principal (and virtual server), on the agent's transport. */
  async #connect(
    transport: StreamableHTTPServerTransport | SSEServerTransport,
    sessionId: string,
    virtual: string,
    auth: AuthContext,
  ): Promise<Entry> {
    const view = this.#toolView(virtual)
    const unified = new UnifiedServer({
      name: this.#serverName(virtual),
      version: '1.0.0',
      sessionId,
      auth,
      factory: this.#factory,
      names: this.#names,
      view,
      visibleServers: () => this.#visibleServers(auth, view),
      listTimeoutMs: this.#config.unified.listTimeoutMs,
      callTimeoutMs: this.#config.unified.callTimeoutMs,
      logger: this.#logger.child({ sessionId, principal: auth.principal }),
    })
    const entry: Entry = { transport, unified, principal: auth.principal, virtual, lastActivity: Date.now() }
    this.#entries.set(sessionId, entry)
    transport.onclose = () => {
      this.#entries.delete(sessionId)
      void unified.close()
    }
    await unified.server.connect(transport)
    return entry
  }

  #toolView(virtual: string): ToolView {
    return new ToolView(virtual === '' ? undefined : this.#config.virtualServers[virtual])
  }

  #serverName(virtual: string): string {
    return virtual === '' ? 'mcp-nexus' : `mcp-nexus/${virtual}`
  }

  /** The servers a principal may use here, each with a signature of its live hosts. */
  #visibleServers(auth: AuthContext, view: ToolView): Map<string, string> {
    return new Map(
      this.#view
        .serverIds()
        .filter((id) => mayUseServer(auth, id) && view.includesServer(id))
        .map((id) => [
          id,
          this.#view
            .hostsOf(id)
            .map((h) => h.peerId)
            .sort()
            .join(','),
        ]),
    )
  }

  #closeIdle(idleMs: number): void {
    const now = Date.now()
    for (const entry of this.#entries.values())
      if (now - entry.lastActivity > idleMs) void entry.transport.close()
  }
}
