import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import t from 'tap'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import { createPeer, type NexusPeer } from '../protocol/peer.ts'
import { TopicPeerKeeper } from '../protocol/topic-peer-keeper.ts'
import { waitFor } from './support/wait.ts'

/** Resolves once `check()` holds, tested at each subscription change the peer hears of. */
function untilSubscriptions(peer: NexusPeer, check: () => boolean, what: string): Promise<void> {
  return waitFor(check, peer.services.pubsub, 'subscription-change', 20_000, what)
}

t.test('a peer joined through one hub dials the subscribers it knows until it has enough', async (t) => {
  // A hub, and three peers the hub does not know (so the joiner's DHT cannot find them through it), all following
  // the announce topic; none has a keeper of its own.
  const hub = await createPeer({ transport: 'memory', topicPeers: false })
  t.teardown(() => hub.stop())
  const hubAddress = hub.getMultiaddrs()[0]!.toString()
  const others: NexusPeer[] = []
  for (let i = 0; i < 3; i++) {
    const other = await createPeer({ transport: 'memory', topicPeers: false })
    t.teardown(() => other.stop())
    other.services.pubsub.subscribe(ANNOUNCE_TOPIC)
    others.push(other)
  }
  hub.services.pubsub.subscribe(ANNOUNCE_TOPIC)
  const joiner = await createPeer({ transport: 'memory', bootstrap: [hubAddress], topicPeers: false })
  t.teardown(() => joiner.stop())
  const keeper = new TopicPeerKeeper(joiner, [ANNOUNCE_TOPIC], { target: 4, dialsPerCheck: 2 })
  const subscribers = () => keeper.subscribers() ?? 0

  await keeper.check()
  t.equal(keeper.dials, 0, 'a peer that follows none of the topics dials nobody')

  joiner.services.pubsub.subscribe(ANNOUNCE_TOPIC)
  await untilSubscriptions(joiner, () => subscribers() >= 1, 'the hub to subscribe')
  // The test plays the DHT's part: its answers put the other peers' addresses in the peer store.
  for (const other of others)
    await joiner.peerStore.merge(other.peerId, { multiaddrs: other.getMultiaddrs() })
  // An address that does not answer: its dial fails, and the keeper goes on with the others.
  const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  await joiner.peerStore.merge(absent, { multiaddrs: [multiaddr('/memory/nobody-listens-here')] })

  const connectedTo = () => others.filter((o) => joiner.getPeers().some((id) => id.equals(o.peerId))).length
  t.equal(connectedTo(), 0, 'at first the joiner is connected to the hub alone')
  await keeper.check()
  t.equal(keeper.dials, 2, 'one check dials at most dialsPerCheck peers')
  // Each check dials what the joiner lacks of four connected peers; the absent peer may take one of the dials.
  for (let i = 0; i < 3 && connectedTo() < 3; i++) await keeper.check()
  await untilSubscriptions(joiner, () => subscribers() >= 4, 'four connected subscribers')
  t.equal(connectedTo(), 3, 'the joiner is connected to every peer it knew')
  t.ok(keeper.dials <= 4, `no known peer was dialled twice (${keeper.dials} dials)`)

  const before = keeper.dials
  await keeper.check()
  t.equal(keeper.dials, before, 'with enough subscribers it dials nobody')
})

t.test('a peer that could not be dialled is not dialled again before redialAfterMs', async (t) => {
  const joiner = await createPeer({ transport: 'memory', topicPeers: false })
  t.teardown(() => joiner.stop())
  joiner.services.pubsub.subscribe(ANNOUNCE_TOPIC)
  const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  await joiner.peerStore.merge(absent, { multiaddrs: [multiaddr('/memory/nobody-listens-here-either')] })
  const keeper = new TopicPeerKeeper(joiner, [ANNOUNCE_TOPIC], { target: 2, redialAfterMs: 60_000 })
  await keeper.check()
  t.equal(keeper.dials, 1, 'the known peer was dialled')
  t.equal(joiner.getConnections().length, 0, 'and the dial failed')
  await keeper.check()
  await keeper.check()
  t.equal(keeper.dials, 1, 'later checks wait out redialAfterMs instead of hammering it')
})
