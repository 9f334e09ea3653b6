/**
 * tools/call throughput and latency through gateway + node, against the same server reached directly, in the
 * same run.
 *
 * Direct: SDK client → streamable HTTP → the fixture server (one process serving every session).
 * Nexus:  SDK client → streamable HTTP → gateway → libp2p (TCP, noise, yamux) → node → the fixture, hosted
 *         two ways: `http`, the same single process over streamable HTTP (like for like: what Nexus adds), and
 *         `stdio`, one server process per session from a warm pool (how stdio servers run anywhere).
 * The gateway and the node each run in a process of their own, apart from the clients, as in production.
 * Through Nexus both eras are measured: legacy sessions (v1 SDK clients) and 2026-07-28 requests (v2 clients
 * pinned to it), which the gateway routes one by one and the node serves on its era bridge's pooled sessions.
 * The direct run is the legacy era: the fixture speaks only that.
 *
 * A yardstick runs beside them (legacy era, `http` upstream): the same client and server with two of the
 * plainest Node.js reverse proxies chained between them (`reference-proxy.ts`), the hop count of gateway +
 * node. What it adds to the direct path is what two relay processes cost on this machine before they do
 * anything at all; Nexus's figures are best read against it.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { treeCpuMs } from '../../node/runtime/process-tree.ts'
import { startDirectFixture } from '../../test/support/fixture-server.ts'
import { type BenchClient, closeClients, openClients, openModernClients } from './clients.ts'
import { type PeerProcesses, startPeerProcesses } from './peer-handle.ts'
import type { BenchUpstream } from './peer-process.ts'
import { type ReferenceHops, startReferenceHops } from './reference-hops.ts'
import { percentile, round } from './stats.ts'

const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number)
const UPSTREAMS = (process.env.BENCH_UPSTREAMS ?? 'http,stdio').split(',') as BenchUpstream[]
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3_000)
/** `legacy`: v1 SDK clients on sessions; `modern`: v2 clients pinned to 2026-07-28 (per-request routing). */
const ERAS = (process.env.BENCH_ERAS ?? 'legacy,modern').split(',') as Era[]
type Era = 'legacy' | 'modern'
const WARMUP_CALLS = 20
const WARM_POOL = 16

interface Measurement {
  calls: number
  errors: number
  throughputPerSec: number
  p50Ms: number
  p99Ms: number
  /** CPU time per call (ms) of each process on the path, over the timed run: `server`, and `gateway`, `node`. */
  cpuMsPerCall: Record<string, number>
}

/** CPU time (ms) each process on a path has used so far. */
export type CpuSnapshot = () => Promise<Record<string, number>>

async function measure(
  url: string,
  concurrency: number,
  settle: () => Promise<void>,
  cpu: CpuSnapshot,
  era: Era = 'legacy',
): Promise<Measurement> {
  const clients: BenchClient[] =
    era === 'legacy' ? await openClients(url, concurrency) : await openModernClients(url, concurrency)
  await settle()
  const call = (client: BenchClient) => client.callTool({ name: 'test_simple_text', arguments: {} })
  for (const client of clients)
    for (let i = 0; i < WARMUP_CALLS / Math.min(concurrency, 4); i++) await call(client)
  const latencies: number[] = []
  let errors = 0
  const cpuBefore = await cpu()
  const started = performance.now()
  const deadline = started + DURATION_MS
  await Promise.all(
    clients.map(async (client) => {
      while (performance.now() < deadline) {
        const t0 = performance.now()
        try {
          await call(client)
          latencies.push(performance.now() - t0)
        } catch {
          errors++
        }
      }
    }),
  )
  const elapsed = performance.now() - started
  const cpuAfter = await cpu()
  if (era === 'legacy') await closeClients(clients as Client[])
  else await Promise.all(clients.map((c) => c.close()))
  latencies.sort((a, b) => a - b)
  return {
    calls: latencies.length,
    errors,
    throughputPerSec: round((latencies.length / elapsed) * 1000),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
    cpuMsPerCall: Object.fromEntries(
      Object.entries(cpuAfter).map(([process, ms]) => [
        process,
        round((ms - cpuBefore[process]!) / latencies.length),
      ]),
    ),
  }
}

/** The process of the direct path: the server reached without Nexus. */
export function directCpu(serverPid: number): CpuSnapshot {
  return async () => ({ server: treeCpuMs(serverPid) })
}

/** The processes of the yardstick: the same server, and the chain of plain proxies in front of it. */
export function proxiesCpu(serverPid: number, hops: ReferenceHops): CpuSnapshot {
  return async () => ({ server: treeCpuMs(serverPid), bothProxies: await hops.cpuMs() })
}

/** The processes of a Nexus path: the gateway, the node, and the server processes the node runs. */
export function nexusCpu(network: PeerProcesses): CpuSnapshot {
  return async () => {
    const [gateway, node] = await Promise.all([
      network.gateway.request({ type: 'cpu' }),
      network.node.request({ type: 'cpu' }),
    ])
    return { server: node.serversMs, gateway: gateway.micros / 1000, node: node.micros / 1000 }
  }
}

/** The yardstick: the same calls through two plain proxies, and what they add to the direct path. */
async function measureReferenceHops(
  direct: { url: string; pid: number },
  concurrency: number,
  directResult: Measurement,
) {
  const hops = await startReferenceHops(direct.url, 2)
  try {
    const result = await measure(hops.url, concurrency, async () => {}, proxiesCpu(direct.pid, hops))
    return {
      ...result,
      throughputRatio: round(result.throughputPerSec / directResult.throughputPerSec),
      addedP50Ms: round(result.p50Ms - directResult.p50Ms),
    }
  } finally {
    await hops.stop()
  }
}

export async function benchThroughput() {
  const direct = await startDirectFixture()
  const results = []
  try {
    for (const upstream of UPSTREAMS) {
      const network = await startPeerProcesses(upstream, {
        warmPool: WARM_POOL,
        maxSessions: Math.max(...CONCURRENCY) + WARM_POOL,
      })
      try {
        for (const concurrency of CONCURRENCY) {
          // The network's warm pool starting up must not eat into the direct run's CPU either.
          const directResult = await measure(
            direct.url,
            concurrency,
            () => network.settle(),
            directCpu(direct.pid),
          )
          const reference =
            upstream === 'http' ? await measureReferenceHops(direct, concurrency, directResult) : undefined
          for (const era of ERAS) {
            const nexusResult = await measure(
              network.url,
              concurrency,
              () => network.settle(),
              nexusCpu(network),
              era,
            )
            results.push({
              upstream,
              concurrency,
              era,
              direct: directResult,
              nexus: nexusResult,
              throughputRatio: round(nexusResult.throughputPerSec / directResult.throughputPerSec),
              addedP50Ms: round(nexusResult.p50Ms - directResult.p50Ms),
              ...(reference === undefined ? {} : { twoPlainProxies: reference }),
            })
          }
        }
      } finally {
        await network.stop()
      }
    }
  } finally {
    await direct.stop()
  }
  return { tool: 'test_simple_text', durationMsPerRun: DURATION_MS, results }
}
