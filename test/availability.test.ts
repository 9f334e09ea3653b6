import t from 'tap'
import { NexusRpcCode } from '../protocol/rpc-codes.ts'
import { availabilitySoak } from './support/availability-soak.ts'

// The short availability soak (the full one is `npm run bench`, BENCH_SUITES=soak): agents call without pause
// while a node is killed, hung or partitioned from the gateway in turn, then replaced or healed. At least
// 99.9 % of calls succeed, every failure is an interrupted write answered with the defined error, and the
// server processes and the gateway's heap come back to where they started.

t.test('calls go on through kills, hangs and partitions', async (t) => {
  const result = await availabilitySoak({
    durationMs: 40_000,
    faultEveryMs: 9_000,
    sessions: 8,
    nodes: 3,
    writeEvery: 10,
  })
  t.comment(JSON.stringify(result))
  for (const fault of ['crash', 'hang', 'partition'] as const)
    t.ok(result.faults[fault] >= 1, `${result.faults[fault]} × ${fault}`)
  t.ok(result.calls > 1_000, `${result.calls} calls made`)
  t.ok(result.successRatio >= 0.999, `${result.successRatio} of calls succeeded`)
  t.same(
    Object.keys(result.failures).filter((kind) => kind !== `write ${NexusRpcCode.NodeFailed}`),
    [],
    'the only failures are writes in flight on a failed node, answered -32010',
  )
  t.ok(
    result.serverProcesses.end <= result.serverProcesses.start,
    `server processes: ${result.serverProcesses.start} before, ${result.serverProcesses.end} after`,
  )
  const heap = result.gatewayHeapMiB
  t.ok(
    heap.end <= heap.start * 1.25 + 8,
    `heap after a full collection: ${heap.start} MiB before, ${heap.end} MiB after`,
  )
})
