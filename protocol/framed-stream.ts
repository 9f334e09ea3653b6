import type { Stream } from '@libp2p/interface'
import { errorMessage, NexusError } from './errors.ts'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from './framing.ts'
import { encodeJson } from './session-handshake.ts'

export interface FramedStreamOptions {
  maxFrameBytes?: number
}

export type FrameHandler = (frame: Uint8Array) => void
/** `error` is set when the stream ended abnormally (reset, connection lost, protocol error). */
export type EndHandler = (error?: Error) => void

/**
 * Length-prefixed frames over a libp2p stream, one JSON document each. Frames that arrive before a consumer
 * is attached are queued, so nothing is lost between the handshake and the relay taking over.
 * `end` fires once: when the remote finished writing, or the stream closed or failed.
 */
export class FramedStream {
  readonly stream: Stream
  readonly #decoder: FrameDecoder
  readonly #queued: Uint8Array[] = []
  #onFrame: FrameHandler | undefined
  #onEnd: EndHandler | undefined
  #waiter: { resolve: (frame: Uint8Array) => void; reject: (err: Error) => void } | undefined
  #ended = false
  #endError: Error | undefined

  constructor(stream: Stream, options: FramedStreamOptions = {}) {
    this.stream = stream
    this.#decoder = new FrameDecoder(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES)
    stream.addEventListener('message', (evt) => {
      try {
        for (const frame of this.#decoder.decode(evt.data)) this.#deliver(frame)
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    stream.addEventListener('remoteCloseWrite', () => this.#end())
    stream.addEventListener('close', (evt) => this.#end(evt.error))
  }

  get ended(): boolean {
    return this.#ended
  }

  /** Attaches the consumer of all further frames, first handing it any queued ones. */
  onFrame(handler: FrameHandler): void {
    this.#onFrame = handler
    while (this.#queued.length > 0 && this.#onFrame === handler) handler(this.#queued.shift()!)
  }

  onEnd(handler: EndHandler): void {
    this.#onEnd = handler
    if (this.#ended) queueMicrotask(() => handler(this.#endError))
  }

  /** Resolves with the next frame; used for the handshake, before a frame handler is attached. */
  nextFrame(timeoutMs: number): Promise<Uint8Array> {
    const queued = this.#queued.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.#ended) return Promise.reject(this.#endedError())
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined
        reject(new NexusError('HANDSHAKE_TIMEOUT', `no frame within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiter = {
        resolve: (frame) => {
          clearTimeout(timer)
          resolve(frame)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      }
    })
  }

  /** Sends one frame. Returns false when the caller should wait for `drain()` before sending more. */
  send(payload: Uint8Array): boolean {
    if (this.stream.writeStatus !== 'writable') return false
    return this.stream.send(encodeFrame(payload))
  }

  sendJson(value: unknown): boolean {
    return this.send(encodeJson(value))
  }

  get writable(): boolean {
    return this.stream.writeStatus === 'writable'
  }

  drain(): Promise<void> {
    return this.stream.onDrain()
  }

  /** Stops delivering frames until `resume()`, pushing back on the remote writer. No-op once reading ended. */
  pause(): void {
    if (this.#readable()) this.stream.pause()
  }

  resume(): void {
    if (this.#readable()) this.stream.resume()
  }

  /** libp2p throws on pausing or resuming a stream whose reading is closing or closed. */
  #readable(): boolean {
    return this.stream.readStatus === 'readable' || this.stream.readStatus === 'paused'
  }

  /** Ends the stream gracefully (buffered frames are flushed); falls back to a reset if the remote stalls. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.stream.status !== 'open') return
    try {
      await this.stream.close({ signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      this.stream.abort(new Error(`graceful close failed: ${errorMessage(err)}`))
    }
  }

  abort(err: Error): void {
    this.stream.abort(err)
  }

  #deliver(frame: Uint8Array): void {
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter
      this.#waiter = undefined
      waiter.resolve(frame)
    } else if (this.#onFrame !== undefined) {
      this.#onFrame(frame)
    } else {
      this.#queued.push(frame)
    }
  }

  #end(error?: Error): void {
    if (this.#ended) return
    this.#ended = true
    this.#endError = error
    this.#waiter?.reject(this.#endedError())
    this.#waiter = undefined
    this.#onEnd?.(error)
  }

  #endedError(): Error {
    return new NexusError(
      'PROTOCOL_VIOLATION',
      `stream ended${this.#endError ? `: ${this.#endError.message}` : ''}`,
      {
        cause: this.#endError,
      },
    )
  }
}
