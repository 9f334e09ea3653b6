/**
 * Memory per session on a node hosting a stdio server, shared (a manifest's `shared`: many sessions per process)
 * and not (one process per session). Sessions are opened through a gateway and each calls a tool once; the
 * node's process and every server process it runs are measured (resident memory of the tree) before and after.
 *
 * Shared: `BENCH_SHARED_SESSIONS` (1,000) sessions, `BENCH_SESSIONS_PER_PROCESS` (100) a process.
 * One process per session: `BENCH_EXCLUSIVE_SESSIONS` (100) sessions — a thousand processes of this fixture
 * would need some 50 GiB, more than the bench machine has; memory per session is what a session costs either
 * way, and the figure for 1,000 is that times 1,000.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { closeClients, openClient } from './clients.ts'
import { startPeerProcesses } from './peer-handle.ts'
import type { BenchUpstream } from './peer-process.ts'
import { round } from './stats.ts'

const SHARED_SESSIONS = Number(process.env.BENCH_SHARED_SESSIONS ?? 1_000)
const EXCLUSIVE_SESSIONS = Number(process.env.BENCH_EXCLUSIVE_SESSIONS ?? 100)
const SESSIONS_PER_PROCESS = Number(process.env.BENCH_SESSIONS_PER_PROCESS ?? 100)

async function measure(upstream: BenchUpstream, sessions: number, openBatch: number) {
  const network = await startPeerProcesses(upstream, { warmPool: 1, maxSessions: sessions + 16 })
  try {
    await network.settle()
    const before = await network.node.request({ type: 'memory' })
    const clients: Client[] = []
    let errors = 0
    const started = performance.now()
    for (let i = 0; i < sessions; i += openBatch) {
      const opened = await Promise.allSettled(
        Array.from({ length: Math.min(openBatch, sessions - i) }, async () => {
          const client = await openClient(network.url)
          await client.callTool({ name: 'test_simple_text', arguments: {} })
          return client
        }),
      )
      for (const result of opened)
        if (result.status === 'fulfilled') clients.push(result.value)
        else errors++
    }
    const openAllMs = performance.now() - started
    const after = await network.node.request({ type: 'memory' })
    await closeClients(clients)
    const addedMiB = after.treeRssMiB - before.treeRssMiB
    return {
      sessions: clients.length,
      errors,
      openAndCallAllMs: round(openAllMs),
      serverProcesses: after.serverProcesses,
      nodeAndServersMiB: { before: round(before.treeRssMiB, 1), after: round(after.treeRssMiB, 1) },
      mibPerSession: round(addedMiB / Math.max(1, clients.length)),
    }
  } finally {
    await network.stop()
  }
}

export async function benchShared() {
  const shared = await measure('shared', SHARED_SESSIONS, 50)
  // Each of these sessions starts a process: few at a time, within the node's start admission.
  const exclusive = await measure('stdio', EXCLUSIVE_SESSIONS, 8)
  return {
    sessionsPerProcess: SESSIONS_PER_PROCESS,
    shared,
    onePerSession: exclusive,
    memoryRatio: round(exclusive.mibPerSession / shared.mibPerSession, 1),
    onePerSessionAt1000MiB: round(exclusive.mibPerSession * 1_000),
  }
}
