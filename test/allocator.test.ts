import t from 'tap'
import { allocate } from '../allocator/allocate.ts'
import type { AllocationInput, AllocatorNode, Assignment, Demand } from '../allocator/types.ts'
import { DEFAULT_POLICY } from '../allocator/types.ts'
import { seededRandom } from './support/seeded-random.ts'

interface Shape {
  nodes: [number, number]
  servers: [number, number]
  capacity: [number, number]
  /** Fraction of servers with demand, and the largest session count. */
  demanded: number
  maxSessions: number
  operators?: number
  /** How many regions the nodes are spread over; no region labels when unset. */
  regions?: number
  eligibleShare?: number
}

function randomInput(seed: number, shape: Shape): AllocationInput {
  const random = seededRandom(seed)
  const between = ([lo, hi]: [number, number]) => lo + Math.floor(random() * (hi - lo + 1))
  const nodeCount = between(shape.nodes)
  const serverCount = between(shape.servers)
  const servers = Array.from({ length: serverCount }, (_, i) => ({
    id: `s${i}-${Math.floor(random() * 1e6)}`,
    cpu: 0.25,
    memoryMiB: 128,
  }))
  const nodes: AllocatorNode[] = Array.from({ length: nodeCount }, (_, i) => ({
    id: `n${i}-${Math.floor(random() * 1e6)}`,
    capacity: between(shape.capacity),
    cpu: 64,
    memoryMiB: 1 << 20,
    operator:
      shape.operators === undefined
        ? `op${Math.floor(random() * nodeCount)}`
        : `op${Math.floor(random() * shape.operators)}`,
    region: shape.regions === undefined ? undefined : `r${Math.floor(random() * shape.regions)}`,
    eligible:
      shape.eligibleShare === undefined
        ? undefined
        : servers.filter(() => random() < shape.eligibleShare!).map((s) => s.id),
  }))
  const demand: Record<string, Demand> = {}
  for (const s of servers)
    if (random() < shape.demanded)
      demand[s.id] = { sessions: Math.floor(random() * shape.maxSessions), callsPerSec: random() * 100 }
  return { epoch: seed, nodes, servers, demand }
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j]!, copy[i]!]
  }
  return copy
}

const replicasOf = (a: Assignment) =>
  new Set(Object.entries(a.servers).flatMap(([s, ps]) => ps.map((p) => `${s}|${p.node}`)))

const AMPLE: Shape = {
  nodes: [3, 30],
  servers: [1, 40],
  capacity: [2_000, 4_000],
  demanded: 0.6,
  maxSessions: 300,
}
const TIGHT: Shape = { nodes: [1, 12], servers: [5, 60], capacity: [1, 40], demanded: 0.8, maxSessions: 400 }
const CASES = 150

t.test('identical output for permuted and duplicated inputs', async (t) => {
  let failures = 0
  for (let seed = 1; seed <= CASES; seed++) {
    const input = randomInput(seed, seed % 2 ? AMPLE : TIGHT)
    const random = seededRandom(seed * 7)
    const permuted: AllocationInput = {
      ...input,
      nodes: shuffled([...input.nodes, ...input.nodes.slice(0, 1)], random),
      servers: shuffled(input.servers, random),
      demand: Object.fromEntries(shuffled(Object.entries(input.demand), random)),
    }
    if (allocate(permuted).hash !== allocate(input).hash) failures++
  }
  t.equal(failures, 0, `${CASES} random inputs, each permuted: same assignment hash`)
  const a = allocate(randomInput(3, AMPLE))
  t.match(a.hash, /^0x[0-9a-f]{64}$/)
  t.same(allocate(randomInput(3, AMPLE)), a, 'byte for byte the same on a second run')
})

t.test(
  'no node above its capacity, CPU or memory; one replica per node; eligibility respected',
  async (t) => {
    let violations = 0
    for (let seed = 1; seed <= CASES; seed++) {
      const input = randomInput(seed, {
        ...(seed % 2 ? AMPLE : TIGHT),
        eligibleShare: seed % 3 ? undefined : 0.5,
      })
      const a = allocate(input)
      const servers = new Map(input.servers.map((s) => [s.id, s]))
      for (const node of input.nodes) {
        let slots = 0
        let cpu = 0
        let memory = 0
        for (const [serverId, placements] of Object.entries(a.servers)) {
          const here = placements.filter((p) => p.node === node.id)
          if (here.length > 1) violations++
          if (here.length === 1 && node.eligible !== undefined && !node.eligible.includes(serverId))
            violations++
          for (const p of here) {
            slots += p.slots
            cpu += servers.get(serverId)!.cpu
            memory += servers.get(serverId)!.memoryMiB
          }
        }
        if (slots > node.capacity || cpu > node.cpu! || memory > node.memoryMiB!) violations++
      }
    }
    t.equal(violations, 0)
  },
)

