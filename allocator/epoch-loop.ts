import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { errorMessage } from '../protocol/errors.ts'
import { allocate } from './allocate.ts'
import type { NetworkState } from './network-state.ts'
import type { AllocationPolicy, AllocatorServer, Assignment } from './types.ts'

export interface EpochLoopOptions {
  epochMs: number
  /** How long after a boundary to wait for the records signed before it to reach every peer. */
  settleMs: number
  /** How long a node must have been announcing before the allocator counts it. */
  joinDelayMs: number
  policy?: Partial<AllocationPolicy>
}

export interface EpochLoopEvents {
  assignment: [Assignment]
}

/**
 * Computes the assignment once per epoch. Epochs are numbered by wall-clock time (`floor(t / epochMs)`), so
 * peers agree on them without talking; each computes `settleMs` after the boundary, on the state as of it.
 */
export class EpochLoop extends EventEmitter<EpochLoopEvents> {
  readonly #state: NetworkState
  readonly #servers: () => AllocatorServer[]
  readonly #options: EpochLoopOptions
  readonly #logger: Logger
  #timer: NodeJS.Timeout | undefined
  latest: Assignment | undefined

  constructor(
    state: NetworkState,
    servers: () => AllocatorServer[],
    options: EpochLoopOptions,
    logger: Logger,
  ) {
    super()
    this.#state = state
    this.#servers = servers
    this.#options = options
    this.#logger = logger
  }

  start(): void {
    this.#schedule()
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #schedule(): void {
    const { epochMs, settleMs } = this.#options
    const now = Date.now()
    const nextBoundary = (Math.floor((now - settleMs) / epochMs) + 1) * epochMs
    this.#timer = setTimeout(
      () => {
        this.#compute(nextBoundary / epochMs, nextBoundary)
        this.#schedule()
      },
      nextBoundary + settleMs - now,
    )
  }

  #compute(epoch: number, boundary: number): void {
    try {
      const { joinDelayMs, policy } = this.#options
      // Records count for two epochs at least: a late or lost one must not change the input.
      const windowMs = 2 * this.#options.epochMs
      const input = this.#state.snapshot(epoch, boundary, this.#servers(), joinDelayMs, windowMs, policy)
      const assignment = allocate(input)
      this.#state.prune(boundary - 10 * this.#options.epochMs)
      this.latest = assignment
      this.#logger.debug(
        { epoch, hash: assignment.hash, nodes: input.nodes.length, shortfall: assignment.shortfall },
        'assignment computed',
      )
      this.emit('assignment', assignment)
    } catch (err) {
      this.#logger.error({ epoch, err: errorMessage(err) }, 'allocation failed')
    }
  }
}
