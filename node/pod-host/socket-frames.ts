import type { Socket } from 'node:net'
import { NexusError } from '../../protocol/errors.ts'
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder } from '../../protocol/framing.ts'
import { encodeJson } from '../../protocol/session-handshake.ts'

/**
 * The session frames of a libp2p stream (`protocol/framing.ts`), carried over a TCP socket between a node and
 * a pod host: same handshake, same messages, same back-pressure. Frames that arrive before a consumer is
 * attached are queued; `end` fires once, with an error when the socket failed rather than ended.
 */
export class SocketFrames {
  readonly socket: Socket
  readonly #decoder: FrameDecoder
  readonly #queued: Uint8Array[] = []
  #onFrame: ((frame: Uint8Array) => void) | undefined
  #onEnd: ((error?: Error) => void) | undefined
  #waiter: { resolve: (frame: Uint8Array) => void; reject: (err: Error) => void } | undefined
  #ended = false
  #endError: Error | undefined

  constructor(socket: Socket, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.socket = socket
    this.#decoder = new FrameDecoder(maxFrameBytes)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of this.#decoder.decode(chunk)) this.#deliver(frame)
      } catch (err) {
        socket.destroy(err as Error)
      }
    })
    socket.on('end', () => this.#end())
    socket.on('error', (err) => this.#end(err))
    socket.on('close', () => this.#end())
  }

  get ended(): boolean {
    return this.#ended
  }

  get writable(): boolean {
    return this.socket.writable && !this.socket.writableEnded
  }

  onFrame(handler: (frame: Uint8Array) => void): void {
    this.#onFrame = handler
    while (this.#queued.length > 0 && this.#onFrame === handler) handler(this.#queued.shift()!)
  }

  onEnd(handler: (error?: Error) => void): void {
    this.#onEnd = handler
    if (this.#ended) queueMicrotask(() => handler(this.#endError))
  }

  /** The next frame, for the handshake before a consumer is attached. */
  nextFrame(timeoutMs: number): Promise<Uint8Array> {
    const queued = this.#queued.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    if (this.#ended)
      return Promise.reject(this.#endError ?? new NexusError('PROTOCOL_VIOLATION', 'the connection ended'))
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

  #deliver(frame: Uint8Array): void {
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter
      this.#waiter = undefined
      waiter.resolve(frame)
    } else if (this.#onFrame !== undefined) this.#onFrame(frame)
    else this.#queued.push(frame)
  }

  #end(error?: Error): void {
    if (this.#ended) return
    this.#ended = true
    this.#endError = error
    this.#waiter?.reject(error ?? new NexusError('PROTOCOL_VIOLATION', 'the connection ended'))
    this.#waiter = undefined
    this.#onEnd?.(error)
  }
}
