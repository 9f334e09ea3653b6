import { EventEmitter } from 'node:events'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import pino from 'pino'
import t, { type Test } from 'tap'
import { Announcer, periodicDelayMs } from '../node/announcer.ts'
import type { Announcement } from '../protocol/announcement.ts'
import type { GossipRecords } from '../protocol/gossip-records.ts'
import { ANNOUNCE_TOPIC, WIRE_VERSION } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'
import { waitFor } from './support/wait.ts'

// When a node announces for newcomers: a peer subscribing to the announcement topic for the first time gets
// the node's record soon, not at the next interval; a peer that an announcement reached lately does not, however
// often it subscribes again (each new connection between two peers sends the subscriptions anew). A node whose
// announcements reach the network hands the record to the newcomer alone; one whose announcements reach nobody
// (it is joining) publishes it. Gossipsub is played by an EventTarget, the topic by a recorder that says whom
// each announcement reached and which newcomers took a record handed to them.

const newPeerId = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
const [A, B, C] = [await newPeerId(), await newPeerId(), await newPeerId()]

function harness(intervalMs: number, random?: () => number) {
  // Gossipsub's own streams to peers, by peer id (`gossipStreamOpenTo`).
  const pubsub = Object.assign(new EventTarget(), { streamsOutbound: new Map<string, unknown>() })
  const peer = { services: { pubsub } } as unknown as NexusPeer
  const published = new EventEmitter()
  let count = 0
  let recipients: string[] = []
  // The topic also emits the records this node receives, as GossipRecords does.
  const floods: boolean[] = []
  /** Records handed to one peer each, in order, and which peers take them (all unless told). */
  const handed: { peerId: string; record: Announcement }[] = []
  let refusing = new Set<string>()
  const topic = Object.assign(new EventEmitter(), {
    sendDirect: async (peerId: string, data: Uint8Array) => {
      handed.push({ peerId, record: JSON.parse(new TextDecoder().decode(data)) })
      setImmediate(() => published.emit('handed'))
      return !refusing.has(peerId)
    },
    publish: async (_data: Uint8Array, options: { flood?: boolean } = {}) => {
      floods.push(options.flood === true)
      // Told once the announcer has taken the recipients in, as it does right after publishing.
      setImmediate(() => {
        count++
        published.emit('published')
      })
      return recipients
    },
  }) as unknown as GossipRecords<Announcement>
  const causes: string[] = []
  const body = (cause: string) => ({
    v: WIRE_VERSION,
    peerId: 'node',
    addrs: [],
    servers: [],
    resources: { cpu: 1, memoryMiB: 1 },
    load: { sessions: 0, capacity: 1, inFlight: 0 },
    draining: false,
    links: causes.push(cause) && undefined,
  })
  const announcer = new Announcer(peer, topic, body as never, intervalMs, pino({ level: 'silent' }), random)
  const subscribe = (peerId: string) =>
    pubsub.dispatchEvent(
      new CustomEvent('subscription-change', {
        detail: {
          peerId: peerIdFromString(peerId),
          subscriptions: [{ topic: ANNOUNCE_TOPIC, subscribe: true }],
        },
      }),
    )
  /** Resolves after the next announcement goes out. */
  const next = () => {
    const target = count + 1
    return waitFor(() => count >= target, published, 'published', 5_000, 'an announcement')
  }
  /** Resolves once `count` records in all have been handed to peers. */
  const handedOver = (count: number) =>
    waitFor(() => handed.length >= count, published, 'handed', 5_000, `${count} records handed over`)
  return {
    announcer,
    subscribe,
    next,
    handed,
    handedOver,
    /** The cause each record was built for, in order. */
    causes,
    /** Gossipsub opens its own stream to `peerId`. */
    openStream: (peerId: string) => pubsub.streamsOutbound.set(peerId, {}),
    refuse: (ids: string[]) => {
      refusing = new Set(ids)
    },
    reach: (ids: string[]) => {
      recipients = ids
    },
    count: () => count,
    published,
    /** Whether each announcement so far was flood-published. */
    floods,
    /** A record of `peerId`'s arrives, as its announcements do every `intervalMs`. */
    hear: (peerId: string, peerIntervalMs: number) =>
      topic.emit('record', { peerId, intervalMs: peerIntervalMs } as Announcement),
  }
}

/** A harness whose announcer has started and made its first announcement, which reached `reached`. */
async function started(t: Test, intervalMs: number, reached: string[], random?: () => number) {
  const h = harness(intervalMs, random)
  t.teardown(() => h.announcer.stop())
  h.reach(reached)
  const first = h.next()
  h.announcer.start()
  await first
  return h
}

/** Waits, announcement by announcement, until three intervals have passed since `since`. */
function threeIntervalsAfter(h: ReturnType<typeof harness>, since: number, intervalMs: number, what: string) {
  return waitFor(() => Date.now() - since >= 3 * intervalMs, h.published, 'published', 5_000, what)
}

