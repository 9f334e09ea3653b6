import { once } from 'node:events'
import pino from 'pino'
import t, { type Test } from 'tap'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { type Announcement, decodeAnnouncement, encodeAnnouncement } from '../protocol/announcement.ts'
import {
  DIRECT_RECORD_TIMEOUT_MS,
  MAX_DIRECT_RECORD_BYTES,
  MAX_DIRECT_RECORD_STREAMS,
} from '../protocol/direct-records.ts'
import { encodeFrame } from '../protocol/framing.ts'
import { DEFAULT_FRESHNESS, GossipRecords } from '../protocol/gossip-records.ts'
import { ANNOUNCE_DIRECT_PROTOCOL, ANNOUNCE_TOPIC, WIRE_VERSION } from '../protocol/names.ts'
import { createPeer, type NexusPeer } from '../protocol/peer.ts'
import { startNetwork } from '../testing/network.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { waitFor } from './support/wait.ts'

// A peer hands another one record of its own over a stream of its own (a node greeting a newcomer), outside
// gossipsub: real libp2p peers over the in-memory transport, real announcement topics. Then what a peer may send
// on that protocol, and a node network in which a late gateway learns the nodes from records handed to it alone.

const silent = pino({ level: 'silent' })

interface Peer {
  peer: NexusPeer
  id: string
  topic: GossipRecords<Announcement>
  records: Announcement[]
}

async function startPeer(t: Test, bootstrap?: Peer): Promise<Peer> {
  const peer = await createPeer({
    transport: 'memory',
    bootstrap: bootstrap === undefined ? [] : [bootstrap.peer.getMultiaddrs()[0]!.toString()],
  })
  const topic = new GossipRecords(peer, ANNOUNCE_TOPIC, decodeAnnouncement, DEFAULT_FRESHNESS, silent, {
    directProtocol: ANNOUNCE_DIRECT_PROTOCOL,
  })
  const records: Announcement[] = []
  topic.on('record', (record) => records.push(record))
  topic.start()
  t.teardown(async () => {
    topic.stop()
    await peer.stop()
  })
  return { peer, id: peer.peerId.toString(), topic, records }
}

function announcement(peerId: string, overrides: Partial<Announcement> = {}): Announcement {
  return {
    v: WIRE_VERSION,
    peerId,
    addrs: [],
    servers: [],
    load: { sessions: 0, capacity: 10, inFlight: 0, cpu: 0, memory: 0 },
    draining: false,
    intervalMs: 60_000,
    seq: 1_000,
    timestamp: Date.now(),
    ...overrides,
  }
}

const [a, b, c] = await (async () => {
  const a = await startPeer(t)
  const b = await startPeer(t, a)
  const c = await startPeer(t, b)
  return [a, b, c]
})()
await waitFor(() => a.peer.getConnections(b.peer.peerId).length > 0, a.peer, 'connection:open', 10_000)
await waitFor(() => c.peer.getConnections(b.peer.peerId).length > 0, c.peer, 'connection:open', 10_000)

/** Resolves with the next record or invalid verdict `peer`'s topic sees. */
function nextVerdict(peer: Peer) {
  return new Promise<{ record?: Announcement; invalid?: { result: string; reason: string } }>((resolve) => {
    const onRecord = (record: Announcement) => done({ record })
    const onInvalid = (invalid: { result: string; reason: string }) => done({ invalid })
    const done = (verdict: { record?: Announcement; invalid?: { result: string; reason: string } }) => {
      peer.topic.off('record', onRecord)
      peer.topic.off('invalid', onInvalid)
      resolve(verdict)
    }
    peer.topic.on('record', onRecord)
    peer.topic.on('invalid', onInvalid)
  })
}

/**
 * Publishes `data` from A until `seen()` holds. A record published before gossipsub has its stream to a peer
 * open goes nowhere, so it is published again at each of A's gossipsub heartbeats.
 */
async function publishUntil(data: Uint8Array, seen: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!seen()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await a.topic.publish(data, { flood: true })
    const heartbeat = once(a.peer.services.pubsub, 'gossipsub:heartbeat')
    await Promise.race([heartbeat, once(b.topic, 'record'), once(c.topic, 'record')])
  }
}

