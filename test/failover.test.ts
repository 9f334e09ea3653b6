import { once } from 'node:events'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import t, { type Test } from 'tap'
import type { FailoverEvent } from '../gateway/gateway-session.ts'
import { GatewayErrorCode } from '../gateway/jsonrpc.ts'
import { NexusNode } from '../node/nexus-node.ts'
import { startNetwork, type TestNetwork } from '../testing/network.ts'
import { connectStreamable, startSlowCall } from './support/clients.ts'
import { failoverServerConfig, fixtureHttpServerConfig } from './support/fixture-server.ts'
import { waitFor } from './support/wait.ts'

const failoverFixture = failoverServerConfig()

const textOf = (result: unknown) => (result as { content: { text: string }[] }).content[0]!.text

async function twoNodeNetwork(t: Test): Promise<TestNetwork> {
  const network = await startNetwork({
    nodes: 2,
    servers: [failoverFixture],
    gateway: { failover: { probeAfterMs: 300, probeTimeoutMs: 300 } },
    node: { drainTimeoutMs: 2_000 },
  })
  t.teardown(network.stop)
  return network
}

function nodeOf(network: TestNetwork, client: { sessionId?: string }): NexusNode {
  const peerId = network.gateway.sessions.get(client.sessionId!)!.nodePeerId
  return network.nodes.find((n) => n.peerId === peerId)!
}

/** Starts a read-only and a non-idempotent call; resolves once both run on the server (first progress). */
async function startBothCalls(client: Client) {
  const read = startSlowCall(client, 'slow_read', 1_500)
  const write = startSlowCall(client, 'slow_write', 1_500)
  await Promise.all([read.running, write.running])
  return { read: read.outcome, write: write.outcome }
}

async function checkFailover(t: Test, network: TestNetwork, breakNode: (node: NexusNode) => void) {
  const { client, transport } = await connectStreamable(network.gateway.serverUrl('failover'))
  t.teardown(() => client.close())
  await client.listTools() // the gateway learns which tools are safe to run again
  const sessionId = transport.sessionId!
  const first = nodeOf(network, transport)
  const firstPeerId = first.peerId
  const { read, write } = await startBothCalls(client)
  const moved = once(network.gateway, 'failover') as Promise<[FailoverEvent]>
  breakNode(first)
  const [event] = await moved
  t.equal(event.from, firstPeerId, 'the session left the broken node')
  const readResult = await read
  t.ok(readResult.ok, 'the read-only call completed on the other node')
  if (readResult.ok) t.match(textOf(readResult.value), /slow_read done/)
  const writeResult = await write
  t.notOk(writeResult.ok, 'the call with effects was not run again')
  if (!writeResult.ok) {
    t.type(writeResult.error, McpError)
    t.equal((writeResult.error as McpError).code, GatewayErrorCode.NodeFailed)
    t.match((writeResult.error as McpError).message, /may or may not have been executed/)
  }
  t.equal(transport.sessionId, sessionId, 'the agent keeps its session id')
  t.not(
    network.gateway.sessions.get(sessionId)!.nodePeerId,
    firstPeerId,
    'the session now lives on the other node',
  )
  t.match(
    textOf(await client.callTool({ name: 'whoami', arguments: {} })),
    /pid \d+/,
    'and it goes on working',
  )
  t.equal(event.retried, 1)
  t.equal(event.failed, 1)
}

t.test(
  'a node killed mid-session: read-only calls complete elsewhere, the others get a clear error',
  async (t) => {
    const network = await twoNodeNetwork(t)
    await checkFailover(t, network, (node) => void node.crash())
  },
)

t.test('a session whose only host dies waits for a new host instead of ending', async (t) => {
  const network = await startNetwork({ nodes: 1, servers: [failoverFixture] })
  t.teardown(network.stop)
  const { client, transport } = await connectStreamable(network.gateway.serverUrl('failover'))
  t.teardown(() => client.close())
  await client.listTools()
  const moved = once(network.gateway, 'failover') as Promise<[FailoverEvent]>
  await network.nodes[0]!.crash()
  // Nothing hosts the server now; a node joins a moment later, within failover.takeoverTimeoutMs.
  const replacement = new NexusNode({
    transport: 'memory',
    trust: { allowUnverified: true },
    servers: [failoverFixture],
    bootstrap: [network.gateway.peer.getMultiaddrs()[0]!.toString()],
  })
  await replacement.start()
  t.teardown(() => replacement.stop())
  const [event] = await moved
  t.equal(event.to, replacement.peerId, 'the session moved to the node that came')
  t.match(textOf(await client.callTool({ name: 'whoami', arguments: {} })), /pid \d+/, 'and goes on')
  t.ok(network.gateway.sessions.has(transport.sessionId!), 'with its session id')
})

t.test('a hung node (it stops reading its streams): the gateway notices and moves the session', async (t) => {
  const network = await twoNodeNetwork(t)
  await checkFailover(t, network, (node) => node.simulateHang())
})

t.test(
  'a node shutting down drains: its sessions finish their calls, then move without an error',
  async (t) => {
    const network = await twoNodeNetwork(t)
    const { client, transport } = await connectStreamable(network.gateway.serverUrl('failover'))
    t.teardown(() => client.close())
    await client.listTools()
    const first = nodeOf(network, transport)
    const firstPeerId = first.peerId
    const call = client.callTool({ name: 'slow_write', arguments: { ms: 500 } })
    const moved = once(network.gateway, 'failover') as Promise<[FailoverEvent]>
    const stopped = first.stop()
    t.match(textOf(await call), /slow_write done/, 'the call in flight finished on the draining node')
    const [event] = await moved
    t.match(event, { from: firstPeerId, reason: { code: 'NODE_DRAINING' }, retried: 0, failed: 0 })
    await stopped
    t.match(
      textOf(await client.callTool({ name: 'whoami', arguments: {} })),
      /pid \d+/,
      'the session goes on',
    )
  },
)

