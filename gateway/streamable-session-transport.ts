import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  DEFAULT_NEGOTIATED_PROTOCOL_VERSION,
  type JSONRPCMessage,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js'
import type { BoundedEventStore } from './event-store.ts'
import { sendHttpError } from './http-responses.ts'
import { isJsonRpcMessage, isRequest, isResponse } from './jsonrpc.ts'
import { HOLD_HEADERS_MS, messageEvent, SseResponse } from './sse-response.ts'

/** The most messages one POST may batch (as the SDK's transport allows). */
export const MAX_BATCH_SIZE = 100
/** The stream id of the session's GET stream, for messages that belong to no request. */
const STANDALONE = '_GET_stream'
/** The first revision whose clients read an event with empty data: priming events go to these only. */
const PRIMING_SINCE = '2025-11-25'
const MESSAGE_KEYS = new Set(['jsonrpc', 'id', 'method', 'params', 'result', 'error'])

export interface StreamableSessionTransportOptions {
  sessionId: string
  eventStore: BoundedEventStore
  /** The `retry` a priming event tells the client to wait before it reconnects (ms). */
  retryInterval?: number
  /** The initialize request was accepted: the session starts now (before the request is delivered). */
  onInitialized: () => void
}

/**
 * The server side of one legacy-era session (spec 2024-11-05 to 2025-11-25) on streamable HTTP, written on
 * `node:http` for the gateway's relay path. A POST's requests are answered on an event stream of their own,
 * which ends once each has its response; what the server sends about a request (progress, sampling) travels on
 * that request's stream, and the rest on the GET stream. Every event is stored first, so a client whose stream
 * dropped (or was closed for polling) resumes with Last-Event-ID.
 *
 * It replaces the SDK's transport, which converts every request and response to web streams and validates each
 * message against the protocol's schemas: on the relay path that was a fifth of the gateway's CPU per call. What
 * the gateway relays is checked here only as far as JSON-RPC goes; the node and the server check the rest.
 */
export class StreamableSessionTransport {
  readonly sessionId: string
  onmessage?: (message: JSONRPCMessage) => void
  onclose?: () => void
  readonly #options: StreamableSessionTransportOptions
  readonly #store: BoundedEventStore
  /** The open event streams, by stream id. */
  readonly #streams = new Map<string, SseResponse>()
  /** An unanswered request → the stream its response goes on. */
  readonly #streamOf = new Map<RequestId, string>()
  /** A request stream → its requests not answered yet. */
  readonly #unanswered = new Map<string, Set<RequestId>>()
  /** Streams whose client holds an event id, and so can resume after losing them. */
  readonly #resumable = new Set<string>()
  #initialized = false
  #closed = false

  constructor(options: StreamableSessionTransportOptions) {
    this.sessionId = options.sessionId
    this.#options = options
    this.#store = options.eventStore
  }

