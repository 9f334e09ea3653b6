import { createHash } from 'node:crypto'
import { canonicalJson } from '../protocol/canonical-json.ts'
import { hashId, rankedIndex, rankNodes } from './rendezvous.ts'
import {
  type AllocationInput,
  type AllocationPolicy,
  type AllocatorNode,
  type AllocatorServer,
  type Assignment,
  DEFAULT_POLICY,
  type Demand,
  type Placement,
} from './types.ts'

/** A finite, non-negative number, or 0: bad input degrades the answer, never crashes it. */
function amount(value: number | undefined): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : 0
}

function byId<T extends { id: string }>(a: T, b: T): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/** Sorted by id, first of each id kept: the same list whatever order (or duplicates) peers received. */
function canonical<T extends { id: string }>(items: readonly T[]): T[] {
  const sorted = [...items].sort(byId)
  return sorted.filter((item, i) => i === 0 || sorted[i - 1]!.id !== item.id)
}

interface ServerPlan {
  server: AllocatorServer
  index: number
  demand: Demand
  inDemand: boolean
  target: number
  /** Session slots one replica reserves on its node. */
  slots: number
  placed: number[]
  operators: Set<string>
  regions: Set<string>
  ranking: Float64Array | undefined
}

/** How many replicas a server should have: by demand, at least the minimum, shrinking only past the band. */
function targetReplicas(demand: Demand, inDemand: boolean, current: number, p: AllocationPolicy): number {
  if (!inDemand) return Math.min(p.idleReplicas, p.maxReplicas)
  const needed = (headroom: number) =>
    Math.max(
      Math.ceil((demand.sessions * headroom) / (p.sessionsPerReplica * p.targetUtilisation)),
      Math.ceil((demand.callsPerSec * headroom) / (p.callsPerReplica * p.targetUtilisation)),
      p.minReplicas,
    )
  let target = needed(1)
  if (target < current) target = Math.max(target, Math.min(current, needed(1 + p.shrinkHysteresis)))
  return Math.min(target, p.maxReplicas)
}

/**
 * Assigns replicas of whitelisted servers to nodes. Pure and deterministic: the same input, in any order, gives
 * the same assignment on every peer (no clock, no randomness, stable sorting, rendezvous hashing of ids).
 *
 * Replicas are placed in rounds, so that scarcity is shared fairly rather than first come first served:
 * 1. one replica for every server in demand, busiest first;
 * 2. up to `minReplicas` for each, in the same order;
 * 3. the rest by water-filling: the server with the most sessions per placed replica gets the next one;
 * 4. `idleReplicas` for whitelisted servers no one uses now, by id.
 * Each replica goes to the highest-ranked node (rendezvous order for that server) that does not host it yet,
 * can run it, has room for its slots, CPU and memory, and (first choice) belongs to an operator the server is
 * not on yet, in a region it is not in yet (then: a new operator; then: a new region). What cannot be placed is reported in `shortfall`; no node is ever filled beyond its capacity.
 */
