export interface InFlightLimits {
  /** Requests one session may have waiting for their answers. */
  perSession: number
  /** Requests one principal may have waiting, all its sessions together. */
  perPrincipal: number
  /** Requests the gateway holds waiting, everyone together. */
  total: number
}

/**
 * Counts the agents' requests waiting for answers, per principal and in all, so that no agent can pile up
 * unbounded work (and gateway memory) by sending requests without waiting for their answers.
 */
export class InFlightBudget {
  readonly limits: InFlightLimits
  readonly #byPrincipal = new Map<string, number>()
  #total = 0

  constructor(limits: InFlightLimits) {
    this.limits = limits
  }

  get total(): number {
    return this.#total
  }

  /**
   * Takes one request for `principal`, whose session already has `sessionCount` waiting; returns why it may
   * not (and takes nothing), or undefined.
   */
  take(principal: string, sessionCount: number): string | undefined {
    const { perSession, perPrincipal, total } = this.limits
    if (sessionCount >= perSession) return `${perSession} requests of this session are already waiting`
    const mine = this.#byPrincipal.get(principal) ?? 0
    if (mine >= perPrincipal) return `${principal} already has ${perPrincipal} requests waiting`
    if (this.#total >= total) return `the gateway already holds ${total} requests waiting`
    this.#byPrincipal.set(principal, mine + 1)
    this.#total++
    return undefined
  }

  give(principal: string, count = 1): void {
    if (count <= 0) return
    const left = (this.#byPrincipal.get(principal) ?? 0) - count
    if (left > 0) this.#byPrincipal.set(principal, left)
    else this.#byPrincipal.delete(principal)
    this.#total -= count
  }
}