t.test(
  'a first subscription brings the record soon; a repeated one from a peer it reached does not',
  async (t) => {
    const h = await started(t, 60_000, [A, B])
    t.equal(h.announcer.newcomers, 0)
    h.subscribe(A)
    t.equal(h.announcer.newcomers, 0, 'A, reached a moment ago, subscribing again is no newcomer')
    h.subscribe(C)
    t.equal(h.announcer.newcomers, 1, 'C, never reached, is')
    const before = h.count()
    await h.handedOver(1)
    t.same(
      h.handed.map((r) => r.peerId),
      [C],
      'the record is handed to C alone, well before the 60 s interval',
    )
    t.equal(h.count(), before, 'and not published: the network has this node’s record')
    t.equal(h.announcer.newcomers, 0, 'C took it')
    t.equal(h.announcer.counts.direct, 1, 'counted as handed over')
    h.subscribe(C)
    t.equal(h.announcer.newcomers, 0, 'C subscribing again is no newcomer either')
  },
)

t.test('a peer no announcement reached for three intervals is a newcomer again', async (t) => {
  const intervalMs = 100
  const h = await started(t, intervalMs, [A, B])
  const reachedA = Date.now()
  // A leaves: the periodic announcements reach B alone.
  h.reach([B])
  await threeIntervalsAfter(h, reachedA, intervalMs, 'three intervals of announcements without A')
  h.subscribe(A)
  t.equal(h.announcer.newcomers, 1, 'A may have forgotten the node: it gets an announcement soon')
  h.subscribe(B)
  t.equal(h.announcer.newcomers, 1, 'B, reached by the last one, does not')
})

t.test(
  'a newcomer that does not take the record is tried twice, and not again on its next subscription',
  async (t) => {
    const h = await started(t, 60_000, [A])
    h.refuse([C])
    h.subscribe(C)
    t.equal(h.announcer.newcomers, 1)
    await h.handedOver(2)
    t.same(
      h.handed.map((r) => r.peerId),
      [C, C],
      'handed twice',
    )
    t.equal(h.announcer.newcomers, 0, 'then given up (it gets records through others, or the next interval)')
    t.equal(h.announcer.counts.direct, 0, 'nothing counted as handed over')
    h.subscribe(C)
    t.equal(h.announcer.newcomers, 0, 'its subscribing again on another connection brings no third')
    t.equal(h.handed.length, 2)
  },
)

t.test(
  'a peer whose records arrived for a whole interval is no newcomer; one just heard from is',
  async (t) => {
    const intervalMs = 100
    const h = await started(t, intervalMs, [])
    h.hear(A, intervalMs)
    h.hear(B, intervalMs)
    // A's records keep arriving for more than one of this node's intervals; B's stop after the first.
    const since = Date.now()
    await waitFor(
      () => {
        h.hear(A, intervalMs)
        return Date.now() - since > intervalMs
      },
      h.published,
      'published',
      5_000,
      'an interval of records from A',
    )
    h.subscribe(A)
    t.equal(h.announcer.newcomers, 0, 'A, heard from all along, holds this node by the same paths')
    h.hear(C, intervalMs)
    h.subscribe(C)
    t.equal(h.announcer.newcomers, 1, 'C, heard from just now, may be joining: it is a newcomer')
    await threeIntervalsAfter(h, since, intervalMs, "three of B's intervals without its records")
    const before = h.announcer.newcomers
    h.subscribe(B)
    t.equal(h.announcer.newcomers, before + 1, 'B, silent for three of its intervals, is a newcomer again')
  },
)

t.test("a peer's own interval decides when its silence counts", async (t) => {
  const h = await started(t, 100, [])
  // A gateway reporting demand every 10 s is heard from rarely, and is still in the mesh.
  h.hear(A, 10_000)
  const since = Date.now()
  await waitFor(
    () => Date.now() - since >= 400,
    h.published,
    'published',
    5_000,
    'four of the node intervals',
  )
  h.subscribe(A)
  t.equal(h.announcer.newcomers, 0, 'heard 400 ms ago, well within three of its 10 s intervals')
})

t.test(
  'periodic announcements go through the mesh; the first, changes and newcomers are flooded',
  async (t) => {
    // Newcomers wait 100 ms and a change up to a quarter interval: both come before the next periodic one.
    const h = await started(t, 300, [])
    await h.next()
    await h.next()
    t.same(
      h.floods.slice(0, 3),
      [true, false, false],
      'the first at start is flooded, the periodic ones are not',
    )
    t.equal(h.announcer.counts.periodic, 2, 'counted as periodic')
    h.subscribe(C)
    const before = h.floods.length
    await h.next()
    t.equal(h.floods[before], true, 'the one for a newcomer is flooded')
    t.equal(h.announcer.counts.newcomers, 1, 'counted as for newcomers')
    h.announcer.announceSoon()
    await h.next()
    t.equal(h.floods.at(-1), true, 'a change is flooded')
  },
)

