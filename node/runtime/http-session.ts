import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import { Backoff } from '../../protocol/backoff.ts'
import { decodeJsonBounded } from '../../protocol/bounded-json.ts'
import { errorMessage, type NexusErrorCode } from '../../protocol/errors.ts'
import { errorResponse, NexusRpcCode } from '../../protocol/rpc-codes.ts'
import { encodeJson } from '../../protocol/session-handshake.ts'
import { exchange, type HttpEndpoint, isEventStream, readBody, readEvents } from './http-endpoint.ts'
import type { UpstreamSession } from './upstream.ts'

type Json = Record<string, unknown>

/** How often a broken SSE stream is resumed (`Last-Event-ID`) before the requests it carried are failed. */
const MAX_RESUMES = 3

/**
 * One MCP session with a streamable-HTTP server (legacy era): the client side of the transport, written for the
 * relay. Messages go out as they came (bytes are parsed once, to find ids and the session's headers, never
 * validated against schemas); answers come back as JSON or SSE and are handed on as bytes. Each POST waits
 * only for the previous one's response headers, so a notification never overtakes the request before it, and
 * calls of one session still overlap. Pausing the output pauses the server's response streams themselves.
 */
export class HttpSession implements UpstreamSession {
  onMessage: ((message: Uint8Array) => void) | undefined
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  readonly #endpoint: HttpEndpoint
  readonly #logger: Logger
  readonly #release: () => void
  readonly #open = new Set<{ abort: () => void; response?: IncomingMessage }>()
  #sessionId: string | undefined
  #protocolVersion: string | undefined
  #sending: Promise<void> = Promise.resolve()
  #paused = false
  #closed = false
  #standalone = false

  constructor(endpoint: HttpEndpoint, logger: Logger, release: () => void) {
    this.#endpoint = endpoint
    this.#logger = logger
    this.#release = release
  }

