import { EventEmitter } from 'node:events'
import { constants, PerformanceObserver, performance } from 'node:perf_hooks'

/** Event-loop stalls the gossip bench counts: a record arriving then waits that long at every peer of the process. */
export const STALL_MIN_MS = 250

/** How often the watch's timer wakes: the resolution of a stall's length. */
const TICK_MS = 20

export interface Stalls {
  /** Stalls of at least `minMs` since the last `take()`. */
  count: number
  /** Of those, how many ended with a major garbage collection's final pause. */
  withMajorGc: number
  /** The longest, in milliseconds (0 without stalls). */
  maxMs: number
}

/** One stall: how late the watch's timer came, and whether a major collection's pause fell within it. */
export interface Stall {
  lateMs: number
  majorGc: boolean
  /** performance.now() of the watch's last tick before the stall: the stall is measured from there. */
  since: number
}

interface GcPause {
  start: number
  end: number
}

/**
 * Finds the times this process's event loop stood still for `minMs` or more (a timer due every 20 ms came that
 * much late), and whether a major garbage collection ended within each.
 *
 * perf_hooks reports only a major collection's final pause (tens of milliseconds). V8 marks incrementally
 * before it and finishes within about half a second; when every core is busy its concurrent markers get little
 * time and the main thread does the marking in steps that follow each other closely, so the loop stands still
 * for most of that half second. A stall that ends with a major collection's pause is counted as that collection's.
 */
export class StallWatch extends EventEmitter<{ stall: [Stall] }> {
  readonly #minMs: number
  #majorPauses: GcPause[] = []
  #stalls: Stall[] = []
  #unjudged: { since: number; until: number; lateMs: number }[] = []
  #lastTick = performance.now()
  #timer: NodeJS.Timeout | undefined
  readonly #observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      // Node's gc entries carry their kind in `detail`; the DOM type of PerformanceEntry does not declare it.
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR)
        this.#majorPauses.push({ start: entry.startTime, end: entry.startTime + entry.duration })
    }
  })

  constructor(minMs: number) {
    super()
    this.#minMs = minMs
  }

  start(): void {
    this.#observer.observe({ entryTypes: ['gc'] })
    this.#lastTick = performance.now()
    this.#timer = setInterval(() => this.#tick(), TICK_MS)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#observer.disconnect()
  }

  /** The stalls since the last call. */
  take(): Stalls {
    const stalls = this.#stalls
    this.#stalls = []
    return {
      count: stalls.length,
      withMajorGc: stalls.filter((s) => s.majorGc).length,
      maxMs: Math.round(Math.max(0, ...stalls.map((s) => s.lateMs))),
    }
  }

  #tick(): void {
    const now = performance.now()
    // A stall is judged one tick after it ended: gc entries reach the observer asynchronously.
    for (const stall of this.#unjudged) {
      const judged: Stall = {
        lateMs: stall.lateMs,
        majorGc: this.#majorPauses.some((p) => p.end >= stall.since && p.start <= stall.until),
        since: stall.since,
      }
      this.#stalls.push(judged)
      this.emit('stall', judged)
    }
    this.#unjudged = []
    const lateMs = now - this.#lastTick - TICK_MS
    if (lateMs >= this.#minMs) this.#unjudged.push({ since: this.#lastTick, until: now, lateMs })
    this.#majorPauses = this.#majorPauses.filter((p) => p.end >= now - 10_000)
    this.#lastTick = now
  }
}
