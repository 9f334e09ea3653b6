import type { ServerResponse } from 'node:http'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'

/** How often an open event stream carries a comment, so that proxies and idle timeouts leave it up. */
export const SSE_KEEP_ALIVE_MS = 15_000

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
}

/** One server-sent event carrying a JSON-RPC message, with the id a client resumes after. */
export function messageEvent(message: JSONRPCMessage, eventId: string | undefined): string {
  const id = eventId === undefined ? '' : `id: ${eventId}\n`
  return `event: message\n${id}data: ${JSON.stringify(message)}\n\n`
}

/**
 * An HTTP response carrying server-sent events, written straight to the socket: each event is one write, and
 * the last one goes out with the end of the response, so that a request answered at once costs two writes
 * (headers with the priming event, then the answer with the end).
 */
export class SseResponse {
  readonly res: ServerResponse
  #keepAlive: NodeJS.Timeout | undefined
  #ended = false

  /** `first` (a priming event) goes out in one write with the headers. */
  constructor(
    res: ServerResponse,
    headers: Record<string, string>,
    first?: string,
    keepAliveMs = SSE_KEEP_ALIVE_MS,
  ) {
    this.res = res
    res.writeHead(200, { ...SSE_HEADERS, ...headers })
    // Headers go out now even with nothing to say yet: a client waits for them before it reads the stream.
    if (first === undefined) res.flushHeaders()
    else res.write(first)
    this.#keepAlive = setInterval(() => this.write(': keepalive\n\n'), keepAliveMs)
    this.#keepAlive.unref()
    res.once('close', () => this.#stop())
  }

  /** Whether the response is still open (the client has not gone and the stream was not ended). */
  get open(): boolean {
    return !this.#ended && !this.res.destroyed
  }

  write(text: string): void {
    if (this.open) this.res.write(text)
  }

  /** Ends the stream, with a last event if given. */
  end(text?: string): void {
    if (!this.open) return
    this.#stop()
    if (text === undefined) this.res.end()
    else this.res.end(text)
  }

  #stop(): void {
    this.#ended = true
    clearInterval(this.#keepAlive)
  }
}
