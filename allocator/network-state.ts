import type { Announcement } from '../protocol/announcement.ts'
import type { DemandReport } from '../protocol/demand.ts'
import type { AllocationInput, AllocationPolicy, AllocatorNode, AllocatorServer, Demand } from './types.ts'

/** How many records per peer are kept: enough to look back over a settle delay at any gossip rate. */
const HISTORY = 16

function remember<T extends { timestamp: number }>(
  history: Map<string, T[]>,
  peerId: string,
  record: T,
): void {
  const records = history.get(peerId) ?? []
  records.push(record)
  records.sort((a, b) => a.timestamp - b.timestamp)
  if (records.length > HISTORY) records.splice(0, records.length - HISTORY)
  history.set(peerId, records)
}

/**
 * The peer's latest record signed at or before the boundary, if it was still fresh then: within three of the
 * peer's intervals, and never less than `minWindowMs` (a few lost or late records must not make a peer, or
 * its demand, vanish for an epoch: the assignment would flap).
 */
function asOf<T extends { timestamp: number; intervalMs: number }>(
  records: T[],
  boundary: number,
  minWindowMs = 0,
): T | undefined {
  let latest: T | undefined
  for (const record of records) if (record.timestamp <= boundary) latest = record
  if (latest === undefined) return undefined
  return latest.timestamp > boundary - Math.max(3 * latest.intervalMs, minWindowMs) ? latest : undefined
}

/**
 * The gossiped state the allocator works on, as of an epoch boundary. Peers record the announcements and
 * demand reports they receive (their own included) and, some time after the boundary, take for every peer
 * the latest record signed at or before it. Records are signed with the sender's clock and reach everyone
 * within the settle delay, so every peer builds the same input.
 */
export class NetworkState {
  readonly #announcements = new Map<string, Announcement[]>()
  readonly #demand = new Map<string, DemandReport[]>()

  addAnnouncement(announcement: Announcement): void {
    remember(this.#announcements, announcement.peerId, announcement)
  }

  addDemand(report: DemandReport): void {
    remember(this.#demand, report.peerId, report)
  }

  /** Peers whose latest announcement is fresh at `now` and lists the server. */
  hostsOf(serverId: string, now: number): string[] {
    const hosts: string[] = []
    for (const [peerId, records] of this.#announcements) {
      const a = asOf(records, now)
      if (a !== undefined && !a.draining && a.servers.some((s) => s.id === serverId)) hosts.push(peerId)
    }
    return hosts
  }

  /** Forgets peers with nothing recent, so that memory does not grow with every peer ever seen. */
  prune(before: number): void {
    for (const history of [this.#announcements, this.#demand] as Map<string, { timestamp: number }[]>[])
      for (const [peerId, records] of history)
        if (records[records.length - 1]!.timestamp < before) history.delete(peerId)
  }

  /**
   * The allocator's input for an epoch: the nodes that take allocations (they announce `eligible`), live,
   * not draining and started at least `joinDelayMs` before the boundary; demand summed over gateways; how many replicas each server had then.
   */
  snapshot(
    epoch: number,
    boundary: number,
    servers: readonly AllocatorServer[],
    joinDelayMs: number,
    windowMs: number,
    policy?: Partial<AllocationPolicy>,
  ): AllocationInput {
    const nodes: AllocatorNode[] = []
    const current: Record<string, number> = {}
    for (const records of this.#announcements.values()) {
      const a = asOf(records, boundary, windowMs)
      if (a === undefined || a.draining || a.eligible === undefined) continue
      // A node that just started may not have reached every peer yet: it joins once it surely has.
      if (a.startedAt === undefined || a.startedAt > boundary - joinDelayMs) continue
      nodes.push({
        id: a.peerId,
        capacity: a.load.capacity,
        cpu: a.resources?.cpu,
        memoryMiB: a.resources?.memoryMiB,
        operator: a.labels?.operator,
        region: a.labels?.region,
        eligible: a.eligible,
      })
      for (const s of a.servers) current[s.id] = (current[s.id] ?? 0) + 1
    }
    const demand: Record<string, Demand> = {}
    // Summed in peer id order: float addition depends on order, and every peer must get the same bits.
    const gateways = [...this.#demand.keys()].sort()
    for (const records of gateways.map((g) => this.#demand.get(g)!)) {
      const report = asOf(records, boundary, windowMs)
      if (report === undefined) continue
      for (const s of report.servers) {
        const d = demand[s.id] ?? { sessions: 0, callsPerSec: 0 }
        d.sessions += s.sessions
        d.callsPerSec += s.callsPerSec
        demand[s.id] = d
      }
    }
    return { epoch, nodes, servers, demand, current, policy }
  }
}
