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
 * How long a request's event stream keeps its headers (and priming event) back, waiting for the answer to go
 * out with them. A relayed call is usually answered within a few milliseconds: headers, priming event, answer
 * and the response's end then leave in one write, and the agent is woken once, not twice. A call that takes
 * longer gets its headers and priming event when this runs out, and a progress notification or any other
 * message sends them at once. The price is that a connection lost within this time cannot be resumed (the
 * client has no event id yet), as with a server that sends no priming event.
 */
export const HOLD_HEADERS_MS = 50

/**
 * An HTTP response carrying server-sent events, written straight to the socket: each event is one write, and
 * the last one goes out with the end of the response. With `holdMs`, the headers and `first` wait for the first
 * event (or `holdMs`), so that a request answered at once costs one write.
 */
export class SseResponse {
  readonly res: ServerResponse
  #keepAlive: NodeJS.Timeout | undefined
  #ended = false
  /** What waits to go out with the headers (the priming event, or nothing), while they are held. */
  #held: string | undefined
  #holdTimer: NodeJS.Timeout | undefined

  /** `first` (a priming event) goes out in one write with the headers. */
  constructor(
    res: ServerResponse,
    headers: Record<string, string>,
    options: { first?: string; holdMs?: number } = {},
    keepAliveMs = SSE_KEEP_ALIVE_MS,
  ) {
    this.res = res
    res.writeHead(200, { ...SSE_HEADERS, ...headers })
    if (options.holdMs !== undefined && options.holdMs > 0) {
      this.#held = options.first ?? ''
      this.#holdTimer = setTimeout(() => this.write(''), options.holdMs)
      this.#holdTimer.unref()
    } else if (options.first === undefined) {
      // Headers go out now even with nothing to say yet: a client waits for them before it reads the stream.
      res.flushHeaders()
    } else res.write(options.first)
    this.#keepAlive = setInterval(() => this.write(': keepalive\n\n'), keepAliveMs)
    this.#keepAlive.unref()
    res.once('close', () => this.#stop())
  }

  /** Whether the response is still open (the client has not gone and the stream was not ended). */
  get open(): boolean {
    return !this.#ended && !this.res.destroyed
  }

  write(text: string): void {
    if (!this.open) return
    const out = this.#release() + text
    if (out === '') this.res.flushHeaders()
    else this.res.write(out)
  }

  /** Ends the stream, with a last event if given. */
  end(text?: string): void {
    if (!this.open) return
    const out = this.#release() + (text ?? '')
    this.#stop()
    if (out === '') this.res.end()
    else this.res.end(out)
  }

  /** What was held back to go out with the headers, now to be written ('' when nothing is held). */
  #release(): string {
    const held = this.#held ?? ''
    this.#held = undefined
    clearTimeout(this.#holdTimer)
    return held
  }

  #stop(): void {
    this.#ended = true
    this.#held = undefined
    clearTimeout(this.#holdTimer)
    clearInterval(this.#keepAlive)
  }
}
