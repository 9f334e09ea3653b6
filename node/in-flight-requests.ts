type RequestId = string | number

/** How a request the agent sent through this node ended, as the node saw it. */
export type NodeRequestOutcome = 'ok' | 'error' | 'cancelled' | 'unanswered'

export interface RequestDone {
  id: RequestId
  method: string
  outcome: NodeRequestOutcome
  seconds: number
}

/**
 * The agent's requests a server has not answered yet, known from message ids alone: the node announces how
 * many calls it is running, drains a session only once its requests are answered, and counts and logs each
 * request's outcome under the JSON-RPC id the gateway logs too.
 */
export class InFlightRequests {
  readonly #waiting = new Map<RequestId, { method: string; startedAt: number }>()
  readonly #onDone: ((done: RequestDone) => void) | undefined
  #idle: PromiseWithResolvers<void> | undefined

  constructor(onDone?: (done: RequestDone) => void) {
    this.#onDone = onDone
  }

  get size(): number {
    return this.#waiting.size
  }

  /** A message from the agent: a request (method and id) starts waiting for its answer. */
  fromClient(message: unknown): void {
    if (typeof message !== 'object' || message === null) return
    const { method, params } = message as { method?: unknown; params?: unknown }
    if (typeof method !== 'string') return
    const id = requestIdOf(message)
    if (id !== undefined) this.#waiting.set(id, { method, startedAt: performance.now() })
    // A server does not answer a request the agent cancelled.
    else if (method === 'notifications/cancelled')
      this.#answered((params as { requestId?: unknown })?.requestId, 'cancelled')
  }

  /** The method of a request still waiting for its answer. */
  methodOf(id: unknown): string | undefined {
    return isRequestId(id) ? this.#waiting.get(id)?.method : undefined
  }

  /** A message from the server: a response (an id without a method) ends a wait. */
  fromServer(message: unknown): void {
    if (typeof message !== 'object' || message === null) return
    const { id, method } = message as { id?: unknown; method?: unknown }
    if (method === undefined) this.#answered(id, 'error' in message ? 'error' : 'ok')
  }

  /** The session ended: what still waits will not be answered through this node. */
  abandon(): void {
    for (const id of [...this.#waiting.keys()]) this.#answered(id, 'unanswered')
  }

  #answered(id: unknown, outcome: NodeRequestOutcome): void {
    if (!isRequestId(id)) return
    const request = this.#waiting.get(id)
    if (request === undefined) return
    this.#waiting.delete(id)
    this.#onDone?.({
      id,
      method: request.method,
      outcome,
      seconds: (performance.now() - request.startedAt) / 1000,
    })
    if (this.#waiting.size === 0) {
      this.#idle?.resolve()
      this.#idle = undefined
    }
  }

  /** Resolves once no request is waiting. */
  whenIdle(): Promise<void> {
    if (this.#waiting.size === 0) return Promise.resolve()
    this.#idle ??= Promise.withResolvers<void>()
    return this.#idle.promise
  }
}

/** The id of a JSON-RPC request (a string method and a string or number id), else undefined. */
export function requestIdOf(message: unknown): RequestId | undefined {
  if (typeof message !== 'object' || message === null) return undefined
  const { id, method } = message as { id?: unknown; method?: unknown }
  return typeof method === 'string' && isRequestId(id) ? id : undefined
}

function isRequestId(id: unknown): id is RequestId {
  return typeof id === 'string' || typeof id === 'number'
}