t.test('a record handed to one peer reaches it, and goes no further', async (t) => {
  const verdict = nextVerdict(b)
  const handed = encodeAnnouncement(announcement(a.id, { seq: 5_000 }))
  t.equal(await a.topic.sendDirect(b.id, handed), true, 'the peer took it')
  t.match((await verdict).record, { peerId: a.id, seq: 5_000 }, 'and its topic emitted it')
  t.equal(b.topic.directCounts.accepted, 1)
  // Gossip still works beside it, and the next record C sees of A's is the one published after the handed
  // one: B did not pass the handed record on.
  const published = encodeAnnouncement(announcement(a.id, { seq: 6_000 }))
  await publishUntil(published, () => c.records.length > 0, 'a published record at C')
  t.equal(c.records[0]!.seq, 6_000, 'C first saw the published record, never the handed one')
  t.equal(c.topic.directCounts.accepted, 0)
})

t.test('a handed record does not stop the sender’s earlier gossiped record at the receiver', async (t) => {
  // The receiver got a newer record by hand; the gossiped one published before it must still be accepted (and
  // so forwarded), as it would have been without the hand-over.
  await a.topic.sendDirect(b.id, encodeAnnouncement(announcement(a.id, { seq: 9_000 })))
  const earlier = encodeAnnouncement(announcement(a.id, { seq: 8_000 }))
  const before = b.records.length
  await publishUntil(
    earlier,
    () => b.records.some((r, i) => i >= before && r.seq === 8_000),
    'the earlier gossiped record at B',
  )
  t.equal(b.topic.directCounts.accepted, 2, 'accepted after the newer handed one')
})

t.test('a peer hands over only its own records: a forged one is refused', async (t) => {
  const verdict = nextVerdict(b)
  const forged = encodeAnnouncement(announcement(c.id, { draining: true, seq: Number.MAX_SAFE_INTEGER }))
  t.equal(await a.topic.sendDirect(b.id, forged), false, 'the sender sees it refused')
  t.match((await verdict).invalid, { result: 'reject', reason: /signed by/ })
  t.equal(b.topic.directCounts.rejected, 1)
  t.notOk(
    b.records.some((r) => r.peerId === c.id && r.draining),
    'the record forged for C touched nothing',
  )
})

t.test('stale and malformed handed records are not accepted', async (t) => {
  let verdict = nextVerdict(b)
  const stale = encodeAnnouncement(announcement(a.id, { timestamp: Date.now() - 60_000 }))
  t.equal(await a.topic.sendDirect(b.id, stale), true, 'a stale record is ignored, not refused')
  t.match((await verdict).invalid, { result: 'ignore', reason: /stale/ })
  verdict = nextVerdict(b)
  const malformed = new TextEncoder().encode('{"not":"an announcement"}')
  t.equal(await a.topic.sendDirect(b.id, malformed), false)
  t.match((await verdict).invalid, { result: 'reject', reason: /malformed/ })
})

t.test('a record goes only over a connection there is: no peer is dialled for it', async (t) => {
  const d = await startPeer(t)
  const dialsBefore = a.peer.getConnections().length
  t.equal(await a.topic.sendDirect(d.id, encodeAnnouncement(announcement(a.id))), false)
  t.equal(a.peer.getConnections().length, dialsBefore, 'no connection was opened')
  t.equal(d.topic.directCounts.accepted, 0)
})

t.test('a peer that does not take direct records (gossip off) refuses the stream', async (t) => {
  const peer = await createPeer({ transport: 'memory', bootstrap: [a.peer.getMultiaddrs()[0]!.toString()] })
  t.teardown(() => peer.stop())
  const topic = new GossipRecords(peer, ANNOUNCE_TOPIC, decodeAnnouncement, DEFAULT_FRESHNESS, silent, {
    directProtocol: ANNOUNCE_DIRECT_PROTOCOL,
  })
  topic.start({ subscribe: false })
  t.teardown(() => topic.stop())
  await waitFor(() => a.peer.getConnections(peer.peerId).length > 0, a.peer, 'connection:open', 10_000)
  t.equal(await a.topic.sendDirect(peer.peerId.toString(), encodeAnnouncement(announcement(a.id))), false)
})

