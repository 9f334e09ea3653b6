import { allocate } from '../../allocator/allocate.ts'
import type {
  AllocationInput,
  AllocatorNode,
  AllocatorServer,
  Assignment,
  Demand,
} from '../../allocator/types.ts'
import { seededRandom } from '../../test/support/seeded-random.ts'
import { type Distribution, distribution, round } from './stats.ts'

/**
 * Allocation time for networks of 10 to 1,000 nodes and 50 to 500 servers, and churn: the share of replicas
 * that move when one node leaves or joins (rendezvous hashing should move about 1/N). Deterministic inputs
 * (a seeded generator), so runs are comparable.
 */

export function syntheticNetwork(nodeCount: number, serverCount: number, seed = 1): AllocationInput {
  const random = seededRandom(seed)
  const nodes: AllocatorNode[] = Array.from({ length: nodeCount }, (_, i) => ({
    id: `node-${i.toString().padStart(4, '0')}`,
    capacity: 256,
    cpu: 16,
    memoryMiB: 65_536,
    operator: `operator-${i % Math.max(1, Math.floor(nodeCount / 3))}`,
  }))
  const servers: AllocatorServer[] = Array.from({ length: serverCount }, (_, i) => ({
    id: `server-${i.toString().padStart(3, '0')}`,
    cpu: 0.25,
    memoryMiB: 256,
  }))
  // Zipf-like: a few servers carry most sessions, as real usage does; about a third have none.
  const demand: Record<string, Demand> = {}
  const totalSessions = nodeCount * 256 * 0.4
  servers.forEach((s, i) => {
    if (random() < 0.33) return
    demand[s.id] = { sessions: Math.round(totalSessions / ((i + 1) * 6)), callsPerSec: random() * 50 }
  })
  return { epoch: 1, nodes, servers, demand }
}

/** The share of (server, node) replicas of `before` that are not in `after`. */
export function moved(before: Assignment, after: Assignment): number {
  let total = 0
  let gone = 0
  for (const [serverId, placements] of Object.entries(before.servers)) {
    const now = new Set((after.servers[serverId] ?? []).map((p) => p.node))
    for (const p of placements) {
      total++
      if (!now.has(p.node)) gone++
    }
  }
  return total === 0 ? 0 : gone / total
}

function time(input: AllocationInput, runs: number): { time: Distribution; assignment: Assignment } {
  const times: number[] = []
  let assignment = allocate(input)
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    assignment = allocate(input)
    times.push(performance.now() - started)
  }
  return { time: distribution(times), assignment }
}

export async function runAllocationBench() {
  const results = []
  for (const nodeCount of [10, 100, 1_000]) {
    for (const serverCount of [50, 500]) {
      const input = syntheticNetwork(nodeCount, serverCount)
      const { time: allocation, assignment } = time(input, nodeCount >= 1_000 ? 10 : 30)
      const replicas = Object.values(assignment.servers).reduce((sum, p) => sum + p.length, 0)
      const current = Object.fromEntries(Object.entries(assignment.servers).map(([id, p]) => [id, p.length]))
      const leaving = input.nodes[Math.floor(nodeCount / 2)]!.id
      const afterLeave = allocate({ ...input, current, nodes: input.nodes.filter((n) => n.id !== leaving) })
      const onLeaving = Object.values(assignment.servers)
        .flat()
        .filter((p) => p.node === leaving).length
      const joined = allocate({
        ...input,
        current,
        nodes: [...input.nodes, { ...input.nodes[0]!, id: 'node-joined', operator: 'operator-new' }],
      })
      results.push({
        nodes: nodeCount,
        servers: serverCount,
        replicas,
        shortfall: Object.values(assignment.shortfall).reduce((a, b) => a + b, 0),
        allocation,
        leave: {
          movedShare: round(moved(assignment, afterLeave), 4),
          onLeavingNodeShare: round(onLeaving / replicas, 4),
        },
        join: {
          movedShare: round(moved(assignment, joined), 4),
          oneOverNPlusOne: round(1 / (nodeCount + 1), 4),
        },
      })
    }
  }
  return results
}

if (import.meta.main) process.stdout.write(`${JSON.stringify(await runAllocationBench(), null, 2)}\n`)
