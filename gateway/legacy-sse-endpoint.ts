import type { IncomingMessage, ServerResponse } from 'node:http'
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js'
import { type JSONRPCMessage, JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import type { AuthContext } from '../protocol/session-handshake.ts'
import type { GatewaySession } from './gateway-session.ts'
import { sendHttpError } from './http-responses.ts'
import { type BodyLimits, readJsonBodyOrReply } from './request-body.ts'
import type { SessionFactory } from './session-factory.ts'

export const LEGACY_MESSAGES_PATH = '/messages'

/**
 * A message an HTTP+SSE client posts: JSON only, one JSON-RPC message, answered `202 Accepted` once handed to
 * its session (the answer travels on the event stream).
 */
export async function readSseMessage(
  req: IncomingMessage,
  res: ServerResponse,
  limits: BodyLimits,
  deliver: (message: JSONRPCMessage) => Promise<void>,
): Promise<void> {
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (contentType !== 'application/json')
    return sendHttpError(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json')
  const body = await readJsonBodyOrReply(req, res, limits)
  if (body === undefined) return
  const message = JSONRPCMessageSchema.safeParse(body.value)
  if (!message.success)
    return sendHttpError(res, 400, -32600, 'Invalid Request: the body is not a JSON-RPC 2.0 message')
  await deliver(message.data)
  res.writeHead(202, { 'content-type': 'text/plain' }).end('Accepted')
}

/**
 * The HTTP+SSE transport of spec 2024-11-05, still used by many clients: `GET /sse/<server-id>` holds the
 * event stream for the whole session, and the client posts its messages to the endpoint it names.
 */
export class LegacySseEndpoint {
  readonly #factory: SessionFactory
  readonly #logger: Logger
  readonly #transports = new Map<string, { transport: SSEServerTransport; session: GatewaySession }>()

  constructor(factory: SessionFactory, logger: Logger) {
    this.#factory = factory
    this.#logger = logger
  }

  async open(res: ServerResponse, serverId: string, auth: AuthContext): Promise<void> {
    if (!(await this.#factory.isServed(serverId, auth.principal))) {
      return sendHttpError(res, 404, -32001, `Unknown server ${serverId}: no node in the network hosts it`)
    }
    const transport = new SSEServerTransport(LEGACY_MESSAGES_PATH, res)
    // This transport cannot resume: a stream cut for stalling ends the session.
    const backlog = this.#factory.createBacklog(serverId)
    backlog.watch(res)
    const session = this.#factory.createSession(
      serverId,
      transport.sessionId,
      {
        send: (message) => transport.send(message),
        hasStandaloneStream: () => true,
        releaseRequest: () => {},
        backlog,
        close: () => transport.close(),
      },
      auth,
    )
    this.#transports.set(transport.sessionId, { transport, session })
    transport.onmessage = (message) => session.fromClient(message)
    transport.onerror = (err) => this.#logger.debug({ err }, 'SSE transport error')
    transport.onclose = () => {
      this.#transports.delete(transport.sessionId)
      void session.close()
    }
    await transport.start()
  }

  /** The server of a session, for the caller's scope check; undefined when there is no such session. */
  serverOf(sessionId: string | null): string | undefined {
    return sessionId === null ? undefined : this.#transports.get(sessionId)?.session.serverId
  }

  async post(
    req: IncomingMessage,
    res: ServerResponse,
    sessionId: string | null,
    auth: AuthContext,
  ): Promise<void> {
    const entry = sessionId === null ? undefined : this.#transports.get(sessionId)
    // Another principal's session is as good as unknown: its id must not be usable by someone else.
    if (entry === undefined || entry.session.auth.principal !== auth.principal)
      return sendHttpError(res, 404, -32001, 'Session not found: open a new one with GET /sse/<server-id>')
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    if (contentType !== 'application/json')
      return sendHttpError(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json')
    const body = await readJsonBodyOrReply(req, res, this.#factory.bodyLimits)
    if (body === undefined) return
    // Checked here rather than by the SDK's handlePostMessage, whose refusals echo the body back as plain text.
    const message = JSONRPCMessageSchema.safeParse(body.value)
    if (!message.success)
      return sendHttpError(res, 400, -32600, 'Invalid Request: the body is not a JSON-RPC 2.0 message')
    entry.session.lastActivity = Date.now()
    await entry.transport.handleMessage(message.data)
    res.writeHead(202, { 'content-type': 'text/plain' }).end('Accepted')
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.#transports.values()].map((e) => e.session.close()))
  }
}
