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
}
