/**
 * Bursts of new sessions on a stdio server that costs a process each (warm pool 0), through a gateway and a
 * node in processes of their own: every session of a burst is opened at the same moment and calls a tool
 * once. Reports, per burst, how many were served, how many were told to retry (-32016, with `retryAfterMs`)
 * and how many failed otherwise, the p50/p99 time to open a served session, and whether a session opened
 * before the burst (idle through it) still answers on its node — liveness traffic not starved — with the
 * gateway's failover count. `BENCH_ADMISSION=off` runs the same with every start at once (no admission), as
 * nodes did before; `BENCH_BURSTS=64,256,1000` picks the bursts.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { NexusRpcCode } from '../../protocol/rpc-codes.ts'
import { closeClients, openClient } from './clients.ts'
import { startPeerProcesses } from './peer-handle.ts'
import { distribution } from './stats.ts'

const BURSTS = (process.env.BENCH_BURSTS ?? '64,256,1000').split(',').map(Number)

async function burst(url: string, size: number) {
  const opened: Client[] = []
  const openMs: number[] = []
  let served = 0
  let busy = 0
  const otherErrors = new Map<string, number>()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: size }, async () => {
      const t0 = performance.now()
      try {
        const client = await openClient(url)
        openMs.push(performance.now() - t0)
        opened.push(client)
        await client.callTool({ name: 'test_simple_text', arguments: {} })
        served++
      } catch (err) {
        if (err instanceof McpError && err.code === NexusRpcCode.Busy) busy++
        else {
          const kind = String((err as Error)?.message ?? err).slice(0, 120)
          otherErrors.set(kind, (otherErrors.get(kind) ?? 0) + 1)
        }
      }
    }),
  )
  const wallMs = Math.round(performance.now() - started)
  await closeClients(opened)
  return {
    burst: size,
    /** Opened, and its call answered. */
    served,
    opened: opened.length,
    toldToRetry: busy,
    failedOtherwise: [...otherErrors.values()].reduce((a, b) => a + b, 0),
    ...(otherErrors.size > 0 ? { otherErrors: Object.fromEntries(otherErrors) } : {}),
    openMs: distribution(openMs),
    wallMs,
  }
}

export async function benchOverload() {
  const network = await startPeerProcesses('stdio', { warmPool: 0, maxSessions: Math.max(...BURSTS) + 16 })
  try {
    // Idle through every burst: it must still answer on its node afterwards.
    const sentinel = await openClient(network.url)
    const results = []
    for (const size of BURSTS) {
      const before = await network.gateway.request({ type: 'failovers' })
      const result = await burst(network.url, size)
      const sentinelOk = await sentinel
        .callTool({ name: 'test_simple_text', arguments: {} })
        .then(() => true)
        .catch(() => false)
      const after = await network.gateway.request({ type: 'failovers' })
      results.push({ ...result, idleSessionStillServed: sentinelOk, failovers: after.count - before.count })
    }
    await closeClients([sentinel])
    return { admission: process.env.BENCH_ADMISSION === 'off' ? 'off' : 'on', bursts: results }
  } finally {
    await network.stop()
  }
}
