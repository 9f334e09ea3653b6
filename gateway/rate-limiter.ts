/**
 * Token buckets per principal: `ratePerSec` tokens a second, at most `burst` saved up. `take` spends one and
 * says how long to wait when there is none. Buckets that are full again are forgotten, so memory follows the
 * principals active now, not every principal ever seen.
 */
export class RateLimiter {
  readonly #ratePerSec: number
  readonly #burst: number
  readonly #buckets = new Map<string, { tokens: number; at: number }>()
  readonly #now: () => number

  constructor(ratePerSec: number, burst: number, now: () => number = () => performance.now()) {
    this.#ratePerSec = ratePerSec
    this.#burst = Math.max(1, burst)
    this.#now = now
  }

  /** 0 when the request may go ahead; otherwise the seconds until a token is there. */
  take(principal: string): number {
    if (this.#ratePerSec <= 0) return 0
    const now = this.#now()
    const bucket = this.#buckets.get(principal) ?? { tokens: this.#burst, at: now }
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#ratePerSec)
    bucket.at = now
    this.#buckets.set(principal, bucket)
    if (this.#buckets.size > 10_000) this.#forgetFull(now)
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return (1 - bucket.tokens) / this.#ratePerSec
  }

  #forgetFull(now: number): void {
    for (const [principal, bucket] of this.#buckets)
      if (bucket.tokens + ((now - bucket.at) / 1000) * this.#ratePerSec >= this.#burst)
        this.#buckets.delete(principal)
  }
}
