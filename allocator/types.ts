/** A node as the allocator sees it: what it offers, never its momentary load (that would differ per peer). */
export interface AllocatorNode {
  id: string
  /** Session slots across all its servers. */
  capacity: number
  /** CPU cores and memory it offers to servers; absent means not limited by the allocator. */
  cpu?: number
  memoryMiB?: number
  /** Who runs it: replicas of a server go to distinct operators where possible. */
  operator?: string
  region?: string
  /** Servers it can run (installed and verified); absent means every whitelisted server. */
  eligible?: readonly string[]
}

/** A whitelisted server and what one replica of it needs. */
export interface AllocatorServer {
  id: string
  cpu: number
  memoryMiB: number
}

/** What agents ask of a server across all gateways. */
export interface Demand {
  sessions: number
  callsPerSec: number
}

export interface AllocationPolicy {
  /** Replicas of a server in demand, on distinct nodes, whenever there are that many nodes. */
  minReplicas: number
  maxReplicas: number
  /** Replicas of a whitelisted server no agent uses now, so that its first session finds a host. */
  idleReplicas: number
  /** Sessions one replica is meant to carry at full utilisation... */
  sessionsPerReplica: number
  /** ...and calls per second. */
  callsPerReplica: number
  /** The share of that a replica should carry; above it, another replica is added. */
  targetUtilisation: number
  /**
   * Replicas are removed only once demand would fit the smaller count with this much headroom (0.25: demand
   * must fall 25% below the threshold it grew at), so demand wavering at a threshold does not flap.
   */
  shrinkHysteresis: number
}

export const DEFAULT_POLICY: AllocationPolicy = {
  minReplicas: 2,
  maxReplicas: 16,
  idleReplicas: 1,
  sessionsPerReplica: 64,
  callsPerReplica: 200,
  targetUtilisation: 0.7,
  shrinkHysteresis: 0.25,
}

export interface AllocationInput {
  epoch: number
  nodes: readonly AllocatorNode[]
  servers: readonly AllocatorServer[]
  /** By server id; servers missing here have no demand. */
  demand: Readonly<Record<string, Demand>>
  /** How many replicas each server has now (from the nodes' announcements), for hysteresis. */
  current?: Readonly<Record<string, number>>
  policy?: Partial<AllocationPolicy>
}

/** One replica of a server on a node, and the session slots it reserves there. */
export interface Placement {
  node: string
  slots: number
}

export interface Assignment {
  epoch: number
  /** By server id (sorted), its replicas (sorted by node id). Servers without replicas are absent. */
  servers: Record<string, Placement[]>
  /** Servers that got fewer replicas than they should, and how many are missing (no room, or too few nodes). */
  shortfall: Record<string, number>
  /** keccak256 of the canonical JSON of `epoch`, `servers` and `shortfall`: equal on peers that agree. */
  hash: string
}
