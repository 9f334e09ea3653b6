import { NexusError } from '../../protocol/errors.ts'

export interface StartAdmissionOptions {
  /** Server processes starting at once, all servers of the node together. */
  maxStarting: number
  /** Sessions waiting for a start slot; more are refused at once. */
  maxQueued: number
  /** How long a session may wait for a slot before it is refused. */
  queueTimeoutMs: number
}

export interface AdmissionCounts {
  admitted: number
  refusedFull: number
  refusedTimeout: number
  /** Sessions waiting now, and processes starting now. */
  queued: number
  starting: number
}

interface Waiter {
  grant: () => void
  timer: NodeJS.Timeout
}

/**
 * Bounds how many server processes a node starts at once. A burst of new sessions on a stdio server (a process
 * each) would otherwise start them all together and starve the machine: every start slows, every handshake
 * times out, and the node's own liveness traffic (announcements, pings) stalls, so that gateways fail over
 * sessions that were fine. Past `maxStarting`, sessions queue in order; a full queue, or a wait longer than
 * `queueTimeoutMs`, is refused at once with `NODE_BUSY` and a time to retry after — a clear answer instead of a
 * collapse. A slot is held until the process answers its first message, exits, or `maxStartMs` passes.
 */
export class StartAdmission {
  readonly #options: StartAdmissionOptions
  readonly #queue: Waiter[] = []
  #starting = 0
  readonly counts: AdmissionCounts = {
    admitted: 0,
    refusedFull: 0,
    refusedTimeout: 0,
    queued: 0,
    starting: 0,
  }

  constructor(options: StartAdmissionOptions) {
    this.#options = options
  }

  /** A suggested wait before retrying: about one queue's worth of starts. */
  get retryAfterMs(): number {
    return Math.min(this.#options.queueTimeoutMs, 1_000 + 250 * this.#queue.length)
  }

  /** Waits for a start slot; resolves with its release (idempotent). Throws NODE_BUSY when refused. */
  async acquire(): Promise<() => void> {
    if (this.#starting < this.#options.maxStarting && this.#queue.length === 0) return this.#grant()
    if (this.#queue.length >= this.#options.maxQueued) {
      this.counts.refusedFull++
      throw this.#busy(
        `${this.#queue.length} sessions already wait for one of ${this.#options.maxStarting} start slots`,
      )
    }
    const { promise, resolve, reject } = Promise.withResolvers<() => void>()
    const waiter: Waiter = {
      grant: () => resolve(this.#grant()),
      timer: setTimeout(() => {
        const at = this.#queue.indexOf(waiter)
        if (at === -1) return
        this.#queue.splice(at, 1)
        this.#sync()
        this.counts.refusedTimeout++
        reject(this.#busy(`no start slot came free within ${this.#options.queueTimeoutMs} ms`))
      }, this.#options.queueTimeoutMs),
    }
    this.#queue.push(waiter)
    this.#sync()
    return promise
  }

  #grant(): () => void {
    this.#starting++
    this.counts.admitted++
    this.#sync()
    let released = false
    return () => {
      if (released) return
      released = true
      this.#starting--
      const next = this.#queue.shift()
      if (next !== undefined) {
        clearTimeout(next.timer)
        next.grant()
      }
      this.#sync()
    }
  }

  #busy(why: string): NexusError {
    const retryAfterMs = this.retryAfterMs
    return new NexusError(
      'NODE_BUSY',
      `the node is busy starting servers (${why}); retry after ${retryAfterMs} ms`,
      { retryAfterMs },
    )
  }

  #sync(): void {
    this.counts.queued = this.#queue.length
    this.counts.starting = this.#starting
  }
}
