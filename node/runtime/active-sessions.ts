/** The sessions an upstream has open, and a way to wait until none is (an old version draining). */
export class ActiveSessions<T> implements Iterable<T> {
  readonly #sessions = new Set<T>()
  #empty: PromiseWithResolvers<void> | undefined

  add(session: T): void {
    this.#sessions.add(session)
  }

  delete(session: T): boolean {
    const deleted = this.#sessions.delete(session)
    if (this.#sessions.size === 0) {
      this.#empty?.resolve()
      this.#empty = undefined
    }
    return deleted
  }

  get size(): number {
    return this.#sessions.size
  }

  [Symbol.iterator](): Iterator<T> {
    return this.#sessions[Symbol.iterator]()
  }

  /** Resolves once no session is open (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.#sessions.size === 0) return Promise.resolve()
    this.#empty ??= Promise.withResolvers<void>()
    return this.#empty.promise
  }
}