t.test(
  'the period is 80–100 % of the interval, drawn anew each time, so nodes put in phase drift apart',
  async (t) => {
    t.equal(
      periodicDelayMs(10_000, () => 0),
      10_000,
      'never later than the interval',
    )
    t.equal(
      periodicDelayMs(10_000, () => 1),
      8_000,
      'at most a fifth earlier',
    )
    const drawn = new Set(Array.from({ length: 50 }, () => periodicDelayMs(10_000)))
    t.ok(
      [...drawn].every((ms) => ms >= 8_000 && ms <= 10_000),
      'Math.random draws within those bounds',
    )
    t.ok(drawn.size > 40, 'and draws each period anew')

    // The announcer waits what was drawn. Timers never fire early, so with a draw of 80 % the next announcement
    // coming well before the interval shows the draw was used; a draw of 0 % waits (about) the whole interval.
    const intervalMs = 1_000
    for (const [random, shorter] of [
      [() => 1, true],
      [() => 0, false],
    ] as const) {
      const h = await started(t, intervalMs, [], random)
      const since = Date.now()
      await h.next()
      const period = Date.now() - since
      h.announcer.stop()
      if (shorter) t.ok(period < 0.96 * intervalMs, `drawn 80 %: next after ${period} ms`)
      else t.ok(period >= 0.9 * intervalMs, `drawn 100 %: next after ${period} ms`)
    }
  },
)

t.test(
  'a node whose announcements reach nobody publishes for its first newcomers, then hands its record over',
  async (t) => {
    // A joining node: its first announcement, at start, finds no peer subscribed yet.
    const h = await started(t, 60_000, [])
    h.reach([A])
    const published = h.count()
    h.subscribe(A)
    await h.next()
    t.equal(h.count(), published + 1, 'A, its first peer, brings an announcement to the whole network')
    t.equal(h.announcer.counts.newcomers, 1)
    t.equal(h.floods.at(-1), true, 'flooded, as the network does not have this node’s record yet')
    t.equal(h.handed.length, 0, 'nothing handed over')
    h.subscribe(B)
    await h.handedOver(1)
    t.same(
      h.handed.map((r) => r.peerId),
      [B],
      'B, the next, gets the record handed over: the last announcement reached a peer',
    )
    t.equal(h.count(), published + 1, 'and nothing more is published')
    t.equal(h.causes.at(-1), 'direct', 'built as a record for one peer (a node puts all its links in it)')
    const [record] = h.handed.map((r) => r.record)
    t.ok(record!.seq > 0 && record!.intervalMs === 60_000, 'a whole record, with its own sequence number')
  },
)

t.test('newcomers subscribing together share one record', async (t) => {
  const h = await started(t, 60_000, [A])
  h.subscribe(B)
  h.subscribe(C)
  await h.handedOver(2)
  t.same(h.handed.map((r) => r.peerId).sort(), [B, C].sort(), 'one each')
  t.equal(h.handed[0]!.record.seq, h.handed[1]!.record.seq, 'the same record')
  t.equal(h.causes.filter((c) => c === 'direct').length, 1, 'built once')
})

t.test(
  'a joining node announces for a newcomer at once when gossipsub can reach it, after 100 ms when not yet',
  async (t) => {
    const h = await started(t, 60_000, [])
    const before = h.floods.length
    h.subscribe(A)
    // The check phase of this turn comes before the timers of the next: a 100 ms timer cannot have fired.
    await new Promise(setImmediate)
    t.equal(h.floods.length, before, 'no stream of its own to A yet: it waits')
    h.reach([A])
    await h.next()
    t.equal(h.announcer.counts.newcomers, 1, 'then announces')

    const j = await started(t, 60_000, [])
    const published = j.floods.length
    j.openStream(B)
    j.reach([B])
    j.subscribe(B)
    await new Promise(setImmediate)
    t.equal(j.floods.length, published + 1, 'a stream to B open: announced within the same turn')
    t.equal(j.announcer.counts.newcomers, 1)
  },
)

t.test(
  'a record for newcomers that reached nobody does not hold the next one back for the 1 s gap',
  async (t) => {
    // A joining node whose first record found no stream to anyone: the gap is there to spare the network records,
    // and this one cost it nothing.
    const h = await started(t, 60_000, [])
    const before = h.floods.length
    h.openStream(A)
    h.subscribe(A)
    await new Promise(setImmediate)
    t.equal(h.floods.length, before + 2, 'published, reached nobody, and published again in the same turn')
    t.equal(h.announcer.counts.newcomers, 2)
    t.equal(h.announcer.newcomers, 0, 'then A is given up on, as after any two misses')
  },
)
