type RequestId = string | number

/**
 * The agent's requests a server has not answered yet, known from message ids alone: the node announces how
 * many calls it is running, and drains a session only once its requests are answered.
 */
export class InFlightRequests {
  readonly #ids = new Set<RequestId>()
  #idle: PromiseWithResolvers<void> | undefined

  get size(): number {
    return this.#ids.size
  }

  /** A message from the agent: a request (method and id) starts waiting for its answer. */
  fromClient(message: unknown): void {
    if (typeof message !== 'object' || message === null) return
    const { id, method, params } = message as { id?: unknown; method?: unknown; params?: unknown }
    if (typeof method !== 'string') return
    if (isRequestId(id)) this.#ids.add(id)
    // A server does not answer a request the agent cancelled.
    else if (method === 'notifications/cancelled')
      this.#answered((params as { requestId?: unknown })?.requestId)
  }

  /** A message from the server: a response (an id without a method) ends a wait. */
  fromServer(message: unknown): void {
    if (typeof message !== 'object' || message === null) return
    const { id, method } = message as { id?: unknown; method?: unknown }
    if (method === undefined) this.#answered(id)
  }

  #answered(id: unknown): void {
    if (!isRequestId(id) || !this.#ids.delete(id)) return
    if (this.#ids.size === 0) {
      this.#idle?.resolve()
      this.#idle = undefined
    }
  }

  /** Resolves once no request is waiting. */
  whenIdle(): Promise<void> {
    if (this.#ids.size === 0) return Promise.resolve()
    this.#idle ??= Promise.withResolvers<void>()
    return this.#idle.promise
  }
}

function isRequestId(id: unknown): id is RequestId {
  return typeof id === 'string' || typeof id === 'number'
}