t.test('two gateways, many sessions: load spreads over the nodes, a full node is skipped', async (t) => {
  const server = fixtureHttpServerConfig('spread')
  const network = await startNetwork({
    nodes: [
      { servers: [server], maxSessions: 2 },
      { servers: [server], maxSessions: 100 },
      { servers: [server], maxSessions: 100 },
    ],
    gateways: 2,
  })
  t.teardown(network.stop)
  const refusals: string[] = []
  for (const node of network.nodes) node.on('session-refused', ({ code }) => refusals.push(code))
  const clients: Client[] = []
  t.teardown(() => Promise.all(clients.map((c) => c.close())))
  const SESSIONS = 40
  for (let i = 0; i < SESSIONS; i++) {
    const gateway = network.gateways[i % 2]!
    const { client } = await connectStreamable(gateway.serverUrl('spread'))
    clients.push(client)
    await client.callTool({ name: 'test_simple_text', arguments: {} })
  }
  const distribution = network.nodes.map((n) => n.sessions.size)
  t.comment(`sessions per node (capacities 2, 100, 100): ${distribution.join(', ')}`)
  t.equal(
    distribution.reduce((a, b) => a + b, 0),
    SESSIONS,
    'every session was placed',
  )
  t.ok(distribution[0]! <= 2, 'the small node was never above its capacity')
  t.ok(distribution[1]! >= 10 && distribution[2]! >= 10, 'the two large nodes share the rest between them')
  t.comment(`refusals: ${refusals.length} (${[...new Set(refusals)].join(', ') || 'none'})`)
  t.ok(refusals.length <= 2, 'a full node is skipped rather than asked again and again')
})

t.test('gateways publish demand reports that nodes receive', async (t) => {
  const network = await startNetwork({
    nodes: 1,
    servers: [fixtureHttpServerConfig('demand')],
    gateway: { demandIntervalMs: 200 },
  })
  t.teardown(network.stop)
  const { client } = await connectStreamable(network.gateway.serverUrl('demand'))
  t.teardown(() => client.close())
  for (let i = 0; i < 5; i++) await client.callTool({ name: 'test_simple_text', arguments: {} })
  const node = network.nodes[0]!
  const report = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no demand report with calls arrived')), 10_000)
    const check = () => {
      const found = node
        .demandReports()
        .find(
          (r) =>
            r.peerId === network.gateway.peer.peerId.toString() && r.servers.some((s) => s.callsPerSec > 0),
        )
      if (found === undefined) return
      clearTimeout(timer)
      node.peer.services.pubsub.removeEventListener('message', check)
      resolve(found)
    }
    node.peer.services.pubsub.addEventListener('message', check)
  })
  t.match(report, { servers: [{ id: 'demand', sessions: 1 }] }, 'the report counts the session and its calls')
})

t.test(
  'a partition between the gateway and a node: sessions move, then heal and route to it again',
  async (t) => {
    const network = await twoNodeNetwork(t)
    const gateway = network.gateway
    const { client, transport } = await connectStreamable(gateway.serverUrl('failover'))
    t.teardown(() => client.close())
    await client.listTools()
    const cutOff = nodeOf(network, transport)
    const other = network.nodes.find((n) => n !== cutOff)!

    const moved = once(gateway, 'failover') as Promise<[FailoverEvent]>
    network.partition(gateway, cutOff)
    const [event] = await moved
    t.match(event, { from: cutOff.peerId, to: other.peerId }, 'the session moved off the unreachable node')
    t.match(textOf(await client.callTool({ name: 'whoami', arguments: {} })), /pid \d+/, 'and goes on')

    const during: Client[] = []
    t.teardown(() => Promise.all(during.map((c) => c.close())))
    for (let i = 0; i < 3; i++) {
      const opened = await connectStreamable(gateway.serverUrl('failover'))
      during.push(opened.client)
      await opened.client.callTool({ name: 'whoami', arguments: {} })
      t.equal(nodeOf(network, opened.transport), other, `session ${i + 1} opened during the partition works`)
    }

    network.heal()
    // The gateway needs the node's announcements again (its own redial, or gossip relayed by the other node).
    await waitForHost(network, cutOff)
    const after = await connectStreamable(gateway.serverUrl('failover'))
    t.teardown(() => after.client.close())
    await after.client.callTool({ name: 'whoami', arguments: {} })
    t.equal(
      nodeOf(network, after.transport),
      cutOff,
      'after healing, the gateway routes a new session to the node again (it is the less loaded one)',
    )
  },
)

/** Resolves once the gateway knows the node as a host again and is connected to it. */
function waitForHost(network: TestNetwork, node: NexusNode, timeoutMs = 90_000): Promise<void> {
  const gateway = network.gateway
  return waitFor(
    () =>
      gateway.view.hostsOf('failover').some((h) => h.peerId === node.peerId) &&
      gateway.peer.getConnections().some((c) => c.remotePeer.toString() === node.peerId),
    gateway.view,
    'change',
    timeoutMs,
    `the gateway to reach ${node.peerId} again`,
  )
}