export function allocate(input: AllocationInput): Assignment {
  const policy: AllocationPolicy = { ...DEFAULT_POLICY, ...input.policy }
  const nodes: AllocatorNode[] = canonical(input.nodes).filter((n) => amount(n.capacity) >= 1)
  const servers = canonical(input.servers)
  const n = nodes.length
  const nodeHashes = new Uint32Array(n)
  const freeSlots = new Float64Array(n)
  const freeCpu = new Float64Array(n)
  const freeMemory = new Float64Array(n)
  const operators: string[] = []
  const regions: (string | undefined)[] = []
  const eligible: (Set<string> | undefined)[] = []
  nodes.forEach((node, i) => {
    nodeHashes[i] = hashId(node.id)
    freeSlots[i] = Math.floor(amount(node.capacity))
    freeCpu[i] = node.cpu === undefined ? Number.POSITIVE_INFINITY : amount(node.cpu)
    freeMemory[i] = node.memoryMiB === undefined ? Number.POSITIVE_INFINITY : amount(node.memoryMiB)
    // A node without an operator label counts as an operator of its own.
    operators[i] = node.operator ?? `node:${node.id}`
    // A node without a region label says nothing about where it is: it never counts as a new region.
    regions[i] = node.region
    eligible[i] = node.eligible === undefined ? undefined : new Set(node.eligible)
  })
  const scratch = new Float64Array(n)
  const hosts = servers.map(() => new Uint8Array(n))

  const plans: ServerPlan[] = servers.map((server, index) => {
    const raw = input.demand[server.id]
    const demand = { sessions: amount(raw?.sessions), callsPerSec: amount(raw?.callsPerSec) }
    const inDemand = demand.sessions > 0 || demand.callsPerSec > 0
    const target = targetReplicas(demand, inDemand, amount(input.current?.[server.id]), policy)
    // Beyond maxReplicas, a replica still reserves no more than it is designed to carry.
    const slots = Math.max(
      1,
      Math.min(policy.sessionsPerReplica, Math.ceil(demand.sessions / Math.max(1, target))),
    )
    return {
      server,
      index,
      demand,
      inDemand,
      target,
      slots,
      placed: [],
      operators: new Set(),
      regions: new Set(),
      ranking: undefined,
    }
  })

  const fits = (plan: ServerPlan, i: number) =>
    hosts[plan.index]![i] === 0 &&
    freeSlots[i]! >= plan.slots &&
    freeCpu[i]! >= amount(plan.server.cpu) &&
    freeMemory[i]! >= amount(plan.server.memoryMiB) &&
    (eligible[i] === undefined || eligible[i]!.has(plan.server.id))

  /** Places one more replica; false when no node can take it. */
  const placeOne = (plan: ServerPlan): boolean => {
    if (n === 0) return false
    plan.ranking ??= rankNodes(hashId(plan.server.id), nodeHashes, scratch).slice()
    // The best tier wins, the highest-ranked node within it: a new operator in a new region, then a new
    // operator, then a new region, then any node that fits.
    const best = [-1, -1, -1, -1]
    for (const packed of plan.ranking) {
      const i = rankedIndex(packed)
      if (!fits(plan, i)) continue
      const region = regions[i]
      const newRegion = region !== undefined && !plan.regions.has(region)
      const tier = (plan.operators.has(operators[i]!) ? 2 : 0) + (newRegion ? 0 : 1)
      if (best[tier] === -1) best[tier] = i
      if (tier === 0) break
    }
    const chosen = best.find((i) => i !== -1) ?? -1
    if (chosen === -1) return false
    hosts[plan.index]![chosen] = 1
    freeSlots[chosen] = freeSlots[chosen]! - plan.slots
    freeCpu[chosen] = freeCpu[chosen]! - amount(plan.server.cpu)
    freeMemory[chosen] = freeMemory[chosen]! - amount(plan.server.memoryMiB)
    plan.placed.push(chosen)
    plan.operators.add(operators[chosen]!)
    if (regions[chosen] !== undefined) plan.regions.add(regions[chosen]!)
    return true
  }

  const busiestFirst = (a: ServerPlan, b: ServerPlan) =>
    b.demand.sessions - a.demand.sessions || b.demand.callsPerSec - a.demand.callsPerSec || a.index - b.index
  const demanded = plans.filter((p) => p.inDemand).sort(busiestFirst)
  const stuck = new Set<ServerPlan>()
  for (const round of [1, policy.minReplicas]) {
    for (const plan of demanded) {
      while (!stuck.has(plan) && plan.placed.length < Math.min(round, plan.target))
        if (!placeOne(plan)) stuck.add(plan)
    }
  }
  // Water-filling: always the server whose placed replicas carry the most sessions each.
  const pressure = (p: ServerPlan) => (p.demand.sessions + 1) / (p.placed.length + 1)
  const growing = demanded.filter((p) => !stuck.has(p) && p.placed.length < p.target)
  while (growing.length > 0) {
    let best = 0
    for (let i = 1; i < growing.length; i++) {
      const a = growing[i]!
      const b = growing[best]!
      if (pressure(a) > pressure(b) || (pressure(a) === pressure(b) && a.index < b.index)) best = i
    }
    const plan = growing[best]!
    if (!placeOne(plan) || plan.placed.length >= plan.target) growing.splice(best, 1)
  }
  for (const plan of plans) {
    if (plan.inDemand) continue
    while (plan.placed.length < plan.target && placeOne(plan));
  }

  const assigned: Record<string, Placement[]> = {}
  const shortfall: Record<string, number> = {}
  for (const plan of plans) {
    if (plan.placed.length > 0)
      assigned[plan.server.id] = plan.placed
        .map((i) => ({ node: nodes[i]!.id, slots: plan.slots }))
        .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0))
    if (plan.placed.length < plan.target) shortfall[plan.server.id] = plan.target - plan.placed.length
  }
  const epoch = Math.floor(amount(input.epoch))
  const hash = `0x${createHash('sha256')
    .update(canonicalJson({ epoch, servers: assigned, shortfall }))
    .digest('hex')}`
  return { epoch, servers: assigned, shortfall, hash }
}

/** The servers an assignment gives one node, with the slots each reserves there. */
export function shareOf(assignment: Assignment, nodeId: string): Map<string, number> {
  const share = new Map<string, number>()
  for (const [serverId, placements] of Object.entries(assignment.servers))
    for (const p of placements) if (p.node === nodeId) share.set(serverId, p.slots)
  return share
}
