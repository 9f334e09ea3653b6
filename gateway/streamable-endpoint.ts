import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isInitializeRequest, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js'
import type { AuthContext } from '../protocol/session-handshake.ts'
import type { GatewayConfig } from './config.ts'
import { BoundedEventStore, type EventBudget } from './event-store.ts'
import type { GatewaySession } from './gateway-session.ts'
import { sendHttpError } from './http-responses.ts'
import type { ModernEndpoint } from './modern-endpoint.ts'
import { isModernHttpRequest } from './modern-validation.ts'
import { readJsonBodyOrReply } from './request-body.ts'
import type { ResponseBacklog } from './response-backlog.ts'
import type { SessionFactory } from './session-factory.ts'
import { StreamableSessionTransport } from './streamable-session-transport.ts'

interface Entry {
  transport: StreamableSessionTransport
  eventStore: BoundedEventStore
  backlog: ResponseBacklog
  session: GatewaySession | undefined
  standaloneStreams: number
}

const SESSION_NOT_FOUND = -32001

/**
 * `/mcp/<server-id>`: the streamable HTTP transport. Legacy era (spec 2025-11-25, 2025-06-18, 2025-03-26): one
 * transport per session (`StreamableSessionTransport`), with an event store so that dropped streams resume
 * with Last-Event-ID. Modern
 * era (2026-07-28, told by its `MCP-Protocol-Version` header): each request on its own (`ModernEndpoint`).
 */
export class StreamableEndpoint {
  readonly #factory: SessionFactory
  readonly #config: GatewayConfig
  readonly #entries = new Map<string, Entry>()
  readonly #eventBudget: EventBudget
  readonly #modern: ModernEndpoint

  constructor(
    factory: SessionFactory,
    config: GatewayConfig,
    eventBudget: EventBudget,
    modern: ModernEndpoint,
  ) {
    this.#factory = factory
    this.#config = config
    this.#eventBudget = eventBudget
    this.#modern = modern
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    serverId: string,
    auth: AuthContext,
  ): Promise<void> {
    let body: unknown
    if (req.method === 'POST') {
      const read = await readJsonBodyOrReply(req, res, this.#factory.bodyLimits)
      if (read === undefined) return
      body = read.value
    }
    const sessionId = req.headers['mcp-session-id']
    // The modern era (2026-07-28) has no sessions: a session id it carries is ignored, GET and DELETE are gone.
    if (isModernHttpRequest(req.headers, body)) {
      if (req.method !== 'POST')
        return sendHttpError(res, 405, -32000, 'Method not allowed in protocol 2026-07-28: POST only', {
          allow: 'POST',
        })
      if (!(await this.#factory.isServed(serverId, auth.principal)))
        return sendHttpError(res, 404, -32001, `Unknown server ${serverId}: no node in the network hosts it`)
      return this.#modern.handle(req, res, serverId, auth, body)
    }
    if (typeof sessionId === 'string') {
      const entry = this.#entries.get(sessionId)
      // Another principal's session is as good as unknown: its id must not be usable by someone else.
      if (
        entry === undefined ||
        entry.session?.serverId !== serverId ||
        entry.session.auth.principal !== auth.principal
      ) {
        return sendHttpError(
          res,
          404,
          SESSION_NOT_FOUND,
          'Session not found: it ended or never existed; initialize a new one',
        )
      }
      entry.session.lastActivity = Date.now()
      const lastEventId = req.headers['last-event-id']
      if (req.method === 'GET' && lastEventId === undefined) {
        entry.standaloneStreams++
        res.once('close', () => entry.standaloneStreams--)
      }
      entry.backlog.watch(res)
      await entry.transport.handleRequest(req, res, body)
      return
    }
    if (req.method !== 'POST') {
      return sendHttpError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required')
    }
    if (!isInitializeRequest(body)) {
      return sendHttpError(
        res,
        400,
        -32000,
        'Bad Request: Mcp-Session-Id header is required for anything but initialize',
      )
    }
    // Sent as a notification it would open a session whose id the client never learns, so it could never end it.
    if (!isJSONRPCRequest(body)) {
      return sendHttpError(res, 400, -32600, 'Invalid Request: initialize must be a request, with an id')
    }
    if (!(await this.#factory.isServed(serverId, auth.principal))) {
      return sendHttpError(res, 404, -32001, `Unknown server ${serverId}: no node in the network hosts it`)
    }
    const entry = this.#startSession(serverId, auth)
    entry.backlog.watch(res)
    await entry.transport.handleRequest(req, res, body)
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.#entries.values()].map((e) => e.session?.close() ?? e.transport.close()))
  }

  #startSession(serverId: string, auth: AuthContext): Entry {
    const eventStore = new BoundedEventStore(
      this.#config.sessions.maxStoredEvents,
      this.#config.sessions.maxStoredEventBytes,
      this.#eventBudget,
    )
    const sessionId = randomUUID()
    const transport = new StreamableSessionTransport({
      sessionId,
      eventStore,
      retryInterval: this.#config.sessions.sseRetryMs,
      onInitialized: () => {
        this.#entries.set(sessionId, entry)
        entry.session = this.#factory.createSession(
          serverId,
          sessionId,
          {
            send: (message, relatedRequestId) => transport.send(message, relatedRequestId),
            hasStandaloneStream: () => entry.standaloneStreams > 0,
            releaseRequest: (id) => transport.closeSSEStream(id),
            backlog: entry.backlog,
            close: () => transport.close(),
          },
          auth,
        )
      },
    })
    const entry: Entry = {
      eventStore,
      standaloneStreams: 0,
      backlog: this.#factory.createBacklog(serverId),
      session: undefined,
      transport,
    }
    transport.onmessage = (message) => entry.session?.fromClient(message)
    transport.onclose = () => {
      eventStore.clear()
      this.#entries.delete(sessionId)
      void entry.session?.close()
    }
    return entry
  }
}