t.test('hostile streams: oversized, silent and too many at once', async (t) => {
  const connection = a.peer.getConnections(b.peer.peerId)[0]!
  const accepted = b.topic.directCounts.accepted

  // A frame over the limit: the receiver resets the stream once it reads the length, before buffering it.
  const oversized = await connection.newStream(ANNOUNCE_DIRECT_PROTOCOL)
  const lengthOnly = encodeFrame(new Uint8Array(MAX_DIRECT_RECORD_BYTES + 1)).subarray(0, 4)
  oversized.send(lengthOnly)
  const [closed] = await once(oversized, 'close')
  t.ok((closed as { error?: Error }).error, 'the oversized record’s stream was reset')

  // Streams that send nothing take the limit of open streams; one more is refused at once, and each is closed
  // by the receiver after its timeout.
  const silentStreams = await Promise.all(
    Array.from({ length: MAX_DIRECT_RECORD_STREAMS }, () => connection.newStream(ANNOUNCE_DIRECT_PROTOCOL)),
  )
  const ends = silentStreams.map((stream) => once(stream, 'close'))
  // The receiver's limit resets a stream it cannot take, once negotiated, or refuses it during negotiation.
  // (A stream reset during negotiation comes back already closed.)
  const refused = await connection.newStream(ANNOUNCE_DIRECT_PROTOCOL).then(
    async (stream) =>
      stream.status === 'open'
        ? ((await once(stream, 'close'))[0] as { error?: Error }).error
        : new Error(`the stream came back ${stream.status}`),
    (err: Error) => err,
  )
  t.ok(refused, `a stream beyond the limit is refused (${refused?.message})`)
  t.ok(
    silentStreams.every((stream) => stream.status === 'open'),
    'at once: the silent streams are still open',
  )
  const closes = (await Promise.all(ends)).map(([event]) => event as { error?: Error })
  t.ok(
    closes.every((event) => event.error !== undefined),
    `the receiver reset the silent streams after its ${DIRECT_RECORD_TIMEOUT_MS} ms`,
  )
  t.equal(b.topic.directCounts.accepted, accepted, 'nothing was accepted from them')

  // And the protocol still works for an honest record.
  t.equal(await a.topic.sendDirect(b.id, encodeAnnouncement(announcement(a.id, { seq: 20_000 }))), true)
})

t.test(
  'a gateway joining a settled network gets the nodes’ records handed to it, not published',
  async (t) => {
    // A long interval: a record the gateway receives in this test came for it, not with a periodic announcement.
    const network = await startNetwork({
      nodes: 2,
      gateways: 1,
      servers: [{ ...fixtureServerConfig(), warmPool: 0 }],
      node: { announceIntervalMs: 60_000 },
    })
    t.teardown(network.stop)
    // Settled: the first gateway holds both nodes' records, so each node's announcements have reached a peer.
    await waitFor(
      () => network.gateway.view.hostsOf('conformance').length === 2,
      network.gateway.view.announcements,
      'record',
      20_000,
      'both nodes in the first gateway’s view',
    )
    const published = network.nodes.map((node) => node.announcements.newcomers)
    const late = new NexusGateway({
      transport: 'memory',
      bootstrap: network.nodes.map((node) => node.multiaddrs[0]!),
      http: { port: 0 },
      trust: { allowUnverified: true },
      auth: { anonymous: true },
    })
    await late.start()
    t.teardown(() => late.stop())
    await waitFor(
      () => late.view.hostsOf('conformance').length === 2,
      late.view.announcements,
      'record',
      20_000,
      'both nodes in the late gateway’s view',
    )
    t.equal(late.view.announcements.directCounts.accepted, 2, 'both records were handed to it')
    t.same(
      network.nodes.map((node) => node.announcements.newcomers),
      published,
      'no node published an announcement for it',
    )
  },
)
