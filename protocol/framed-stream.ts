import type { Stream } from '@libp2p/interface'
import { errorMessage } from './errors.ts'
import { FrameInbox } from './frame-inbox.ts'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from './framing.ts'
import { encodeJson } from './session-handshake.ts'

export interface FramedStreamOptions {
  maxFrameBytes?: number
}

export type FrameHandler = (frame: Uint8Array) => void
/** `error` is set when the stream ended abnormally (reset, connection lost, protocol error). */
export type EndHandler = (error?: Error) => void

/**
 * Length-prefixed frames over a libp2p stream, one JSON document each (see `FrameInbox` for how arriving
 * frames are handed out). `end` fires once: when the remote finished writing, or the stream closed or failed.
 */
export class FramedStream {
  readonly stream: Stream
  readonly #decoder: FrameDecoder
  readonly #inbox = new FrameInbox('stream')

  constructor(stream: Stream, options: FramedStreamOptions = {}) {
    this.stream = stream
    this.#decoder = new FrameDecoder(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES)
    stream.addEventListener('message', (evt) => {
      try {
        for (const frame of this.#decoder.decode(evt.data)) this.#inbox.deliver(frame)
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    stream.addEventListener('remoteCloseWrite', () => this.#inbox.end())
    stream.addEventListener('close', (evt) => this.#inbox.end(evt.error))
  }

  get ended(): boolean {
    return this.#inbox.ended
  }

  /** Attaches the consumer of all further frames, first handing it any queued ones. */
  onFrame(handler: FrameHandler): void {
    this.#inbox.onFrame(handler)
  }

  onEnd(handler: EndHandler): void {
    this.#inbox.onEnd(handler)
  }

  /** Detaches the frame and end handlers: frames queue again until the stream's next user attaches. */
  detach(): void {
    this.#inbox.detach()
  }

  /** Resolves with the next frame; used for the handshake, before a frame handler is attached. */
  nextFrame(timeoutMs: number): Promise<Uint8Array> {
    return this.#inbox.nextFrame(timeoutMs)
  }

  /** Sends one frame. Returns false when the caller should wait for `drain()` before sending more. */
  send(payload: Uint8Array): boolean {
    if (!this.writable) return false
    return this.stream.send(encodeFrame(payload))
  }

  sendJson(value: unknown): boolean {
    return this.send(encodeJson(value))
  }

  /**
   * Sends several JSON frames in one write: the same frames on the wire as one `sendJson` each, but one yamux
   * frame, one encryption and one socket write, and the remote reads them together. Each write wakes the remote
   * peer, the costliest step of a relayed call in a virtual machine (a modern request's open frame and the request
   * behind it went out as two).
   */
  sendJsonFrames(values: unknown[]): boolean {
    if (!this.writable) return false
    return this.stream.send(Buffer.concat(values.map((value) => encodeFrame(encodeJson(value)))))
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
}
