/**
 * One session's call latency through each path, measured interleaved: what Nexus adds to a call, free of the
 * machine's drift.
 *
 * The `throughput` suite measures the direct path and then Nexus, window after window; on a shared virtual
 * machine the speed of the same path moved by more than a millisecond between windows a minute apart, which is
 * as large as what it set out to measure at one session. Here each path has one client and they take turns:
 * `BENCH_LATENCY_ROUNDS` rounds of `BENCH_LATENCY_BLOCK` sequential `tools/call`s on each path, the order of the
 * paths rotating every round. Per path: p50 and p99 of all its calls, and `addedP50Ms`, the median over rounds
 * of (its round's median − the direct path's median in the same round).
 *
 * Paths: `direct` (the fixture over streamable HTTP, legacy era), `twoPlainProxies` (the same through two of the
 * plainest Node.js reverse proxies, `reference-proxy.ts`: what two relay hops cost on this machine),
 * and through gateway + node (`startPeerProcesses`) with the fixture behind the node over HTTP (`http`) or as
 * stdio processes (`stdio`), each in both eras: `legacy` sessions and `modern` 2026-07-28 requests.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { startDirectFixture } from '../../test/support/fixture-server.ts'
import { type BenchClient, closeClients, openClient, openModernClients } from './clients.ts'
import { type PeerProcesses, startPeerProcesses } from './peer-handle.ts'
import type { BenchUpstream } from './peer-process.ts'
import { type ReferenceHops, startReferenceHops } from './reference-hops.ts'
import { median, percentile, round } from './stats.ts'
import { type CpuSnapshot, directCpu, nexusCpu, proxiesCpu } from './throughput.ts'

const ROUNDS = Number(process.env.BENCH_LATENCY_ROUNDS ?? 60)
const BLOCK = Number(process.env.BENCH_LATENCY_BLOCK ?? 25)
const UPSTREAMS = (process.env.BENCH_UPSTREAMS ?? 'http,stdio').split(',') as BenchUpstream[]
const WARMUP_CALLS = 50

interface Path {
  name: string
  client: BenchClient
  cpu: CpuSnapshot
  latencies: number[]
  roundMedians: number[]
  /** CPU (ms) each process used during this path's blocks. */
  cpuMs: Record<string, number>
}

async function callBlock(path: Path, calls: number): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now()
    await path.client.callTool({ name: 'test_simple_text', arguments: {} })
    times.push(performance.now() - t0)
  }
  return times
}

/** Rounds of blocks on every path in turn; the first path is the reference the others are compared with. */
async function interleave(paths: Path[], rounds: number, block: number) {
  for (const path of paths) await callBlock(path, WARMUP_CALLS)
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < paths.length; i++) {
      const path = paths[(r + i) % paths.length]!
      const before = await path.cpu()
      const times = await callBlock(path, block)
      const after = await path.cpu()
      for (const [process, ms] of Object.entries(after))
        path.cpuMs[process] = (path.cpuMs[process] ?? 0) + ms - before[process]!
      path.latencies.push(...times)
      path.roundMedians.push(median(times))
    }
  }
  const [reference] = paths
  return Object.fromEntries(
    paths.map((path) => {
      const sorted = [...path.latencies].sort((a, b) => a - b)
      const added = path.roundMedians.map((m, r) => m - reference!.roundMedians[r]!)
      return [
        path.name,
        {
          calls: sorted.length,
          p50Ms: round(percentile(sorted, 50)),
          p99Ms: round(percentile(sorted, 99)),
          ...(path === reference ? {} : { addedP50Ms: round(median(added)) }),
          cpuMsPerCall: Object.fromEntries(
            Object.entries(path.cpuMs).map(([process, ms]) => [process, round(ms / sorted.length)]),
          ),
        },
      ]
    }),
  )
}

const pathOf = (name: string, client: BenchClient, cpu: CpuSnapshot): Path => ({
  name,
  client,
  cpu,
  latencies: [],
  roundMedians: [],
  cpuMs: {},
})

export async function benchLatency() {
  const direct = await startDirectFixture()
  const networks: PeerProcesses[] = []
  let hops: ReferenceHops | undefined
  const legacyClients: Client[] = []
  const modernClients: BenchClient[] = []
  try {
    const legacy = async (url: string) => {
      const client = await openClient(url)
      legacyClients.push(client)
      return client
    }
    const modern = async (url: string) => {
      const [client] = await openModernClients(url, 1)
      modernClients.push(client!)
      return client!
    }
    const proxies = await startReferenceHops(direct.url, 2)
    hops = proxies
    const paths = [
      pathOf('direct', await legacy(direct.url), directCpu(direct.pid)),
      pathOf('twoPlainProxies', await legacy(proxies.url), proxiesCpu(direct.pid, proxies)),
    ]
    for (const upstream of UPSTREAMS) {
      const network = await startPeerProcesses(upstream, { warmPool: 2, maxSessions: 8 })
      networks.push(network)
      paths.push(pathOf(`${upstream}-legacy`, await legacy(network.url), nexusCpu(network)))
      paths.push(pathOf(`${upstream}-modern`, await modern(network.url), nexusCpu(network)))
      await network.settle()
    }
    return {
      tool: 'test_simple_text',
      rounds: ROUNDS,
      block: BLOCK,
      paths: await interleave(paths, ROUNDS, BLOCK),
    }
  } finally {
    await closeClients(legacyClients).catch(() => {})
    await Promise.allSettled(modernClients.map((c) => c.close()))
    await Promise.allSettled(networks.map((n) => n.stop()))
    await hops?.stop()
    await direct.stop()
  }
}
