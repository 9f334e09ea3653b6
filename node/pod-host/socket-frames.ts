import type { Socket } from 'node:net'
import { FrameInbox } from '../../protocol/frame-inbox.ts'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from '../../protocol/framing.ts'
import { encodeJson } from '../../protocol/session-handshake.ts'

/**
 * The session frames of a libp2p stream (`protocol/framing.ts`), carried over a TCP socket between a node and
 * a pod host: same handshake, same messages, same back-pressure (arriving frames go through a `FrameInbox`).
 */
export class SocketFrames {
  readonly socket: Socket
  readonly #decoder: FrameDecoder
  readonly #inbox = new FrameInbox('connection')

  constructor(socket: Socket, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.socket = socket
    this.#decoder = new FrameDecoder(maxFrameBytes)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of this.#decoder.decode(chunk)) this.#inbox.deliver(frame)
      } catch (err) {
        socket.destroy(err as Error)
      }
    })
    socket.on('end', () => this.#inbox.end())
    socket.on('error', (err) => this.#inbox.end(err))
    socket.on('close', () => this.#inbox.end())
  }

  get ended(): boolean {
    return this.#inbox.ended
  }

  get writable(): boolean {
    return this.socket.writable && !this.socket.writableEnded
  }

  onFrame(handler: (frame: Uint8Array) => void): void {
    this.#inbox.onFrame(handler)
  }

  onEnd(handler: (error?: Error) => void): void {
    this.#inbox.onEnd(handler)
  }

  /** The next frame, for the handshake before a consumer is attached. */
  nextFrame(timeoutMs: number): Promise<Uint8Array> {
    return this.#inbox.nextFrame(timeoutMs)
  }

  /** Sends one frame; false when the caller should wait for `drained()`. */
  send(payload: Uint8Array): boolean {
    if (!this.writable) return false
    return this.socket.write(encodeFrame(payload))
  }

  sendJson(value: unknown): boolean {
    return this.send(encodeJson(value))
  }

  /** Resolves when the socket takes more, or never will (it ended). Never rejects. */
  drained(): Promise<void> {
    if (!this.writable || !this.socket.writableNeedDrain) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done)
        this.socket.off('close', done)
        resolve()
      }
      this.socket.on('drain', done)
      this.socket.on('close', done)
    })
  }

  pause(): void {
    this.socket.pause()
  }

  resume(): void {
    this.socket.resume()
  }

  /** Ends the connection after what was sent is flushed; destroys it if the remote does not finish in time. */
  close(timeoutMs = 5_000): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), timeoutMs)
      this.socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      this.socket.end()
    })
  }
}
