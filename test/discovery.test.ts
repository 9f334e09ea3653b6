import { once } from 'node:events'
import t from 'tap'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { type Announcement, encodeAnnouncement } from '../protocol/announcement.ts'
import { ANNOUNCE_TOPIC, WIRE_VERSION } from '../protocol/names.ts'
import { createPeer, gossipScore, type NexusPeer } from '../protocol/peer.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { floodPublish } from './support/flood-publish.ts'
import { waitFor } from './support/wait.ts'

// Stdio servers with no warm pool: twenty nodes host the fixture without starting a process until asked.
const idleFixture = { ...fixtureServerConfig(), warmPool: 0 }
const NODES = 18
const GATEWAYS = 3

const network = await startNetwork({
  nodes: NODES,
  gateways: GATEWAYS,
  servers: [idleFixture],
  joinThrough: 'first-node',
  readyTimeoutMs: 30_000,
})
t.teardown(network.stop)

function hostCount(gateway: NexusGateway): number {
  return gateway.view.hostsOf('conformance').length
}

t.test(`${NODES + GATEWAYS} peers: every gateway's view converges on every node`, async (t) => {
  // Converged: a moment when every gateway sees every node, checked at each change of any gateway's view (a
  // view that was complete may lose a host for a moment while nodes start on a busy machine).
  const allComplete = () => network.gateways.every((g) => hostCount(g) === NODES)
  await Promise.any(
    network.gateways.map((g) =>
      waitFor(allComplete, g.view, 'change', 20_000, 'every gateway to see every node'),
    ),
  )
  for (const [i, gateway] of network.gateways.entries()) {
    t.equal(hostCount(gateway), NODES, `gateway ${i} sees all ${NODES} nodes`)
    t.equal(gateway.view.announcements.counts.rejected, 0, `gateway ${i} rejected no honest announcement`)
  }
  const host = network.gateway.view.hostsOf('conformance')[0]!
  t.match(host.server, { id: 'conformance', manifestHash: /^0x[0-9a-f]{64}$/, freeSlots: 256 })
  t.match(host.load, { capacity: 256, inFlight: 0 })
})

t.test('a gateway that joins late, with gossip off, finds hosts through the DHT alone', async (t) => {
  // Providing takes a DHT query per record; wait until some node's record is in.
  await Promise.any(
    network.nodes.map((node) => waitFor(() => node.providedServers.size > 0, node, 'provided', 60_000)),
  )
  const late = new NexusGateway({
    transport: 'memory',
    bootstrap: [network.nodes[NODES - 1]!.multiaddrs[0]!],
    http: { port: 0 },
    trust: { allowUnverified: true },
    auth: { anonymous: true },
    // A fresh peer's first DHT query waits for its routing table; give it time on a busy test machine.
    discovery: { gossip: false, dhtLookupTimeoutMs: 60_000 },
  })
  await late.start()
  t.teardown(() => late.stop())
  t.equal(hostCount(late), 0, 'gossip told it nothing')
  const hosts = await late.view.findHosts('conformance')
  t.ok(hosts.length > 0, `the DHT named ${hosts.length} hosts`)
  t.ok(
    hosts.every((h) => h.source === 'dht'),
    'all of them from provider records',
  )
  const { client } = await connectStreamable(late.serverUrl('conformance'))
  t.teardown(() => client.close())
  const result = await client.callTool({ name: 'test_simple_text', arguments: {} })
  t.match(result, { content: [{ type: 'text' }] }, 'a session through the DHT-found node works')
})