t.test(
  'every server in demand gets its minimum on distinct nodes and, where possible, operators',
  async (t) => {
    let belowMinimum = 0
    let sharedOperator = 0
    for (let seed = 1; seed <= CASES; seed++) {
      const input = randomInput(seed, { ...AMPLE, operators: 3 + (seed % 4) })
      const a = allocate(input)
      for (const serverId of Object.keys(input.demand)) {
        const d = input.demand[serverId]!
        if (d.sessions === 0 && d.callsPerSec === 0) continue
        const placements = a.servers[serverId] ?? []
        if (placements.length < Math.min(DEFAULT_POLICY.minReplicas, input.nodes.length)) belowMinimum++
        const ops = placements.map((p) => input.nodes.find((n) => n.id === p.node)!.operator)
        const distinctOperators = new Set(input.nodes.map((n) => n.operator)).size
        if (new Set(ops).size < Math.min(ops.length, distinctOperators)) sharedOperator++
      }
    }
    t.equal(belowMinimum, 0, 'at least min(minReplicas, nodes) replicas')
    t.equal(sharedOperator, 0, 'no two replicas share an operator while another operator was free')
  },
)

t.test('replicas spread over regions too: after a new operator, a new region comes first', async (t) => {
  let sharedRegion = 0
  let sharedOperator = 0
  let checked = 0
  for (let seed = 1; seed <= CASES; seed++) {
    // As many operators as nodes, so that a new operator never competes with a new region.
    const nodeCount = 6 + (seed % 20)
    const input = randomInput(seed, {
      ...AMPLE,
      nodes: [nodeCount, nodeCount],
      operators: 1_000_000,
      regions: 2 + (seed % 3),
    })
    const operatorsUnique = new Set(input.nodes.map((n) => n.operator)).size === input.nodes.length
    const a = allocate(input)
    const distinctRegions = new Set(input.nodes.map((n) => n.region)).size
    for (const [serverId, placements] of Object.entries(a.servers)) {
      if (input.demand[serverId] === undefined) continue
      const nodesOf = placements.map((p) => input.nodes.find((n) => n.id === p.node)!)
      if (
        operatorsUnique &&
        new Set(nodesOf.map((n) => n.region)).size < Math.min(nodesOf.length, distinctRegions)
      )
        sharedRegion++
      if (new Set(nodesOf.map((n) => n.operator)).size < nodesOf.length) sharedOperator++
      checked++
    }
  }
  t.ok(checked > 100, `${checked} servers checked`)
  t.equal(sharedRegion, 0, 'no two replicas share a region while another region had room')
  t.equal(sharedOperator, 0, 'operators stay distinct')
})

t.test(
  'replicas grow with demand and shrink when it falls, with hysteresis instead of flapping',
  async (t) => {
    const nodes = Array.from({ length: 20 }, (_, i) => ({ id: `node-${i}`, capacity: 10_000 }))
    const servers = [{ id: 'busy', cpu: 0.25, memoryMiB: 128 }]
    const count = (sessions: number, current?: number) =>
      allocate({
        epoch: 1,
        nodes,
        servers,
        demand: { busy: { sessions, callsPerSec: 0 } },
        current: current === undefined ? undefined : { busy: current },
      }).servers.busy?.length ?? 0
    const perReplica = DEFAULT_POLICY.sessionsPerReplica * DEFAULT_POLICY.targetUtilisation
    t.equal(count(1), 2, 'minReplicas for a trickle')
    const counts = [1, 100, 200, 400, 800].map((s) => count(s))
    t.same(
      counts,
      [...counts].sort((a, b) => a - b),
      `non-decreasing as demand grows: ${counts}`,
    )
    t.equal(count(400), Math.ceil(400 / perReplica))
    const threshold = 5 * perReplica // 5 replicas suffice up to here; one session more needs a sixth
    let current = count(threshold + 1)
    t.equal(current, 6)
    const seen = new Set<number>()
    for (const sessions of [threshold - 3, threshold + 2, threshold - 5, threshold + 1, threshold - 1]) {
      current = count(sessions, current)
      seen.add(current)
    }
    t.same([...seen], [6], 'demand wavering around the threshold keeps 6 replicas')
    const withHeadroom = Math.ceil((threshold * 0.5 * (1 + DEFAULT_POLICY.shrinkHysteresis)) / perReplica)
    t.equal(count(threshold * 0.5, 6), withHeadroom, 'a real fall shrinks, to the count that leaves headroom')
    t.equal(count(threshold * 0.5, withHeadroom), withHeadroom, 'and stays there')
    t.equal(count(0, 6), DEFAULT_POLICY.idleReplicas, 'no demand: the idle replica count')
    t.equal(count(1e9), DEFAULT_POLICY.maxReplicas, 'never above maxReplicas')
  },
)

