/**
 * One process of the `gossip` bench: a group of peers (nodes, and gateways if asked) over TCP, joined through a
 * seed address, each reporting every announcement it accepts — which, from whom, and when — to the parent over
 * IPC in batches. Driven by `gossip-scale.ts`.
 *
 * `gossip-group.ts <nodes> <gateways> <announceIntervalMs> <trim | keep> <seed multiaddr | "">`: `keep` turns
 * connection trimming off; with no seed, the first node is the seed and its address is reported.
 */
import { writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import type { GossipSub } from '@libp2p/gossipsub'
import { NexusGateway } from '../../gateway/nexus-gateway.ts'
import type { AnnouncementCause } from '../../node/announcer.ts'
import { NexusNode } from '../../node/nexus-node.ts'
import type { Announcement } from '../../protocol/announcement.ts'
import { ANNOUNCE_TOPIC } from '../../protocol/names.ts'
import type { NexusPeer } from '../../protocol/peer.ts'
import { fixtureServerConfig } from '../../test/support/fixture-server.ts'
import { STALL_MIN_MS, type Stalls, StallWatch } from './stall-watch.ts'

/** A delivery: announcement key (`publisher/seq`), publisher, its timestamp, receiver, when accepted. */
export type Delivery = [key: string, publisher: string, timestamp: number, receiver: string, at: number]

export type GroupRequest =
  | { type: 'join' }
  | { type: 'leave' }
  /** CPU used (microseconds) and event-loop delay since the last `load`. */
  | { type: 'load' }
  /** Each peer's connections and announce-topic neighbours: why a peer misses announcements. */
  | { type: 'links' }
  /** Starts a V8 CPU profile of this process; `profile-stop` writes it to BENCH_PROFILE_DIR. */
  | { type: 'profile-start' }
  | { type: 'profile-stop' }
  | { type: 'stop' }
export type GroupReply =
  | { type: 'ready'; peers: string[]; seed: string }
  | { type: 'deliveries'; batch: Delivery[] }
  | { type: 'joined'; peerId: string; startedAt: number }
  | { type: 'left' }
  | {
      type: 'load'
      cpuMicros: number
      eventLoopDelayP99Ms: number
      /** Times the event loop stood still for `STALL_MIN_MS` or more, and how many ended with a major GC. */
      stalls: Stalls
      /** Announcements this group's nodes made since they started, by cause. */
      announcements: Record<AnnouncementCause, number>
      connections: { opened: number; closed: number }
      /** The least and most of V8's heap in use, sampled each second since the last `load`: the least is about
       * what survives a major collection, what every one of them has to mark. */
      heapUsedBytes: { least: number; most: number }
    }
  | { type: 'links'; peers: Record<string, PeerLinks> }
  | { type: 'profile'; file?: string }

/** A peer's links: libp2p connections, peers it knows subscribed to the announce topic, its mesh there. */
export interface PeerLinks {
  connections: number
  subscribers: number
  mesh: number
  /** Peers gossipsub counts as connected, and those it has a stream to send on (it cannot send to the rest). */
  gossipPeers: number
  outboundStreams: number
  /** Connections of this peer that closed since it started. */
  closedConnections: number
}

// Nodes host the fixture without starting a process until a session asks for one.
const SERVER = { ...fixtureServerConfig(), warmPool: 0 }
const FLUSH_MS = 200

const [nodeCount, gatewayCount, intervalMs, trimArg, seedArg] = process.argv.slice(2)
const send = (reply: GroupReply) => process.send!(reply)
let pending: Delivery[] = []
const flush = setInterval(() => {
  if (pending.length === 0) return
  send({ type: 'deliveries', batch: pending })
  pending = []
}, FLUSH_MS)

interface GossipsubInternals {
  getMeshPeers(topic: string): string[]
  peers: Map<string, unknown>
  streamsOutbound: Map<string, unknown>
}

const textDecoder = new TextDecoder()
const closedConnections = new Map<NexusPeer, number>()
/** Connections opened and closed by this group's peers since they started: churn makes newcomers. */
const churn = { opened: 0, closed: 0 }

function watch(peer: NexusPeer): void {
  const receiver = peer.peerId.toString()
  peer.addEventListener('connection:close', () => {
    churn.closed++
    closedConnections.set(peer, (closedConnections.get(peer) ?? 0) + 1)
  })
  peer.addEventListener('connection:open', () => churn.opened++)
  peer.services.pubsub.addEventListener('message', (evt) => {
    if (evt.detail.topic !== ANNOUNCE_TOPIC) return
    // The peer's own validator has checked the record against its schema; the bench reads the three fields it
    // needs, so that its bookkeeping does not add a second schema check per delivery to the network's CPU.
    const announcement = JSON.parse(textDecoder.decode(evt.detail.data)) as Announcement
    pending.push([
      `${announcement.peerId}/${announcement.seq}`,
      announcement.peerId,
      announcement.timestamp,
      receiver,
      Date.now(),
    ])
  })
}

/** `keep` (the bench's BENCH_GOSSIP_TRIM=0): every peer keeps every connection. */
const connectionTrim = trimArg === 'keep' ? (false as const) : undefined

const nodeConfig = (bootstrap: string[]) => ({
  transport: 'tcp' as const,
  connectionTrim,
  trust: { allowUnverified: true },
  bootstrap,
  announceIntervalMs: Number(intervalMs),
  servers: [SERVER],
})

const nodes: NexusNode[] = []
const gateways: NexusGateway[] = []
let seed = seedArg ?? ''
for (let i = 0; i < Number(nodeCount); i++) {
  const node = new NexusNode(nodeConfig(seed === '' ? [] : [seed]))
  await node.start()
  watch(node.peer)
  nodes.push(node)
  if (seed === '') seed = node.multiaddrs[0]!.toString()
}
for (let i = 0; i < Number(gatewayCount); i++) {
  const gateway = new NexusGateway({
    transport: 'tcp',
    bootstrap: [seed],
    connectionTrim,
    http: { port: 0 },
    trust: { allowUnverified: true },
    auth: { anonymous: true },
  })
  await gateway.start()
  watch(gateway.peer)
  gateways.push(gateway)
}
send({
  type: 'ready',
  seed,
  peers: [...nodes.map((n) => n.peerId), ...gateways.map((g) => g.peer.peerId.toString())],
})

const lag = monitorEventLoopDelay({ resolution: 10 })
lag.enable()
const stallWatch = new StallWatch(STALL_MIN_MS)
stallWatch.start()
let cpuSince = process.cpuUsage()
const heapUsed = { least: Infinity, most: 0 }
setInterval(() => {
  const used = getHeapStatistics().used_heap_size
  heapUsed.least = Math.min(heapUsed.least, used)
  heapUsed.most = Math.max(heapUsed.most, used)
}, 1_000).unref()
let joiner: NexusNode | undefined
const profiler = new Session()
profiler.connect()
process.on('message', async (request: GroupRequest) => {
  if (request.type === 'join') {
    // Through a random node of this group, as a new operator's node joins through whichever peer it knows.
    const through = nodes[Math.floor(Math.random() * nodes.length)]!
    joiner = new NexusNode(nodeConfig([through.multiaddrs[0]!.toString()]))
    const startedAt = Date.now()
    await joiner.start()
    send({ type: 'joined', peerId: joiner.peerId, startedAt })
  } else if (request.type === 'leave') {
    await joiner?.stop()
    joiner = undefined
    send({ type: 'left' })
  } else if (request.type === 'links') {
    const peers: Record<string, PeerLinks> = {}
    for (const peer of [...nodes.map((n) => n.peer), ...gateways.map((g) => g.peer)]) {
      // The service's class has these; the interface libp2p publishes for it does not declare them.
      const pubsub = peer.services.pubsub as GossipSub & GossipsubInternals
      peers[peer.peerId.toString()] = {
        connections: peer.getConnections().length,
        subscribers: pubsub.getSubscribers(ANNOUNCE_TOPIC).length,
        mesh: pubsub.getMeshPeers(ANNOUNCE_TOPIC).length,
        gossipPeers: pubsub.peers.size,
        outboundStreams: pubsub.streamsOutbound.size,
        closedConnections: closedConnections.get(peer) ?? 0,
      }
    }
    send({ type: 'links', peers })
  } else if (request.type === 'profile-start') {
    await profiler.post('Profiler.enable')
    await profiler.post('Profiler.start')
    send({ type: 'profile' })
  } else if (request.type === 'profile-stop') {
    const { profile } = await profiler.post('Profiler.stop')
    const file = join(process.env.BENCH_PROFILE_DIR ?? '.', `gossip-group-${process.pid}.cpuprofile`)
    await writeFile(file, JSON.stringify(profile))
    send({ type: 'profile', file })
  } else if (request.type === 'load') {
    const cpu = process.cpuUsage(cpuSince)
    cpuSince = process.cpuUsage()
    const announcements = { periodic: 0, change: 0, newcomers: 0, direct: 0 }
    for (const node of nodes)
      for (const [cause, count] of Object.entries(node.announcements))
        announcements[cause as AnnouncementCause] += count
    send({
      type: 'load',
      cpuMicros: cpu.user + cpu.system,
      eventLoopDelayP99Ms: lag.percentile(99) / 1e6,
      stalls: stallWatch.take(),
      announcements,
      connections: { ...churn },
      heapUsedBytes: { ...heapUsed },
    })
    lag.reset()
    heapUsed.least = Infinity
    heapUsed.most = 0
  } else {
    clearInterval(flush)
    stallWatch.stop()
    await joiner?.stop()
    await Promise.allSettled([...gateways.map((g) => g.stop()), ...nodes.map((n) => n.stop())])
    process.disconnect()
  }
})