t.test(
  'forged, replayed, stale and malformed announcements are refused; the forger is scored down',
  async (t) => {
    const gateway = network.gateway
    const rogue = await createPeer({
      transport: 'memory',
      bootstrap: [gateway.peer.getMultiaddrs()[0]!.toString()],
    })
    t.teardown(() => rogue.stop())
    const rogueId = rogue.peerId.toString()
    const victim = network.nodes[0]!.peerId
    const now = Date.now()
    const record = (overrides: Partial<Announcement>): Uint8Array =>
      encodeAnnouncement({
        v: WIRE_VERSION,
        peerId: rogueId,
        addrs: [],
        servers: [
          {
            id: 'rogue',
            version: '1.0.0',
            manifestHash: `0x${'a'.repeat(64)}`,
            sessions: 0,
            freeSlots: 10,
          },
        ],
        load: { sessions: 0, capacity: 10, inFlight: 0, cpu: 0, memory: 0 },
        draining: false,
        intervalMs: 60_000,
        seq: 100,
        timestamp: now,
        ...overrides,
      })

    // An honest record of its own is accepted: the baseline.
    await publishUntilSeen(rogue, gateway, record({}), () => gateway.view.hostsOf('rogue').length === 1)
    t.equal(gateway.view.hostsOf('rogue').length, 1, 'its own record is accepted')

    await publishUntilSeen(rogue, gateway, record({ seq: 50, servers: [] }), (i) =>
      /sequence number 50/.test(i?.reason ?? ''),
    )
    t.equal(gateway.view.hostsOf('rogue').length, 1, 'a replayed older sequence number changes nothing')

    await publishUntilSeen(rogue, gateway, record({ seq: 200, timestamp: now - 60_000, servers: [] }), (i) =>
      /stale/.test(i?.reason ?? ''),
    )
    t.equal(gateway.view.hostsOf('rogue').length, 1, 'a stale record changes nothing')

    const scoreBefore = gossipScore(gateway.peer, rogueId)
    await publishUntilSeen(
      rogue,
      gateway,
      record({ peerId: victim, seq: Number.MAX_SAFE_INTEGER, draining: true }),
      (i) => i?.result === 'reject' && /signed by/.test(i.reason),
    )
    t.ok(
      gateway.view.hostsOf('conformance').some((h) => h.peerId === victim),
      'a record forged for another node does not touch that node',
    )
    await publishUntilSeen(
      rogue,
      gateway,
      record({ seq: 300, timestamp: now + 60_000 }),
      (i) => i?.result === 'reject' && /future/.test(i.reason),
    )
    await publishUntilSeen(
      rogue,
      gateway,
      new TextEncoder().encode('{"not":"an announcement"}'),
      (i) => i?.result === 'reject' && /malformed/.test(i.reason),
    )
    // Scores are cached for a heartbeat interval; on a busy machine overdue heartbeats come back to back, so
    // count time, not heartbeats.
    const deadline = Date.now() + 10_000
    while (gossipScore(gateway.peer, rogueId) >= scoreBefore && Date.now() < deadline)
      await once(gateway.peer.services.pubsub, 'gossipsub:heartbeat')
    t.ok(
      gossipScore(gateway.peer, rogueId) < scoreBefore,
      `the sender of invalid records is scored down (${scoreBefore} → ${gossipScore(gateway.peer, rogueId)})`,
    )
  },
)

/**
 * Publishes until the gateway has judged the record: `judged` says from the view or from the reason the
 * validator gave. A record sent before gossipsub has its stream to the gateway open goes nowhere, so it is
 * sent again at each gossipsub heartbeat until it lands.
 */
async function publishUntilSeen(
  rogue: NexusPeer,
  gateway: NexusGateway,
  data: Uint8Array,
  judged: (invalid?: { from: string; result: string; reason: string }) => boolean,
): Promise<void> {
  const rogueId = rogue.peerId.toString()
  let done = false
  const seen = new Promise<void>((resolve, reject) => {
    const onChange = () => check(undefined)
    const onInvalid = (invalid: { from: string; result: string; reason: string }) => {
      if (invalid.from === rogueId) check(invalid)
    }
    const check = (invalid?: { from: string; result: string; reason: string }) => {
      if (!judged(invalid)) return
      cleanup()
      done = true
      resolve()
    }
    const cleanup = () => {
      clearTimeout(timer)
      gateway.view.off('change', onChange)
      gateway.view.announcements.off('invalid', onInvalid)
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error('the gateway never judged the record'))
    }, 30_000)
    gateway.view.on('change', onChange)
    gateway.view.announcements.on('invalid', onInvalid)
  })
  // Published again every heartbeat until judged: on a busy machine a message can be lost, and a record the
  // gateway already judged is judged again the same way.
  for (let attempt = 0; attempt < 30 && !done; attempt++) {
    await floodPublish(rogue, ANNOUNCE_TOPIC, data).catch(() => {})
    await Promise.race([once(rogue.services.pubsub, 'gossipsub:heartbeat'), seen.catch(() => {})])
  }
  await seen
}
