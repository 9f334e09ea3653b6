import type { NexusErrorCode } from '../../../protocol/errors.ts'
import type { UpstreamSession } from '../upstream.ts'
import type { SharedProcess, SharedSessionPort } from './shared-process.ts'

/** Output held back for a paused session beyond which its process's output is paused too. */
export const HELD_BYTES_HIGH_WATER = 1024 * 1024

/**
 * One session on a shared stdio process (`SharedProcess`). While its agent does not read (paused), what the
 * server sends it is held here; beyond `HELD_BYTES_HIGH_WATER` the whole process pauses, so memory stays bounded.
 */
export class SharedSession implements UpstreamSession, SharedSessionPort {
  onMessage: ((message: Uint8Array) => void) | undefined
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  readonly #shared: SharedProcess
  readonly #release: () => void
  #held: Uint8Array[] = []
  #heldBytes = 0
  #paused = false
  #closed = false

  constructor(shared: SharedProcess, release: () => void) {
    this.#shared = shared
    this.#release = release
    shared.attach(this)
  }

  send(message: Uint8Array): boolean {
    if (this.#closed) return true
    return this.#shared.fromSession(this, message)
  }

  drained(): Promise<void> {
    return this.#shared.process.drained()
  }

  setOutputPaused(paused: boolean): void {
    this.#paused = paused
    if (paused) return
    const held = this.#held
    this.#held = []
    this.#heldBytes = 0
    this.#shared.hold(this, false)
    for (const message of held) {
      if (this.#paused || this.#closed) {
        this.#hold(message)
        continue
      }
      this.onMessage?.(message)
    }
  }

  deliver(message: Uint8Array): void {
    if (this.#closed) return
    if (this.#paused) this.#hold(message)
    else this.onMessage?.(message)
  }

  #hold(message: Uint8Array): void {
    this.#held.push(message)
    this.#heldBytes += message.byteLength
    if (this.#heldBytes > HELD_BYTES_HIGH_WATER) this.#shared.hold(this, true)
  }

  /** The process ended under the session. */
  end(reason: string): void {
    if (this.#closed) return
    this.#closed = true
    this.#release()
    this.onEnd?.('UPSTREAM_EXITED', reason)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#held = []
    this.#shared.detach(this)
    this.#release()
  }
}
