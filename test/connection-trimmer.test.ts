import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { KEEP_ALIVE, type Libp2p, type Stream } from '@libp2p/interface'
import { memory } from '@libp2p/memory'
import { createLibp2p } from 'libp2p'
import t, { type Test } from 'tap'
import { ConnectionTrimmer } from '../protocol/connection-trimmer.ts'
import { waitFor } from './support/wait.ts'

/** A protocol of the test's own, standing for an MCP session: a connection carrying it is busy. */
const SESSION_PROTOCOL = '/test/session/1.0.0'
/** A stream of the network's upkeep (gossip): it does not make a connection busy. */
const GOSSIP_PROTOCOL = '/meshsub/1.2.0'

let addressCounter = 0

/** A plain libp2p peer over the memory transport: no DHT to tag its peers, so the test sets every tag itself. */
async function plainPeer(): Promise<Libp2p> {
  const peer = await createLibp2p({
    addresses: { listen: [`/memory/trimmer-${process.pid}-${++addressCounter}`] },
    transports: [memory()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  })
  const holdOpen = (stream: Stream) => {
    // Held open until the dialer closes its end, as a session or a gossip stream is.
    stream.addEventListener('remoteCloseWrite', () => void stream.close().catch(() => {}))
  }
  await peer.handle(SESSION_PROTOCOL, holdOpen)
  await peer.handle(GOSSIP_PROTOCOL, holdOpen)
  return peer
}

/** Closes a session stream and resolves once both ends have closed it (it then leaves its connection's list). */
async function endSession(stream: Stream): Promise<void> {
  await stream.close()
  await waitFor(() => stream.status === 'closed', stream, 'close', 5_000, 'the session stream to close')
}

interface Network {
  hub: Libp2p
  /** Peers the hub dialled, by name. */
  out: Record<string, Libp2p>
  /** Peers that dialled the hub. */
  inbound: Libp2p[]
  connected: (peer: Libp2p) => boolean
}

async function network(t: Test, outNames: string[], inboundCount: number): Promise<Network> {
  const hub = await plainPeer()
  t.teardown(() => hub.stop())
  const out: Record<string, Libp2p> = {}
  for (const name of outNames) {
    const peer = await plainPeer()
    t.teardown(() => peer.stop())
    await hub.dial(peer.getMultiaddrs()[0]!)
    out[name] = peer
  }
  const inbound: Libp2p[] = []
  for (let i = 0; i < inboundCount; i++) {
    const peer = await plainPeer()
    t.teardown(() => peer.stop())
    await peer.dial(hub.getMultiaddrs()[0]!)
    inbound.push(peer)
  }
  await waitFor(
    () => hub.getConnections().length === outNames.length + inboundCount,
    hub,
    'connection:open',
    10_000,
    'every connection at the hub',
  )
  const connected = (peer: Libp2p) => hub.getConnections(peer.peerId).some((c) => c.status === 'open')
  return { hub, out, inbound, connected }
}

/** A clock the test moves: real time (connections are stamped with it) plus a skew. */
function skewedClock() {
  let skewMs = 0
  return { now: () => Date.now() + skewMs, advance: (ms: number) => (skewMs += ms) }
}

t.test(
  'above the high-water mark, idle outbound connections are closed; kept-alive, mesh, bootstrap and busy ones stay',
  async (t) => {
    const names = ['keepAlive', 'routing', 'bootstrap', 'mesh', 'session', 'wasBusy', 'idle1', 'idle2']
    const { hub, out, inbound, connected } = await network(t, names, 2)
    await hub.peerStore.merge(out.keepAlive!.peerId, { tags: { [KEEP_ALIVE]: { value: 1 } } })
    // The DHT tags its closest peers keep-alive, and every peer of its routing table with a small value.
    await hub.peerStore.merge(out.keepAlive!.peerId, { tags: { 'kad-close': { value: 50 } } })
    await hub.peerStore.merge(out.routing!.peerId, { tags: { 'kad-peer': { value: 1 } } })
    const clock = skewedClock()
    const deps = {
      isProtected: (id: string) => id === out.bootstrap!.peerId.toString(),
      meshPeers: () => [out.mesh!.peerId.toString()],
      now: clock.now,
    }
    // Every connection carries a gossip stream, as in a real network: upkeep does not count as use.
    for (const peer of Object.values(out)) await hub.dialProtocol(peer.peerId, GOSSIP_PROTOCOL)
    const session = await hub.dialProtocol(out.session!.peerId, SESSION_PROTOCOL)
    const earlierSession = await hub.dialProtocol(out.wasBusy!.peerId, SESSION_PROTOCOL)

    const trimmer = new ConnectionTrimmer(hub, { highWater: 6, lowWater: 3, idleMs: 60_000 }, deps)
    await trimmer.trim()
    t.equal(trimmer.closed, 0, 'connections opened within idleMs are kept')

    clock.advance(30_000)
    await trimmer.trim() // notes that wasBusy carries a session now
    await endSession(earlierSession)
    clock.advance(31_000)

    const roomy = new ConnectionTrimmer(hub, { highWater: 10, lowWater: 3, idleMs: 60_000 }, deps)
    await roomy.trim()
    t.equal(roomy.closed, 0, 'at the high-water mark nothing is closed, however idle')

    await trimmer.trim()
    t.equal(trimmer.closed, 3, 'ten connections, high water 6: the three idle ones are closed')
    t.notOk(connected(out.idle1!), 'an idle connection is closed')
    t.notOk(connected(out.idle2!), 'another idle connection is closed')
    t.notOk(connected(out.routing!), 'a routing-table peer: the DHT does not need its connection open')
    for (const name of ['keepAlive', 'bootstrap', 'mesh', 'session'])
      t.ok(connected(out[name]!), `${name}: kept`)
    t.ok(connected(out.wasBusy!), 'a connection busy 31 s ago is not idle yet')
    for (const peer of inbound)
      t.ok(connected(peer), 'connections the other peer opened are its own to close')
    t.equal(hub.getConnections().length, 7, 'what is protected stays, though above the low-water mark')

    clock.advance(30_000)
    await trimmer.trim()
    t.equal(trimmer.closed, 4, 'a minute after its session ended, that connection is idle too')
    t.notOk(connected(out.wasBusy!))
    t.ok(connected(out.session!), 'a connection with a session open is never idle')
    t.equal(session.status, 'open', 'and its session is untouched')
  },
)

t.test('down to the low-water mark only: the least valued first, then the longest idle', async (t) => {
  const { hub, out, connected } = await network(t, ['older', 'routing', 'newer'], 0)
  await hub.peerStore.merge(out.routing!.peerId, { tags: { 'kad-peer': { value: 1 } } })
  const clock = skewedClock()
  // `routing` and `newer` carried a session until a moment ago; `older` has been idle since it opened.
  const routingSession = await hub.dialProtocol(out.routing!.peerId, SESSION_PROTOCOL)
  const observer = new ConnectionTrimmer(hub, { highWater: 3, lowWater: 3 }, { now: clock.now })
  await observer.trim()
  clock.advance(5_000)
  const newerSession = await hub.dialProtocol(out.newer!.peerId, SESSION_PROTOCOL)
  await observer.trim()
  await endSession(routingSession)
  await endSession(newerSession)
  clock.advance(70_000)

  const toTwo = new ConnectionTrimmer(hub, { highWater: 2, lowWater: 2, idleMs: 60_000 }, { now: clock.now })
  await toTwo.trim()
  t.equal(toTwo.closed, 1, 'three connections, low water 2: one closed')
  t.notOk(connected(out.older!), 'of two strangers, the one idle longest')
  const toOne = new ConnectionTrimmer(hub, { highWater: 1, lowWater: 1, idleMs: 60_000 }, { now: clock.now })
  await toOne.trim()
  t.notOk(connected(out.newer!), 'a stranger goes before a routing-table peer idle longer')
  t.ok(connected(out.routing!))
})

t.test('a connection that starts a session while the trimmer reads its tags is kept', async (t) => {
  const { hub, out, connected } = await network(t, ['racing', 'idle'], 0)
  const clock = skewedClock()
  const trimmer = new ConnectionTrimmer(
    hub,
    { highWater: 0, lowWater: 0, idleMs: 60_000 },
    { now: clock.now },
  )
  clock.advance(61_000)
  // The test plays a gateway opening a session on the connection at the moment the trimmer looks up its peer.
  const get = hub.peerStore.get.bind(hub.peerStore)
  let session: Stream | undefined
  hub.peerStore.get = async (peerId, options) => {
    if (peerId.equals(out.racing!.peerId))
      session ??= await hub.dialProtocol(out.racing!.peerId, SESSION_PROTOCOL)
    return get(peerId, options)
  }
  await trimmer.trim()
  if (session === undefined) throw new Error('the trimmer never looked up the racing peer')
  t.ok(connected(out.racing!), 'the connection is kept')
  t.equal(session.status, 'open', 'and the session on it works')
  t.notOk(connected(out.idle!), 'the other idle connection is closed')
  t.equal(trimmer.closed, 1)
})

t.test('started, it trims on its own until stopped', async (t) => {
  const { hub, out, connected } = await network(t, ['a', 'b'], 0)
  const trimmer = new ConnectionTrimmer(hub, { highWater: 1, lowWater: 1, idleMs: 0, intervalMs: 20 })
  trimmer.start()
  t.teardown(() => trimmer.stop())
  await waitFor(() => trimmer.closed === 1, hub, 'connection:close', 10_000, 'one idle connection closed')
  t.equal([out.a!, out.b!].filter(connected).length, 1, 'down to the low-water mark')
})

t.test('a low-water mark above the high-water mark is refused', async (t) => {
  const hub = await plainPeer()
  t.teardown(() => hub.stop())
  t.throws(() => new ConnectionTrimmer(hub, { highWater: 4, lowWater: 8 }), {
    name: 'RangeError',
    message: /lowWater \(8\) is above highWater \(4\)/,
  })
})
