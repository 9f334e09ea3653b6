#!/usr/bin/env node
/**
 * `npm run bench`: tools/call throughput and latency through gateway + node, against the same server reached
 * directly, in the same run. Prints one JSON document on stdout.
 *
 * Direct: SDK client → streamable HTTP → the server (one process serving every session).
 * Nexus:  SDK client → streamable HTTP → gateway → libp2p (TCP, noise, yamux) → node → stdio → the server
 *         (one server process per session, as nodes run them).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { fixtureServerConfig, startDirectFixture } from '../../test/support/fixture-server.ts'
import { startNetwork } from '../../test/support/network.ts'

const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number)
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3_000)
const WARMUP_CALLS = 20
const WARM_POOL = 16

interface Measurement {
  calls: number
  errors: number
  throughputPerSec: number
  p50Ms: number
  p99Ms: number
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

const round = (x: number) => Math.round(x * 1000) / 1000

async function openClients(url: string, count: number): Promise<Client[]> {
  const clients: Client[] = []
  // A few at a time: each session start on the node launches a server process.
  for (let i = 0; i < count; i += 8) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(8, count - i) }, async () => {
        const client = new Client({ name: 'bench', version: '1.0.0' })
        await client.connect(new StreamableHTTPClientTransport(new URL(url)))
        return client
      }),
    )
    clients.push(...batch)
  }
  return clients
}

/** Waits until the node's warm pool is full again, so that process start-ups do not overlap the timing. */
async function poolSettled(): Promise<void> {
  const deadline = Date.now() + 60_000
  const full = () => network.nodes.every((n) => n.runtime.status().every((s) => s.idleInstances >= WARM_POOL))
  while (!full() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
}

async function measure(url: string, concurrency: number): Promise<Measurement> {
  const clients = await openClients(url, concurrency)
  await poolSettled()
  const call = (client: Client) => client.callTool({ name: 'test_simple_text', arguments: {} })
  for (const client of clients)
    for (let i = 0; i < WARMUP_CALLS / Math.min(concurrency, 4); i++) await call(client)
  const latencies: number[] = []
  let errors = 0
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
  await Promise.all(clients.map((c) => c.close()))
  latencies.sort((a, b) => a - b)
  return {
    calls: latencies.length,
    errors,
    throughputPerSec: round((latencies.length / elapsed) * 1000),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
  }
}

process.env.NEXUS_LOG_LEVEL ??= 'silent'
const direct = await startDirectFixture()
const maxSessions = Math.max(...CONCURRENCY)
const network = await startNetwork({
  transport: 'tcp',
  nodes: 1,
  servers: [{ ...fixtureServerConfig('bench'), warmPool: WARM_POOL }],
  node: { maxSessions: maxSessions + 16 },
})
const results = []
try {
  for (const concurrency of CONCURRENCY) {
    const directResult = await measure(direct.url, concurrency)
    const nexusResult = await measure(network.gateway.serverUrl('bench'), concurrency)
    results.push({
      concurrency,
      direct: directResult,
      nexus: nexusResult,
      throughputRatio: round(nexusResult.throughputPerSec / directResult.throughputPerSec),
      addedP50Ms: round(nexusResult.p50Ms - directResult.p50Ms),
    })
  }
} finally {
  await network.stop()
  await direct.stop()
}
process.stdout.write(
  `${JSON.stringify(
    {
      benchmark: 'tools/call',
      tool: 'test_simple_text',
      durationMsPerRun: DURATION_MS,
      node: process.version,
      cpus: (await import('node:os')).cpus().length,
      results,
    },
    null,
    2,
  )}\n`,
)
