#!/usr/bin/env node
/**
 * `npm run bench`: tools/call throughput and latency through gateway + node, against the same server reached
 * directly, in the same run. Prints one JSON document on stdout.
 *
 * Direct: SDK client → streamable HTTP → the fixture server (one process serving every session).
 * Nexus:  SDK client → streamable HTTP → gateway → libp2p (TCP, noise, yamux) → node → the fixture, hosted
 *         two ways: `http`, the same single process over streamable HTTP (like for like: what Nexus adds), and
 *         `stdio`, one server process per session from a warm pool (how stdio servers run anywhere).
 * The gateway and the node each run in a process of their own, apart from the clients, as in production.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { cpus } from 'node:os'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { startDirectFixture } from '../../test/support/fixture-server.ts'
import type { BenchUpstream, PeerReply, PeerRequest } from './peer-process.ts'

const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16,64').split(',').map(Number)
const UPSTREAMS = (process.env.BENCH_UPSTREAMS ?? 'http,stdio').split(',') as BenchUpstream[]
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3_000)
/** Writes a V8 CPU profile of the gateway and the node to this folder. */
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR
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

/** A peer of the network in a child process; see `peer-process.ts`. */
class PeerProcess {
  readonly address: string
  readonly #child: ChildProcess

  private constructor(child: ChildProcess, address: string) {
    this.#child = child
    this.address = address
  }

  static async start(args: string[]): Promise<PeerProcess> {
    const profile = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []
    const child = fork(new URL('./peer-process.ts', import.meta.url), args, {
      execArgv: [...process.execArgv, ...profile],
    })
    const reply = await PeerProcess.#reply(child)
    if (reply.type !== 'ready') throw new Error(`unexpected ${reply.type} from the ${args[0]} process`)
    return new PeerProcess(child, reply.address)
  }

  static async #reply(child: ChildProcess): Promise<PeerReply> {
    const [reply] = (await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(([code]) => Promise.reject(new Error(`peer process exited (${code})`))),
    ])) as [PeerReply]
    return reply
  }

  async request(request: PeerRequest): Promise<PeerReply> {
    this.#child.send(request)
    return PeerProcess.#reply(this.#child)
  }

  async stop(): Promise<void> {
    const exited = once(this.#child, 'exit')
    this.#child.send({ type: 'stop' } satisfies PeerRequest)
    await exited
  }
}

/** A node and a gateway, each in its own process, as they run in production. */
async function startNetwork(upstream: BenchUpstream, maxSessions: number) {
  const node = await PeerProcess.start(['node', upstream, String(WARM_POOL), String(maxSessions)])
  const gateway = await PeerProcess.start(['gateway', node.address]).catch(async (err) => {
    await node.stop()
    throw err
  })
  return {
    url: gateway.address,
    /** Waits until the node's warm pool is refilled after sessions opened. */
    settle: async () => {
      await node.request({ type: 'pool-settled', size: WARM_POOL })
    },
    stop: async () => {
      await gateway.stop()
      await node.stop()
    },
  }
}

async function measure(url: string, concurrency: number, settle: () => Promise<void>): Promise<Measurement> {
  const clients = await openClients(url, concurrency)
  await settle()
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
  // Ends each session (DELETE) so that the node frees its slot now rather than at the idle timeout.
  await Promise.all(
    clients.map(async (c) => {
      await (c.transport as StreamableHTTPClientTransport).terminateSession()
      await c.close()
    }),
  )
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
const results = []
try {
  for (const upstream of UPSTREAMS) {
    const network = await startNetwork(upstream, Math.max(...CONCURRENCY) + WARM_POOL)
    try {
      for (const concurrency of CONCURRENCY) {
        // The network's warm pool starting up must not eat into the direct run's CPU either.
        const directResult = await measure(direct.url, concurrency, () => network.settle())
        const nexusResult = await measure(network.url, concurrency, () => network.settle())
        results.push({
          upstream,
          concurrency,
          direct: directResult,
          nexus: nexusResult,
          throughputRatio: round(nexusResult.throughputPerSec / directResult.throughputPerSec),
          addedP50Ms: round(nexusResult.p50Ms - directResult.p50Ms),
        })
      }
    } finally {
      await network.stop()
    }
  }
} finally {
  await direct.stop()
}
process.stdout.write(
  `${JSON.stringify(
    {
      benchmark: 'tools/call',
      tool: 'test_simple_text',
      durationMsPerRun: DURATION_MS,
      node: process.version,
      cpus: cpus().length,
      results,
    },
    null,
    2,
  )}\n`,
)
