import type { EventEmitter } from 'node:events'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { NexusGateway } from '../../gateway/nexus-gateway.ts'
import { NexusNode } from '../../node/nexus-node.ts'
import { Partitions } from '../../testing/partitions.ts'
import { connectStreamable } from './clients.ts'
import { waitFor } from './wait.ts'

/** A full collection before each heap reading, with or without --expose-gc, so that garbage is not counted. */
setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

const SERVER = {
  id: 'failover',
  transport: 'stdio' as const,
  command: process.execPath,
  args: [join(import.meta.dirname, '..', 'fixtures', 'failover-server.ts')],
  warmPool: 2,
}

export type Fault = 'crash' | 'hang' | 'partition'

export interface SoakOptions {
  durationMs: number
  /** A fault every this often, on the node serving the most sessions: a crash, a hang, a partition, in turn. */
  faultEveryMs: number
  sessions: number
  nodes: number
  /** One call in this many is a write (not idempotent): the only kind allowed to fail, with -32010. */
  writeEvery?: number
}

export interface SoakResult {
  calls: number
  succeeded: number
  successRatio: number
  /** Failures by kind: `write -32010` is the defined answer to an interrupted write; any other kind is a defect. */
  failures: Record<string, number>
  faults: Record<Fault, number>
  serverProcesses: { start: number; end: number }
  gatewayHeapMiB: { start: number; end: number }
}

/**
 * The availability soak: agents call a server through a gateway without pause while, every `faultEveryMs`,
 * the node serving the most sessions is killed (connections cut), hung (connections up, nothing read) or cut
 * off from the gateway (a partition), and then replaced or healed. Everything runs in this process over
 * in-memory libp2p; the server processes are real. Every call is counted: what succeeded, and every failure by
 * kind. Afterwards the server processes and the gateway's heap are compared with their start.
 */
export async function availabilitySoak(options: SoakOptions): Promise<SoakResult> {
  const partitions = new Partitions()
  const identity = async () => {
    const privateKey = await generateKeyPair('Ed25519')
    return { privateKey, connectionGater: partitions.gaterFor(peerIdFromPrivateKey(privateKey).toString()) }
  }
  const gateway = new NexusGateway(
    {
      transport: 'memory',
      http: { port: 0 },
      trust: { allowUnverified: true },
      auth: { anonymous: true },
      limits: { requestsPerSecond: 0, sessionsPerPrincipal: 1_000_000 },
      failover: { probeAfterMs: 1_000, probeTimeoutMs: 1_000 },
    },
    await identity(),
  )
  await gateway.start()
  const nodes: NexusNode[] = []
  const addNode = async () => {
    const node = new NexusNode(
      {
        transport: 'memory',
        trust: { allowUnverified: true },
        bootstrap: [gateway.peer.getMultiaddrs()[0]!.toString()],
        servers: [SERVER],
        announceIntervalMs: 500,
      },
      await identity(),
    )
    nodes.push(node)
    await node.start()
    await waitFor(
      () => gateway.view.hostsOf(SERVER.id).some((h) => h.peerId === node.peerId),
      gateway.view,
      'change',
      15_000,
      'the new node in the gateway view',
    )
  }
  const processes = () =>
    nodes.reduce((sum, n) => sum + n.runtime.status().reduce((s, x) => s + x.pids.length, 0), 0)
  const heapMiB = () => {
    collectGarbage()
    return Math.round((process.memoryUsage().heapUsed / 2 ** 20) * 10) / 10
  }
  const clients: Client[] = []
  /** Ends each session as an agent that is done does (DELETE), so that what is left afterwards is a leak. */
  const endSessions: (() => Promise<void>)[] = []
  try {
    for (let i = 0; i < options.nodes; i++) await addNode()
    // The start is the network with no session: warm pools full, nothing else.
    await Promise.all(
      nodes.map((node) =>
        waitFor(
          () => node.runtime.status().reduce((n, x) => n + x.pids.length, 0) >= SERVER.warmPool,
          // The process runtime (what the soak runs) emits one event per process it starts.
          node.runtime as unknown as EventEmitter,
          'process-started',
          30_000,
          'the warm pool',
        ),
      ),
    )
    const start = { processes: processes(), heap: heapMiB() }
    for (let i = 0; i < options.sessions; i++) {
      const { client, transport } = await connectStreamable(gateway.serverUrl(SERVER.id))
      endSessions.push(async () => {
        await transport.terminateSession().catch(() => {})
        await client.close()
      })
      await client.listTools() // the gateway learns which tools are safe to run again
      clients.push(client)
    }
    let calls = 0
    let succeeded = 0
    const failures: Record<string, number> = {}
    let running = true
    const loops = clients.map(async (client, c) => {
      for (let i = 0; running; i++) {
        const write = options.writeEvery !== undefined && (i + c) % options.writeEvery === 0
        calls++
        try {
          await client.callTool(
            write ? { name: 'slow_write', arguments: { ms: 5 } } : { name: 'whoami', arguments: {} },
            undefined,
            { timeout: 60_000 },
          )
          succeeded++
        } catch (err) {
          const code =
            err instanceof McpError ? err.code : `transport: ${String((err as Error)?.message).slice(0, 220)}`
          const kind = `${write ? 'write' : 'read'} ${code}`
          failures[kind] = (failures[kind] ?? 0) + 1
        }
      }
    })
    const faults: Record<Fault, number> = { crash: 0, hang: 0, partition: 0 }
    const order: Fault[] = ['crash', 'hang', 'partition']
    const ends = Date.now() + options.durationMs
    for (let f = 0; Date.now() + options.faultEveryMs <= ends; f++) {
      await new Promise((resolve) => setTimeout(resolve, options.faultEveryMs / 2))
      const busiest = [...nodes].sort((a, b) => b.sessions.size - a.sessions.size)[0]!
      const fault = order[f % order.length]!
      faults[fault]++
      if (fault === 'crash') await busiest.crash()
      else if (fault === 'hang') busiest.simulateHang()
      else partitions.cut(gateway.peer, busiest.peer)
      await new Promise((resolve) => setTimeout(resolve, options.faultEveryMs / 2))
      if (fault === 'partition') partitions.heal()
      else {
        nodes.splice(nodes.indexOf(busiest), 1)
        await busiest.stop()
        await addNode()
      }
    }
    running = false
    await Promise.all(loops)
    clients.length = 0
    await Promise.all(endSessions.splice(0).map((end) => end()))
    await waitFor(
      () => gateway.sessions.size === 0,
      gateway,
      'session-closed',
      30_000,
      'every session closed on the gateway',
    ).catch(() => {})
    // Ended sessions' processes go through the teardown queue; what is left is the warm pools.
    await waitFor(
      () => nodes.every((n) => n.sessions.size === 0),
      nodes[0]!,
      'session-closed',
      30_000,
      'every session closed on the nodes',
    ).catch(() => {})
    // Their processes stop through each node's teardown queue: give that up to 30 s to finish.
    for (const deadline = Date.now() + 30_000; processes() > start.processes && Date.now() < deadline; )
      await new Promise((resolve) => setTimeout(resolve, 100))
    return {
      calls,
      succeeded,
      successRatio: Math.round((succeeded / Math.max(1, calls)) * 1e6) / 1e6,
      failures,
      faults,
      serverProcesses: { start: start.processes, end: processes() },
      gatewayHeapMiB: { start: start.heap, end: heapMiB() },
    }
  } finally {
    await Promise.allSettled(endSessions.map((end) => end()))
    await gateway.stop()
    await Promise.allSettled(nodes.map((n) => n.stop()))
  }
}