t.test('a node leaving moves only its own replicas; a node joining takes about 1/(N+1)', async (t) => {
  let foreignMoves = 0
  /** With region labels, restoring the region spread a leaver broke may move a few other replicas. */
  let regionMoves = 0
  let regionReplicas = 0
  let joinMoved = 0
  let joinTotal = 0
  let joinExpected = 0
  let movedElsewhere = 0
  for (let seed = 1; seed <= CASES; seed++) {
    // Every other case with region labels, so that region spreading is held to the same churn bound.
    const regions = seed % 2 === 0 ? 3 : undefined
    const input = randomInput(seed, { ...AMPLE, regions })
    const before = allocate(input)
    const current = Object.fromEntries(Object.entries(before.servers).map(([s, ps]) => [s, ps.length]))
    const leaving = input.nodes[seed % input.nodes.length]!.id
    const after = replicasOf(
      allocate({ ...input, current, nodes: input.nodes.filter((n) => n.id !== leaving) }),
    )
    for (const replica of replicasOf(before))
      if (!replica.endsWith(`|${leaving}`) && !after.has(replica)) {
        if (regions === undefined) foreignMoves++
        else regionMoves++
      }
    if (regions !== undefined) regionReplicas += replicasOf(before).size

    const joined = replicasOf(
      allocate({
        ...input,
        current,
        nodes: [
          ...input.nodes,
          { id: `joiner-${seed}`, capacity: 3_000, region: regions === undefined ? undefined : 'r1' },
        ],
      }),
    )
    const beforeSet = replicasOf(before)
    for (const replica of beforeSet) {
      if (joined.has(replica)) continue
      joinMoved++
      if (!joined.has(`${replica.split('|')[0]}|joiner-${seed}`)) movedElsewhere++
    }
    joinTotal += beforeSet.size
    joinExpected += beforeSet.size / (input.nodes.length + 1)
  }
  t.equal(foreignMoves, 0, 'without region labels, no replica on a remaining node moved')
  t.ok(
    regionMoves <= regionReplicas / 100,
    `with three regions, ${regionMoves} of ${regionReplicas} replicas on remaining nodes moved (at most 1%)`,
  )
  t.equal(movedElsewhere, 0, 'every replica that moved on a join moved to the new node')
  t.ok(
    joinMoved <= 2 * joinExpected,
    `a join moved ${joinMoved} of ${joinTotal} replicas; 1/(N+1) would be ${Math.round(joinExpected)}`,
  )
})

t.test('demand beyond capacity degrades fairly and never crashes', async (t) => {
  let overfull = 0
  let unfair = 0
  for (let seed = 1; seed <= CASES; seed++) {
    const input = randomInput(seed, TIGHT)
    const a = allocate(input)
    const capacity = new Map(input.nodes.map((n) => [n.id, n.capacity]))
    const used = new Map<string, number>()
    for (const ps of Object.values(a.servers))
      for (const p of ps) used.set(p.node, (used.get(p.node) ?? 0) + p.slots)
    for (const [node, slots] of used) if (slots > capacity.get(node)!) overfull++
    // Fair: no demanded server holds a second replica while another demanded one got none (and fits one slot).
    const demanded = Object.keys(input.demand).filter((s) => input.demand[s]!.sessions > 0)
    const starved = demanded.filter((s) => (a.servers[s]?.length ?? 0) === 0)
    const rich = demanded.filter((s) => (a.servers[s]?.length ?? 0) >= 2)
    if (starved.length > 0 && rich.length > 0) {
      const smallestStarved = Math.min(...starved.map((s) => input.demand[s]!.sessions))
      // A replica reserves its share of sessions; a starved server may simply need more than any node has.
      if (smallestStarved <= 1) unfair++
    }
  }
  t.equal(overfull, 0, 'no node over capacity')
  t.equal(unfair, 0, 'minimums before growth')
  const garbage = allocate({
    epoch: Number.NaN,
    nodes: [
      { id: 'a', capacity: Number.NaN },
      { id: 'b', capacity: -5 },
      { id: 'c', capacity: 10, cpu: -1 },
      { id: 'c', capacity: 99 },
    ],
    servers: [
      { id: 'x', cpu: Number.POSITIVE_INFINITY, memoryMiB: 1 },
      { id: 'y', cpu: 0, memoryMiB: 0 },
    ],
    demand: { x: { sessions: -3, callsPerSec: Number.NaN }, y: { sessions: 1e12, callsPerSec: 1 } },
  })
  t.match(garbage, { epoch: 0, hash: /^0x/ }, 'nonsense input gives an answer, not an exception')
  t.same(
    allocate({ epoch: 1, nodes: [], servers: [{ id: 'x', cpu: 1, memoryMiB: 1 }], demand: {} }).shortfall,
    {
      x: 1,
    },
  )
})
