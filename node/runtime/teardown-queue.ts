import { Queue } from '@libp2p/utils'

/**
 * Stops server processes a few at a time. Ending hundreds of sessions at once (an agent deleting them all, a
 * gateway failing) would otherwise end hundreds of processes at once: their exits and the node's bookkeeping
 * starve its event loop, and its libp2p connections — every other session — time out. Queued, the work
 * takes longer but the node stays responsive.
 */
export class TeardownQueue {
  readonly #queue: Queue<void>
  #running = 0
  /** The most teardowns that ran at once so far (for metrics and tests). */
  peakRunning = 0

  constructor(concurrency: number) {
    this.#queue = new Queue({ concurrency })
  }

  /** Runs `stop` once fewer than the limit run; resolves when it has finished (it never rejects). */
  run(stop: () => Promise<void>): Promise<void> {
    return this.#queue.add(async () => {
      this.#running++
      this.peakRunning = Math.max(this.peakRunning, this.#running)
      try {
        await stop()
      } catch {
        // A process that cannot be stopped gracefully was killed by `stop` itself; nothing more to do here.
      } finally {
        this.#running--
      }
    })
  }

  /** Teardowns running and waiting. */
  get pending(): number {
    return this.#queue.size
  }
}
