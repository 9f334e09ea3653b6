/**
 * Failover time: an agent calls a read-only tool in a loop through the gateway while the node serving its
 * session is killed (connections cut, no goodbye) or hangs (connections stay up, nothing is read). Measured
 * from the break to the next successful call, which the gateway completes on another node; a fresh node
 * replaces the broken one before the next trial. Gateway, nodes and agent share this process, over TCP.
 */
import { join } from 'node:path'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { NexusGateway } from '../../gateway/nexus-gateway.ts'
import { NexusNode } from '../../node/nexus-node.ts'
import { connectStreamable } from '../../test/support/clients.ts'
import { waitFor, withTimeout } from '../../test/support/wait.ts'
import { distribution } from './stats.ts'

const TRIALS = Number(process.env.BENCH_FAILOVER_TRIALS ?? 20)
/** How long a request may wait with no frame from its node, and then its probe, before a hang is declared. */
const PROBE_AFTER_MS = 500
const PROBE_TIMEOUT_MS = 500
/** Calls run this long before each break, so that no server process is still starting up. */
const SETTLE_MS = 2_000

const SERVER = {
  id: 'failover',
  transport: 'stdio' as const,
  command: process.execPath,
  args: [join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'failover-server.ts')],
  warmPool: 2,
}

type Break = 'crash' | 'hang'

class FailoverRig {
  readonly gateway = new NexusGateway({
    transport: 'tcp',
    http: { port: 0 },
    trust: { allowUnverified: true },
    auth: { anonymous: true },
    limits: { requestsPerSecond: 0, sessionsPerPrincipal: 1_000_000 },
    failover: { probeAfterMs: PROBE_AFTER_MS, probeTimeoutMs: PROBE_TIMEOUT_MS },
  })
  readonly nodes: NexusNode[] = []

  async start(): Promise<void> {
    await this.gateway.start()
    await Promise.all([this.addNode(), this.addNode()])
  }

  /** Starts a node that joins through the gateway; resolves once the gateway can route to it. */
  async addNode(): Promise<void> {
    const node = new NexusNode({
      transport: 'tcp',
      trust: { allowUnverified: true },
      bootstrap: [this.gateway.peer.getMultiaddrs()[0]!.toString()],
      servers: [SERVER],
    })
    this.nodes.push(node)
    await node.start()
    await waitFor(
      () => this.gateway.view.hostsOf(SERVER.id).some((h) => h.peerId === node.peerId),
      this.gateway.view,
      'change',
      15_000,
      'the new node in the gateway view',
    )
  }

  nodeOf(sessionId: string): NexusNode {
    const peerId = this.gateway.sessions.get(sessionId)!.nodePeerId
    return this.nodes.find((n) => n.peerId === peerId)!
  }

  async remove(node: NexusNode): Promise<void> {
    this.nodes.splice(this.nodes.indexOf(node), 1)
    await node.stop()
  }

  async stop(): Promise<void> {
    await this.gateway.stop()
    await Promise.all(this.nodes.map((n) => n.stop()))
  }
}

/**
 * One trial: break the session's node while calls run. Milliseconds until the session is moved (the failure
 * noticed, another node chosen, the handshake replayed there) and until the next call succeeds.
 */
async function trial(rig: FailoverRig, client: Client, sessionId: string, kind: Break) {
  const broken = rig.nodeOf(sessionId)
  let errors = 0
  let running = true
  let detectedAt: number | undefined
  const firstCall = Promise.withResolvers<void>()
  const recovered = Promise.withResolvers<number>()
  const calls = (async () => {
    while (running) {
      try {
        await client.callTool({ name: 'whoami', arguments: {} })
        const at = performance.now()
        firstCall.resolve()
        if (detectedAt !== undefined && at > detectedAt) recovered.resolve(at)
      } catch {
        errors++
      }
    }
  })()
  await firstCall.promise
  // A steady network: the replacement node's warm server processes have loaded before its turn comes.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
  const failedOver = Promise.withResolvers<void>()
  rig.gateway.once('failover', () => {
    detectedAt = performance.now()
    failedOver.resolve()
  })
  const brokeAt = performance.now()
  if (kind === 'crash') void broken.crash()
  else broken.simulateHang()
  let recoveredAt: number
  try {
    await withTimeout(failedOver.promise, 30_000, `failover after a ${kind}`)
    recoveredAt = await withTimeout(recovered.promise, 30_000, 'a successful call after failover')
  } finally {
    running = false
    await calls
  }
  await rig.remove(broken)
  await rig.addNode()
  return { movedMs: detectedAt! - brokeAt, failoverMs: recoveredAt - brokeAt, errors }
}

async function measure(kind: Break) {
  const rig = new FailoverRig()
  await rig.start()
  try {
    const { client, transport } = await connectStreamable(rig.gateway.serverUrl(SERVER.id))
    try {
      await client.listTools() // the gateway learns that whoami is read-only, so it may run it again
      const trials = []
      for (let i = 0; i < TRIALS; i++) trials.push(await trial(rig, client, transport.sessionId!, kind))
      return {
        trials: trials.length,
        errors: trials.reduce((sum, t) => sum + t.errors, 0),
        sessionMoved: distribution(trials.map((t) => t.movedMs)),
        toNextSuccessfulCall: distribution(trials.map((t) => t.failoverMs)),
      }
    } finally {
      await client.close()
    }
  } finally {
    await rig.stop()
  }
}

export async function benchFailover() {
  return {
    tool: 'whoami (readOnlyHint: retried on the new node)',
    hangDetection: { probeAfterMs: PROBE_AFTER_MS, probeTimeoutMs: PROBE_TIMEOUT_MS },
    crash: await measure('crash'),
    hang: await measure('hang'),
  }
}