  /**
   * A request the gateway's routes let through: POST, GET or DELETE, with a legacy `MCP-Protocol-Version` if any
   * (the endpoint sends the others to the modern era's handling).
   */
  async handleRequest(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    if (this.#closed) return sendHttpError(res, 404, -32001, 'Session not found')
    if (req.method === 'GET') return this.#get(req, res)
    if (req.method !== 'DELETE') return this.#post(req, res, body)
    res.writeHead(200).end()
    return this.close()
  }

  async #post(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const accept = req.headers.accept ?? ''
    if (!accept.includes('application/json') || !accept.includes('text/event-stream'))
      return sendHttpError(
        res,
        406,
        -32000,
        'Not Acceptable: Client must accept both application/json and text/event-stream',
      )
    if (!isJsonContentType(req.headers['content-type']))
      return sendHttpError(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json')
    if (Array.isArray(body) && body.length > MAX_BATCH_SIZE)
      return sendHttpError(
        res,
        400,
        -32600,
        `Invalid Request: Batch must not exceed ${MAX_BATCH_SIZE} messages`,
      )
    const messages = Array.isArray(body) ? body : [body]
    if (messages.length === 0 || !messages.every(isClientMessage))
      return sendHttpError(res, 400, -32700, 'Parse error: Invalid JSON-RPC message')
    const initialize = messages.find(isInitializeRequest)
    if (initialize !== undefined) {
      // The endpoint starts a session for an initialize sent alone; one sent again within it is refused here.
      if (this.#initialized)
        return sendHttpError(res, 400, -32600, 'Invalid Request: Server already initialized')
      this.#initialized = true
      this.#options.onInitialized()
    }
    const requests = messages.filter(isRequest)
    if (requests.length === 0) {
      for (const message of messages) this.onmessage?.(message)
      res.writeHead(202).end()
      return
    }
    const streamId = randomUUID()
    const version =
      initialize !== undefined
        ? String(initialize.params?.protocolVersion ?? DEFAULT_NEGOTIATED_PROTOCOL_VERSION)
        : String(req.headers['mcp-protocol-version'] ?? DEFAULT_NEGOTIATED_PROTOCOL_VERSION)
    let priming: string | undefined
    if (version >= PRIMING_SINCE) {
      const id = await this.#store.storeEvent(streamId, {} as JSONRPCMessage)
      const retry = this.#options.retryInterval
      priming = retry === undefined ? `id: ${id}\ndata: \n\n` : `id: ${id}\nretry: ${retry}\ndata: \n\n`
      this.#resumable.add(streamId)
    }
    this.#open(
      streamId,
      new SseResponse(res, { 'mcp-session-id': this.sessionId }, { first: priming, holdMs: HOLD_HEADERS_MS }),
    )
    this.#unanswered.set(streamId, new Set(requests.map((r) => r.id)))
    for (const request of requests) this.#streamOf.set(request.id, streamId)
    for (const message of messages) this.onmessage?.(message)
  }

  async #get(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!(req.headers.accept ?? '').includes('text/event-stream'))
      return sendHttpError(res, 406, -32000, 'Not Acceptable: Client must accept text/event-stream')
    const lastEventId = req.headers['last-event-id']
    if (typeof lastEventId === 'string') return this.#resume(res, lastEventId)
    if (this.#streams.has(STANDALONE))
      return sendHttpError(res, 409, -32000, 'Conflict: Only one SSE stream is allowed per session')
    this.#open(STANDALONE, new SseResponse(res, { 'mcp-session-id': this.sessionId }))
  }

  /**
   * A client back after losing a stream: what it missed, then the stream goes on where it was. A stream the
   * gateway still holds is taken over: the client resumes because its connection broke, which the gateway may
   * not have noticed yet (the SDK's transport answered 409 there, and the client's resume failed).
   */
  async #resume(res: ServerResponse, lastEventId: string): Promise<void> {
    const problem = this.#store.resumeProblem(lastEventId)
    if (problem !== undefined) return sendHttpError(res, 400, -32000, `Bad Request: ${problem}`)
    const streamId = (await this.#store.getStreamIdForEventId(lastEventId))!
    this.#streams.get(streamId)?.end()
    this.#streams.delete(streamId)
    const stream = new SseResponse(res, { 'mcp-session-id': this.sessionId })
    try {
      await this.#store.replayEventsAfter(lastEventId, {
        send: async (eventId, message) => stream.write(messageEvent(message, eventId)),
      })
    } catch {
      stream.end()
      return
    }
    if (this.#closed) return stream.end()
    // A request stream whose requests were all answered meanwhile has nothing more coming: the replay was all.
    if (streamId !== STANDALONE && !this.#unanswered.has(streamId)) return stream.end()
    this.#resumable.add(streamId)
    this.#open(streamId, stream)
  }

  #open(streamId: string, stream: SseResponse): void {
    this.#streams.get(streamId)?.end()
    this.#streams.set(streamId, stream)
    stream.res.once('close', () => {
      if (this.#streams.get(streamId) === stream) this.#streams.delete(streamId)
    })
  }

  /**
   * A message from the server: a response goes on its request's stream (ending it when the stream's last
   * request is answered), what names a related request goes on that one's, the rest on the GET stream. Each is
   * stored first, so that a client without the stream now gets it on resuming.
   */
  async send(message: JSONRPCMessage, relatedRequestId?: RequestId): Promise<void> {
    const response = isResponse(message)
    const requestId = response ? message.id : relatedRequestId
    if (requestId === undefined) {
      if (response) throw new Error('a response must answer a request')
      const eventId = await this.#store.storeEvent(STANDALONE, message)
      this.#streams.get(STANDALONE)?.write(messageEvent(message, eventId))
      return
    }
    const streamId = this.#streamOf.get(requestId)
    if (streamId === undefined)
      throw new Error(`No connection established for request ID: ${String(requestId)}`)
    const eventId = await this.#store.storeEvent(streamId, message)
    const event = messageEvent(message, eventId)
    const stream = this.#streams.get(streamId)
    if (!response) {
      stream?.write(event)
      if (stream !== undefined) this.#resumable.add(streamId)
      return
    }
    this.#streamOf.delete(requestId)
    const unanswered = this.#unanswered.get(streamId)
    unanswered?.delete(requestId)
    if (unanswered !== undefined && unanswered.size > 0) {
      stream?.write(event)
      return
    }
    this.#unanswered.delete(streamId)
    if (stream !== undefined) {
      this.#streams.delete(streamId)
      this.#resumable.delete(streamId)
      stream.end(event)
      return
    }
    // The client lost the stream: with an event id it resumes and gets the stored response; without, it is lost.
    if (!this.#resumable.delete(streamId) && !this.#closed)
      throw new Error(`No connection established for request ID: ${String(requestId)}`)
  }

  /** Ends the stream a request's answer would travel on, so that the client reconnects (polling) for it. */
  closeSSEStream(requestId: RequestId): void {
    const streamId = this.#streamOf.get(requestId)
    if (streamId === undefined) return
    this.#streams.get(streamId)?.end()
    this.#streams.delete(streamId)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const stream of this.#streams.values()) stream.end()
    this.#streams.clear()
    this.#streamOf.clear()
    this.#unanswered.clear()
    this.#resumable.clear()
    this.onclose?.()
  }
}

/** `Content-Type` is JSON: the media type itself, whatever parameters follow. */
function isJsonContentType(header: string | undefined): boolean {
  return (header ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json'
}

/**
 * A JSON-RPC message as MCP allows an agent to send: its shape (`isJsonRpcMessage`), params that are an object,
 * and no member JSON-RPC does not define.
 */
function isClientMessage(value: unknown): value is JSONRPCMessage {
  if (!isJsonRpcMessage(value)) return false
  for (const key of Object.keys(value)) if (!MESSAGE_KEYS.has(key)) return false
  const params = (value as { params?: unknown }).params
  if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params)))
    return false
  const id = (value as { id?: unknown }).id
  return typeof id !== 'number' || Number.isInteger(id)
}

function isInitializeRequest(
  message: JSONRPCMessage,
): message is JSONRPCMessage & { id: RequestId; params?: { protocolVersion?: unknown } } {
  return isRequest(message) && message.method === 'initialize'
}