  send(bytes: Uint8Array): boolean {
    const parsed = decodeJsonBounded(bytes)
    const message = (parsed.ok ? parsed.value : undefined) as Json | undefined
    const headersSent = this.#sending.then(() => this.#post(bytes, message))
    this.#sending = headersSent.catch((err) =>
      this.fail('UPSTREAM_UNAVAILABLE', `the server is unreachable: ${errorMessage(err)}`),
    )
    return true
  }

  drained(): Promise<void> {
    return this.#sending
  }

  setOutputPaused(paused: boolean): void {
    this.#paused = paused
    for (const exchange of this.#open)
      if (paused) exchange.response?.pause()
      else exchange.response?.resume()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#release()
    for (const exchange of this.#open) exchange.abort()
    this.#open.clear()
    if (this.#sessionId !== undefined)
      await this.#exchange('DELETE', {}, undefined)
        .then(({ response }) => response.resume())
        .catch(() => {})
  }

  fail(code: NexusErrorCode, reason: string): void {
    if (this.#closed) return
    this.onEnd?.(code, reason)
    void this.close()
  }

  /** Posts one message; resolves once the server's response headers arrived (its body is read on its own). */
  async #post(bytes: Uint8Array, message: Json | undefined): Promise<void> {
    if (this.#closed) return
    const { response, exchange } = await this.#exchange(
      'POST',
      { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      bytes,
    )
    const requestId = typeof message?.method === 'string' ? message.id : undefined
    const status = response.statusCode ?? 0
    if (message?.method === 'initialize' && status === 200) {
      const session = response.headers['mcp-session-id']
      if (typeof session === 'string') this.#sessionId = session
    }
    if (status === 404 && this.#sessionId !== undefined) {
      response.resume()
      return this.fail('UPSTREAM_EXITED', 'the server no longer knows the session')
    }
    if (status < 200 || status >= 300) return this.#refused(response, requestId, exchange)
    if (status === 202 || requestId === undefined) {
      this.#done(exchange)
      return void response.resume()
    }
    void this.#readAnswer(response, exchange, requestId)
  }

  /** The server's answer to a request: JSON, or an SSE stream resumed where it broke, if it breaks. */
  async #readAnswer(response: IncomingMessage, exchange: Exchange, requestId: unknown): Promise<void> {
    let answered = false
    const deliver = (message: Json) => {
      if (message.id === requestId && ('result' in message || 'error' in message)) answered = true
      this.#fromServer(message)
    }
    try {
      if (!isEventStream(response)) {
        const body = await readBody(response)
        const parsed = decodeJsonBounded(body)
        if (!parsed.ok) throw new Error(`the server answered with invalid JSON: ${parsed.message}`)
        for (const message of [parsed.value].flat()) deliver(message as Json)
        return
      }
      let lastEventId = await readEvents(response, deliver)
      for (let resumes = 0; !answered && lastEventId !== undefined && resumes < MAX_RESUMES; resumes++) {
        if (this.#closed) return
        const resumed = await this.#exchange(
          'GET',
          { accept: 'text/event-stream', 'last-event-id': lastEventId },
          undefined,
        )
        if (resumed.response.statusCode !== 200) {
          resumed.response.resume()
          this.#done(resumed.exchange)
          break
        }
        lastEventId = (await readEvents(resumed.response, deliver)) ?? lastEventId
        this.#done(resumed.exchange)
      }
      if (!answered) throw new Error('the server ended its stream without an answer')
    } catch (err) {
      if (!answered && !this.#closed)
        this.#emit(
          errorResponse(
            requestId as never,
            NexusRpcCode.NodeFailed,
            `Server unavailable: ${errorMessage(err)}`,
          ),
        )
    } finally {
      this.#done(exchange)
    }
  }

  #fromServer(message: Json): void {
    const result = message.result as { protocolVersion?: unknown; serverInfo?: unknown } | undefined
    if (typeof result?.protocolVersion === 'string' && result.serverInfo !== undefined) {
      this.#protocolVersion = result.protocolVersion
      this.#openStandaloneStream()
    }
    this.#emit(message)
  }

  #emit(message: unknown): void {
    if (!this.#closed) this.onMessage?.(encodeJson(message))
  }

  /**
   * The server's own stream (GET) for what it sends outside any request: list changes, its requests to the
   * client. A server without one answers 405; a stream that ends is opened again, with back-off.
   */
  #openStandaloneStream(): void {
    if (this.#standalone || this.#sessionId === undefined) return
    this.#standalone = true
    const backoff = new Backoff(100, 5_000)
    let lastEventId: string | undefined
    const listen = async () => {
      while (!this.#closed) {
        try {
          const headers: Record<string, string> = { accept: 'text/event-stream' }
          if (lastEventId !== undefined) headers['last-event-id'] = lastEventId
          const { response, exchange } = await this.#exchange('GET', headers, undefined)
          if (response.statusCode !== 200) {
            response.resume()
            this.#done(exchange)
            return
          }
          backoff.succeed()
          lastEventId = (await readEvents(response, (m) => this.#emit(m))) ?? lastEventId
          this.#done(exchange)
        } catch (err) {
          this.#logger.debug({ err: errorMessage(err) }, 'the server stream failed; opening it again')
        }
        if (this.#closed) return
        await new Promise((resolve) => setTimeout(resolve, backoff.fail()).unref())
      }
    }
    void listen()
  }

  /** A refused POST: the server's JSON-RPC error when it gave one, else one naming the HTTP status. */
  async #refused(response: IncomingMessage, requestId: unknown, exchange: Exchange): Promise<void> {
    const body = await readBody(response).catch(() => Buffer.alloc(0))
    this.#done(exchange)
    if (requestId === undefined) return
    const parsed = decodeJsonBounded(body)
    const error = parsed.ok ? (parsed.value as Json | undefined)?.error : undefined
    this.#emit(
      error !== undefined
        ? { jsonrpc: '2.0', id: requestId, error }
        : errorResponse(
            requestId as never,
            NexusRpcCode.NodeFailed,
            `Server unavailable: HTTP ${response.statusCode}: ${body.toString('utf8').slice(0, 200)}`,
          ),
    )
  }

  async #exchange(
    method: 'POST' | 'GET' | 'DELETE',
    headers: Record<string, string>,
    body: Uint8Array | undefined,
  ): Promise<{ response: IncomingMessage; exchange: Exchange }> {
    const all: Record<string, string> = { ...headers }
    if (this.#sessionId !== undefined) all['mcp-session-id'] = this.#sessionId
    if (this.#protocolVersion !== undefined) all['mcp-protocol-version'] = this.#protocolVersion
    const sent = exchange(this.#endpoint, method, all, body)
    const open: Exchange = { abort: sent.abort }
    this.#open.add(open)
    try {
      const response = await sent.response
      open.response = response
      if (this.#paused) response.pause()
      return { response, exchange: open }
    } catch (err) {
      this.#open.delete(open)
      throw err
    }
  }

  #done(exchange: Exchange): void {
    this.#open.delete(exchange)
  }
}

interface Exchange {
  abort: () => void
  response?: IncomingMessage
}
