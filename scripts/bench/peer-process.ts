import { cpus } from 'node:os'
/**
 * One peer of the benchmark's Nexus network — the node or the gateway — in a process of its own, as they run in
 * production: apart from each other and from the agents. Driven over the IPC channel by `peer-handle.ts`.
 *
 * `node <stdio|http> <warmPool> <maxSessions>`: a node over TCP hosting the fixture as `bench`, either one
 * process per session from a warm pool (`stdio`) or one process over streamable HTTP relaying every session.
 * `gateway <node multiaddr>`: a gateway that joins through the node and waits until it can route to `bench`.
 */
import { NexusGateway } from '../../gateway/nexus-gateway.ts'
import { NexusNode } from '../../node/nexus-node.ts'
import { descendantsCpuMs, treeRssMiB } from '../../node/runtime/process-tree.ts'
import { fixtureHttpServerConfig, fixtureServerConfig } from '../../test/support/fixture-server.ts'

/** `shared`: the stdio fixture declared safe to share, `BENCH_SESSIONS_PER_PROCESS` (100) sessions a process. */
export type BenchUpstream = 'stdio' | 'http' | 'shared'
export const BENCH_SERVER = 'bench'

export type PeerRequest =
  | { type: 'pool-settled'; size: number }
  /** The process's memory after a full garbage collection (when run with --expose-gc), and its sessions. */
  | { type: 'memory' }
  /** Sessions the gateway moved to another node since it started (a node judged failed). */
  | { type: 'failovers' }
  /**
   * The CPU time the process has used so far (user and system, microseconds), and that of the server processes
   * it runs (milliseconds, at clock-tick resolution).
   */
  | { type: 'cpu' }
  | { type: 'stop' }
export type PeerReply =
  | { type: 'ready'; address: string }
  | { type: 'failovers'; count: number }
  | { type: 'cpu'; micros: number; serversMs: number }
  | { type: 'pool-settled' }
  | {
      type: 'memory'
      heapUsed: number
      /** Memory of Buffers and other objects outside the JS heap (sockets' and streams' data). */
      external: number
      rss: number
      sessions: number
      /** Resident memory of the process and every server process it runs (MiB). */
      treeRssMiB: number
      /** The server processes it runs. */
      serverProcesses: number
    }

const send = (reply: PeerReply) => process.send!(reply)

function cpuUsed(): PeerReply {
  const { user, system } = process.cpuUsage()
  return { type: 'cpu', micros: user + system, serversMs: descendantsCpuMs(process.pid) }
}

function memory(sessions: number, serverProcesses = 0): PeerReply {
  globalThis.gc?.()
  const { heapUsed, external, rss } = process.memoryUsage()
  return {
    type: 'memory',
    heapUsed,
    external,
    rss,
    sessions,
    treeRssMiB: treeRssMiB(process.pid),
    serverProcesses,
  }
}

async function startNode(upstream: BenchUpstream, warmPool: number, maxSessions: number) {
  // The server runs in its sandbox with the whole machine as its limits, as it has when reached directly: this
  // bench measures what the relay costs (the `sandbox` suite measures what the sandbox costs).
  const resources = { cpu: cpus().length, memoryMiB: 2048 }
  const sessionsPerProcess = Number(process.env.BENCH_SESSIONS_PER_PROCESS ?? 100)
  const server =
    upstream === 'http'
      ? { ...fixtureHttpServerConfig(BENCH_SERVER), resources }
      : upstream === 'shared'
        ? { ...fixtureServerConfig(BENCH_SERVER), warmPool, resources, shared: { sessionsPerProcess } }
        : { ...fixtureServerConfig(BENCH_SERVER), warmPool, resources }
  const node = new NexusNode({
    transport: 'tcp',
    maxSessions,
    servers: [server],
    // BENCH_SANDBOX=off compares against servers run without their sandboxes.
    sandbox: { mode: process.env.BENCH_SANDBOX === 'off' ? 'off' : undefined },
    // BENCH_ADMISSION=off starts every process of a burst at once, as nodes did before start admission.
    ...(process.env.BENCH_ADMISSION === 'off'
      ? { admission: { maxStarting: 1024, maxQueued: 100_000 } }
      : {}),
    trust: { allowUnverified: true },
  })
  await node.start()
  /** Resolves once the warm pool is refilled, so that process start-ups do not overlap a timed run. */
  const poolSettled = (size: number) =>
    new Promise<void>((resolve) => {
      const check = () =>
        node.runtime.status().every((s) => s.idleInstances >= size) ? resolve() : setTimeout(check, 50)
      check()
    })
  process.on('message', async (request: PeerRequest) => {
    if (request.type === 'pool-settled') {
      await poolSettled(upstream === 'http' ? 0 : request.size)
      send({ type: 'pool-settled' })
    } else if (request.type === 'memory') {
      send(
        memory(
          node.sessions.size,
          node.runtime.status().reduce((n, s) => n + s.pids.length, 0),
        ),
      )
    } else if (request.type === 'cpu') {
      send(cpuUsed())
    } else {
      await node.stop()
      process.disconnect()
    }
  })
  send({ type: 'ready', address: node.multiaddrs[0]!.toString() })
}

async function startGateway(bootstrap: string) {
  const gateway = new NexusGateway({
    transport: 'tcp',
    bootstrap: [bootstrap],
    http: { port: 0 },
    trust: { allowUnverified: true },
    auth: { anonymous: true },
    limits: { requestsPerSecond: 0, sessionsPerPrincipal: 1_000_000 },
  })
  await gateway.start()
  await gateway.view.waitForServer(BENCH_SERVER, 15_000)
  let failovers = 0
  gateway.on('failover', () => failovers++)
  process.on('message', async (request: PeerRequest) => {
    if (request.type === 'memory') return send(memory(gateway.sessions.size))
    if (request.type === 'failovers') return send({ type: 'failovers', count: failovers })
    if (request.type === 'cpu') return send(cpuUsed())
    if (request.type !== 'stop') return
    await gateway.stop()
    process.disconnect()
  })
  send({ type: 'ready', address: gateway.serverUrl(BENCH_SERVER) })
}

const [role, ...args] = process.argv.slice(2)
if (role === 'node') await startNode(args[0] as BenchUpstream, Number(args[1]), Number(args[2]))
else if (role === 'gateway') await startGateway(args[0]!)
else throw new Error(`unknown role ${role}: expected node or gateway`)
