import type { Host } from './network-view.ts'

/** What this gateway itself has running on a node right now. */
export interface LocalLoad {
  sessions: number
  inFlight: number
}

/** Capacity assumed for a host known only from the DHT, whose announcements this gateway does not see. */
const ASSUMED_CAPACITY = 256

/** Session slots the host can still take, as far as we know; Infinity when unknown (DHT-only). */
export function freeSlots(host: Host): number {
  if (host.server === undefined) return Number.POSITIVE_INFINITY
  return host.server.freeSlots - host.openedSinceAnnouncement
}

/**
 * How busy a host is, from 0 (idle) up: slots in use plus calls in flight, over capacity. Its own
 * announcement counts, corrected by what this gateway did since; a DHT-only host is judged on this
 * gateway's own counts, with a penalty so that announced hosts are preferred.
 */
export function loadScore(host: Host, local: LocalLoad): number {
  if (host.server === undefined || host.load === undefined) {
    return 0.5 + (local.sessions + local.inFlight) / ASSUMED_CAPACITY
  }
  const capacity = Math.max(1, host.load.capacity)
  const used = capacity - Math.max(0, freeSlots(host))
  const inFlight = Math.max(host.load.inFlight, local.inFlight)
  return (used + inFlight) / capacity
}

/**
 * Power of two choices: draw two hosts at random, take the less busy. Close to the best choice, without every
 * gateway herding new sessions onto the one node that looked idlest at its last announcement. Hosts without a
 * free slot are skipped while any other remains.
 */
export function chooseHost(
  hosts: Host[],
  localLoad: (peerId: string) => LocalLoad,
  random: () => number = Math.random,
): Host | undefined {
  const withRoom = hosts.filter((h) => freeSlots(h) > 0)
  const pool = withRoom.length > 0 ? withRoom : hosts
  if (pool.length <= 1) return pool[0]
  const first = Math.floor(random() * pool.length)
  let second = Math.floor(random() * (pool.length - 1))
  if (second >= first) second++
  const a = pool[first]!
  const b = pool[second]!
  const scoreA = loadScore(a, localLoad(a.peerId))
  const scoreB = loadScore(b, localLoad(b.peerId))
  if (scoreA !== scoreB) return scoreA < scoreB ? a : b
  return random() < 0.5 ? a : b
}
