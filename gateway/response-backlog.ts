import type { ServerResponse } from 'node:http'

export interface ResponseBacklogOptions {
  /** A response that can take nothing more for this long is closed. */
  stallTimeoutMs: number
  /** A stalled response was closed. */
  onCut?: () => void
}

/**
 * The agent's open HTTP responses of one session, watched for a client that reads slower than the server
 * writes. While any of them cannot take more (its socket buffer is full), the session is congested and the
 * gateway stops reading from the node: back-pressure reaches the node and the server instead of growing
 * buffers here. A response that stays full for `stallTimeoutMs` is closed; the events meant for it stay in
 * the session's bounded event store, from which a streamable HTTP client resumes with Last-Event-ID.
 */
export class ResponseBacklog {
  readonly #options: ResponseBacklogOptions
  readonly #watched = new Set<ServerResponse>()
  readonly #stallTimers = new Map<ServerResponse, NodeJS.Timeout>()
  #waiters: (() => void)[] = []

  constructor(options: ResponseBacklogOptions) {
    this.#options = options
  }

  watch(res: ServerResponse): void {
    this.#watched.add(res)
    res.once('close', () => {
      this.#watched.delete(res)
      this.#unstall(res)
    })
  }

  /** Whether a response of the session cannot take more now. */
  get congested(): boolean {
    for (const res of this.#watched) if (res.writableNeedDrain) return true
    return false
  }

  /** Resolves once every response can take more again, drained or closed; full ones start their stall clock. */
  whenClear(): Promise<void> {
    this.#armStallTimers()
    if (!this.congested) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  #armStallTimers(): void {
    for (const res of this.#watched) {
      if (!res.writableNeedDrain || this.#stallTimers.has(res)) continue
      const timer = setTimeout(() => {
        this.#options.onCut?.()
        res.destroy()
      }, this.#options.stallTimeoutMs)
      this.#stallTimers.set(res, timer)
      res.once('drain', () => this.#unstall(res))
    }
  }

  #unstall(res: ServerResponse): void {
    clearTimeout(this.#stallTimers.get(res))
    this.#stallTimers.delete(res)
    if (this.congested) {
      // Another response is still full: it must be on the clock too.
      if (this.#waiters.length > 0) this.#armStallTimers()
      return
    }
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }
}
