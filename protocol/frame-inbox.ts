import { NexusError } from './errors.ts'

/**
 * The receiving side of a framed connection, whatever carries it (a libp2p stream, a TCP socket): frames that
 * arrive before a consumer is attached are queued, so nothing is lost between the handshake and the relay
 * taking over; `nextFrame` serves the handshake; `end` fires once, with an error when the carrier failed.
 */
export class FrameInbox {
  readonly #queued: Uint8Array[] = []
  readonly #what: string
  #onFrame: ((frame: Uint8Array) => void) | undefined
  #onEnd: ((error?: Error) => void) | undefined
  #waiter: { resolve: (frame: Uint8Array) => void; reject: (err: Error) => void } | undefined
  #ended = false
  #endError: Error | undefined

  /** `what` names the carrier in errors: "stream", "connection". */
  constructor(what: string) {
    this.#what = what
  }

  get ended(): boolean {
    return this.#ended
  }

  /** Attaches the consumer of all further frames, first handing it any queued ones. */
  onFrame(handler: (frame: Uint8Array) => void): void {
    this.#onFrame = handler
    while (this.#queued.length > 0 && this.#onFrame === handler) handler(this.#queued.shift()!)
  }

  onEnd(handler: (error?: Error) => void): void {
    this.#onEnd = handler
    if (this.#ended) queueMicrotask(() => handler(this.#endError))
  }

  /** Detaches the consumer and the end handler: frames queue again (a stream passing to its next user). */
  detach(): void {
    this.#onFrame = undefined
    this.#onEnd = undefined
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

  /** Hands a frame that arrived to the waiting handshake, the consumer, or the queue. */
  deliver(frame: Uint8Array): void {
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter
      this.#waiter = undefined
      waiter.resolve(frame)
    } else if (this.#onFrame !== undefined) this.#onFrame(frame)
    else this.#queued.push(frame)
  }

  /** The carrier ended (with `error` when it failed); only the first call counts. */
  end(error?: Error): void {
    if (this.#ended) return
    this.#ended = true
    this.#endError = error
    this.#waiter?.reject(this.#endedError())
    this.#waiter = undefined
    this.#onEnd?.(error)
  }

  #endedError(): Error {
    const detail = this.#endError ? `: ${this.#endError.message}` : ''
    return new NexusError('PROTOCOL_VIOLATION', `${this.#what} ended${detail}`, { cause: this.#endError })
  }
}
