/**
 * A client that stops reading while its server floods it with notifications: what that costs the gateway's
 * memory (the gateway in a process of its own), against the same server reached directly — the MCP SDK's
 * streamable HTTP server, which queues whatever it is given — in the same run.
 */
import { readFileSync } from 'node:fs'
import { startDirectFixture } from '../../test/support/fixture-server.ts'
import { initializeRaw, startStalledFlood } from '../../test/support/raw-sse.ts'
import { startPeerProcesses } from './peer-handle.ts'
import { round } from './stats.ts'

const FLOOD_MIB = Number(process.env.BENCH_FLOOD_MIB ?? 64)
const MESSAGE_BYTES = 32 * 1024
/** How long the client stays stalled before memory is measured: time for the flood to pile up if it can. */
const STALLED_MS = 3_000
const MiB = 2 ** 20

const flood = { count: Math.ceil((FLOOD_MIB * MiB) / MESSAGE_BYTES), bytes: MESSAGE_BYTES }
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A process's resident memory, from /proc. */
function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match![1]) * 1024
}

async function gatewayHoldsBack(base: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const metrics = await (await fetch(`${base}/metrics`)).text()
    if (/^nexus_gateway_sessions_held_back 1$/m.test(metrics)) return true
    await pause(50)
  }
  return false
}

export async function benchSlowClient() {
  const direct = await startDirectFixture()
  let directResult: Record<string, number>
  try {
    const before = rssOf(direct.pid)
    const stalled = await startStalledFlood(direct.url, await initializeRaw(direct.url), flood)
    await pause(STALLED_MS)
    directResult = { serverRssGrowthMiB: round((rssOf(direct.pid) - before) / MiB, 1) }
    stalled.res.destroy()
  } finally {
    await direct.stop()
  }

  const network = await startPeerProcesses('stdio', {
    warmPool: 1,
    maxSessions: 16,
    gatewayExecArgv: ['--expose-gc'],
  })
  try {
    const idle = await network.gateway.request({ type: 'memory' })
    const stalled = await startStalledFlood(network.url, await initializeRaw(network.url), flood)
    const heldBack = await gatewayHoldsBack(new URL(network.url).origin, 20_000)
    await pause(STALLED_MS)
    const held = await network.gateway.request({ type: 'memory' })
    stalled.res.destroy()
    const growth = (key: 'heapUsed' | 'external' | 'rss') => round((held[key] - idle[key]) / MiB, 1)
    return {
      floodMiB: FLOOD_MIB,
      stalledMs: STALLED_MS,
      direct: directResult,
      nexus: {
        heldBack,
        gatewayHeapGrowthMiB: growth('heapUsed'),
        gatewayExternalGrowthMiB: growth('external'),
        gatewayRssGrowthMiB: growth('rss'),
      },
    }
  } finally {
    await network.stop()
  }
}
