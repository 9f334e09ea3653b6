import { parsePackageRef } from '../protocol/manifest.ts'
import { isValidServerId } from '../protocol/session-handshake.ts'

/** What agents asked for and could not get, for one server id. */
export interface UnmetEntry {
  id: string
  /** Requests for it: agents reaching for an unknown server, and explicit requests. */
  requests: number
  /** Distinct principals who asked (up to `MAX_PRINCIPALS`; past that, the count stops growing). */
  principals: number
  /** Packages explicit requests named for it (`npm:…@…`, `pypi:…==…`). */
  packages: string[]
  /** When it was last asked for (ms since the epoch). */
  lastAt: number
}

const MAX_IDS = 512
const MAX_PRINCIPALS = 256
const MAX_PACKAGES = 8
/** A package named exactly, as onboarding takes it: `npm:<name>@<exact version>` or `pypi:<name>==<exact version>`. */
function isPinnedSpec(spec: string): boolean {
  try {
    return parsePackageRef(spec).kind !== 'oci'
  } catch {
    return false
  }
}

/**
 * The servers agents want and the network does not offer, counted per gateway in bounded memory: at most 512
 * server ids (the least asked-for goes when a new one comes), 256 principals and 8 package names each. A
 * principal asking again counts as a request, not as another principal, so one agent cannot look like demand.
 */
export class UnmetDemand {
  readonly #entries = new Map<
    string,
    { requests: number; principals: Set<string>; packages: Set<string>; lastAt: number }
  >()

  /** An agent asked for a server no node hosts (only well-formed server ids count). */
  record(serverId: string, principal: string, packageSpec?: string): boolean {
    if (!isValidServerId(serverId)) return false
    if (packageSpec !== undefined && !isPinnedSpec(packageSpec)) return false
    let entry = this.#entries.get(serverId)
    if (entry === undefined) {
      if (this.#entries.size >= MAX_IDS) this.#evict()
      entry = { requests: 0, principals: new Set(), packages: new Set(), lastAt: 0 }
      this.#entries.set(serverId, entry)
    }
    entry.requests++
    entry.lastAt = Date.now()
    if (entry.principals.size < MAX_PRINCIPALS) entry.principals.add(principal)
    if (packageSpec !== undefined && entry.packages.size < MAX_PACKAGES) entry.packages.add(packageSpec)
    return true
  }

  /** A server the network now offers is no longer unmet. */
  forget(serverId: string): void {
    this.#entries.delete(serverId)
  }

  /** Entries ranked by demand: distinct principals first, then requests. */
  ranked(limit = MAX_IDS): UnmetEntry[] {
    return [...this.#entries]
      .map(([id, e]) => ({
        id,
        requests: e.requests,
        principals: e.principals.size,
        packages: [...e.packages].sort(),
        lastAt: e.lastAt,
      }))
      .sort(byDemand)
      .slice(0, limit)
  }

  get size(): number {
    return this.#entries.size
  }

  /** Drops the least asked-for id: one pass over the entries, not a sort (it runs on every new id once full). */
  #evict(): void {
    let least: UnmetEntry | undefined
    for (const [id, e] of this.#entries) {
      const entry = {
        id,
        requests: e.requests,
        principals: e.principals.size,
        packages: [],
        lastAt: e.lastAt,
      }
      if (least === undefined || byDemand(entry, least) > 0) least = entry
    }
    if (least !== undefined) this.#entries.delete(least.id)
  }
}

/** Most distinct principals first, then most requests, then the id (a stable order). */
export function byDemand(a: UnmetEntry, b: UnmetEntry): number {
  return b.principals - a.principals || b.requests - a.requests || a.id.localeCompare(b.id)
}

/**
 * The network's unmet demand from every gateway's latest report: the requests and principals of each id add
 * up (principals are counted per gateway, so one agent using two gateways counts twice).
 */
export function mergeUnmet(reports: readonly UnmetEntry[][]): UnmetEntry[] {
  const merged = new Map<string, UnmetEntry>()
  for (const entries of reports)
    for (const e of entries) {
      const m = merged.get(e.id)
      if (m === undefined) merged.set(e.id, { ...e, packages: [...e.packages] })
      else {
        m.requests += e.requests
        m.principals += e.principals
        m.packages = [...new Set([...m.packages, ...e.packages])].sort()
        m.lastAt = Math.max(m.lastAt, e.lastAt)
      }
    }
  return [...merged.values()].sort(byDemand)
}
