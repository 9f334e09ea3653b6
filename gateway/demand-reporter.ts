import type { Logger } from 'pino'
import { type DemandReport, encodeDemandReport, type ServerDemand } from '../protocol/demand.ts'
import { type GossipRecords, nextSeq } from '../protocol/gossip-records.ts'
import { WIRE_VERSION } from '../protocol/names.ts'
import type { UnmetEntry } from './unmet-demand.ts'

/** Call rates are averaged over this many intervals: smoother input, and a lost report loses no calls. */
const RATE_WINDOWS = 3

/**
 * A gateway with no demand to report repeats its empty report this many intervals apart, not every interval,
 * and says so in the report (its `intervalMs`), so that it stays fresh for its readers as long. Every peer of
 * the network receives every report, so idle gateways' reports were gossip with nothing in it.
 */
export const IDLE_REPORT_EVERY = 5

/**
 * Counts what agents ask of each server through this gateway and publishes it as a demand report every
 * interval: the allocator's input for how many replicas each server needs.
 */
export class DemandReporter {
  readonly #topic: GossipRecords<DemandReport>
  readonly #peerId: string
  readonly #intervalMs: number
  readonly #sessionsPerServer: () => Map<string, number>
  readonly #unmet: () => UnmetEntry[]
  readonly #logger: Logger
  readonly #clock: () => number
  #calls = new Map<string, number>()
  #windowStart: number
  /** The calls counted in each of the last few intervals, newest last. */
  #history: { calls: Map<string, number>; seconds: number }[] = []
  #seq = 0
  #timer: NodeJS.Timeout | undefined
  /** When the last report went out, and whether it was empty. */
  #last: { at: number; empty: boolean } | undefined

  constructor(
    topic: GossipRecords<DemandReport>,
    peerId: string,
    intervalMs: number,
    sessionsPerServer: () => Map<string, number>,
    logger: Logger,
    unmet: () => UnmetEntry[] = () => [],
    clock: () => number = Date.now,
  ) {
    this.#clock = clock
    this.#windowStart = clock()
    this.#unmet = unmet
    this.#topic = topic
    this.#peerId = peerId
    this.#intervalMs = intervalMs
    this.#sessionsPerServer = sessionsPerServer
    this.#logger = logger
  }

  countCall(serverId: string): void {
    this.#calls.set(serverId, (this.#calls.get(serverId) ?? 0) + 1)
  }

  start(): void {
    this.#timer = setInterval(() => void this.publish(), this.#intervalMs)
  }

  stop(): void {
    clearInterval(this.#timer)
  }

  async publish(): Promise<void> {
    const now = this.#clock()
    this.#history.push({ calls: this.#calls, seconds: Math.max(0.001, (now - this.#windowStart) / 1000) })
    if (this.#history.length > RATE_WINDOWS) this.#history.shift()
    this.#calls = new Map()
    this.#windowStart = now
    const seconds = this.#history.reduce((sum, h) => sum + h.seconds, 0)
    const calls = new Map<string, number>()
    for (const h of this.#history) for (const [id, n] of h.calls) calls.set(id, (calls.get(id) ?? 0) + n)
    const sessions = this.#sessionsPerServer()
    const ids = [...new Set([...sessions.keys(), ...calls.keys()])].sort()
    const servers: ServerDemand[] = ids.map((id) => ({
      id,
      sessions: sessions.get(id) ?? 0,
      callsPerSec: Math.round(((calls.get(id) ?? 0) / seconds) * 1000) / 1000,
    }))
    const unmet = this.#unmet().slice(0, 64)
    const empty = unmet.length === 0 && servers.every((s) => s.sessions === 0 && s.callsPerSec === 0)
    const idleIntervalMs = this.#intervalMs * IDLE_REPORT_EVERY
    // Half an interval of slack: timers drift, and a late tick must not skip a whole idle period.
    if (empty && this.#last?.empty && now - this.#last.at < idleIntervalMs - this.#intervalMs / 2) return
    this.#last = { at: now, empty }
    this.#seq = nextSeq(this.#seq, now)
    const report: DemandReport = {
      v: WIRE_VERSION,
      peerId: this.#peerId,
      servers,
      unmet,
      intervalMs: Math.min(600_000, empty ? idleIntervalMs : this.#intervalMs),
      seq: this.#seq,
      timestamp: now,
    }
    try {
      await this.#topic.publish(encodeDemandReport(report))
    } catch (err) {
      this.#logger.debug({ err }, 'demand report not published')
    }
  }
}
