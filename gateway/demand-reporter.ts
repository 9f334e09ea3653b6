import type { Logger } from 'pino'
import { type DemandReport, encodeDemandReport, type ServerDemand } from '../protocol/demand.ts'
import { type GossipRecords, nextSeq } from '../protocol/gossip-records.ts'
import { WIRE_VERSION } from '../protocol/names.ts'

/**
 * Counts what agents ask of each server through this gateway and publishes it as a demand report every
 * interval: the allocator's input for how many replicas each server needs.
 */
export class DemandReporter {
  readonly #topic: GossipRecords<DemandReport>
  readonly #peerId: string
  readonly #intervalMs: number
  readonly #sessionsPerServer: () => Map<string, number>
  readonly #logger: Logger
  #calls = new Map<string, number>()
  #windowStart = Date.now()
  #seq = 0
  #timer: NodeJS.Timeout | undefined

  constructor(
    topic: GossipRecords<DemandReport>,
    peerId: string,
    intervalMs: number,
    sessionsPerServer: () => Map<string, number>,
    logger: Logger,
  ) {
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
    const now = Date.now()
    const seconds = Math.max(0.001, (now - this.#windowStart) / 1000)
    const calls = this.#calls
    this.#calls = new Map()
    this.#windowStart = now
    const sessions = this.#sessionsPerServer()
    const ids = [...new Set([...sessions.keys(), ...calls.keys()])].sort()
    const servers: ServerDemand[] = ids.map((id) => ({
      id,
      sessions: sessions.get(id) ?? 0,
      callsPerSec: Math.round(((calls.get(id) ?? 0) / seconds) * 1000) / 1000,
    }))
    this.#seq = nextSeq(this.#seq, now)
    const report: DemandReport = {
      v: WIRE_VERSION,
      peerId: this.#peerId,
      servers,
      intervalMs: this.#intervalMs,
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
