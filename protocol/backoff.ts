/** A process that dies sooner than this after starting counts as crash-looping. */
export const STABLE_AFTER_MS = 5_000

/** Exponential back-off with a ceiling, reset once the guarded thing has stayed up long enough. */
export class Backoff {
  readonly #initialMs: number
  readonly #maxMs: number
  #failures = 0

  constructor(initialMs = 250, maxMs = 30_000) {
    this.#initialMs = initialMs
    this.#maxMs = maxMs
  }

  get failures(): number {
    return this.#failures
  }

  /** The delay before the next attempt, counting this failure. */
  fail(): number {
    const delay = Math.min(this.#maxMs, this.#initialMs * 2 ** this.#failures)
    this.#failures++
    return delay
  }

  succeed(): void {
    this.#failures = 0
  }

  /**
   * The delay before restarting a process that ran for `ranMs`: none after a stable run (which also resets the
   * back-off), growing while it keeps dying young (a crash loop).
   */
  restartDelay(ranMs: number): number {
    if (ranMs < STABLE_AFTER_MS) return this.fail()
    this.succeed()
    return 0
  }
}
