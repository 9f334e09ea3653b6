import { yamux } from '@chainsafe/libp2p-yamux'
import { type GossipSub, gossipsub } from '@libp2p/gossipsub'
import { createPeerScoreParams, createTopicScoreParams } from '@libp2p/gossipsub/score'
import type { Identify } from '@libp2p/identify'
import { identify } from '@libp2p/identify'
import type { ConnectionGater, Libp2p, PrivateKey } from '@libp2p/interface'
import { type KadDHT, kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { memory } from '@libp2p/memory'
import { type Ping, ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Logger } from 'pino'
import { toString as bytesToString } from 'uint8arrays/to-string'
import { BootstrapKeeper } from './bootstrap-keeper.ts'
import { ConnectionTrimmer, type ConnectionTrimOptions } from './connection-trimmer.ts'
import { verifyWithCachedKeys } from './ed25519-key-cache.ts'
import { errorMessage, NexusError } from './errors.ts'
import { ANNOUNCE_TOPIC, DEMAND_TOPIC, DHT_PROTOCOL } from './names.ts'
import { noiseWithWholeFrames } from './noise-whole-frames.ts'
import { libp2pComponentLogger } from './silent-libp2p-logger.ts'
import { TopicPeerKeeper, type TopicPeerKeeperOptions } from './topic-peer-keeper.ts'
import { sendWindowUpdatesAtHalfWindow } from './yamux-window-updates.ts'

/**
 * Streams one connection may carry each way. Every MCP session is a stream, so a gateway may hold thousands on
 * one node; yamux's default of 1,000 is too few, and when it runs out even libp2p's keep-alive ping cannot open
 * a stream, fails, and the connection monitor drops the connection with every session on it. Each protocol's
 * own limit (a node's session slots for the MCP protocol) still bounds what a peer may open.
 */
/** The most a session stream may have in flight towards a reader: what a paused session still receives. */
export const MAX_STREAM_WINDOW_BYTES = 2 * 1024 * 1024

export const MAX_STREAMS_PER_CONNECTION = 100_000

/**
 * How often libp2p's connection monitor pings each connection (both ends ping, each stream costs a multistream
 * negotiation: about a dozen small frames). Its default of 10 s made pings most of an idle network's traffic,
 * and the cost grows with the number of peers each one is connected to: 12 idle peers on loopback spent 0.08
 * cores on pings alone, and at 30 s the 100-peer bench (80 connections a peer) still spent a fifth of its CPU
 * on them (1.32–1.49 cores; 1.07–1.19 at 120 s). A hung node is found by its missed announcements (the
 * gateway's heartbeat check), not by pings; they remain the safety net for connections that died without a
 * close, and two minutes is well inside the shortest idle timeout NATs may apply to TCP (RFC 5382: 2 h 4 min).
 * The TCP transport closes a socket after 2 minutes without traffic; yamux's own keep-alive (one 12-byte frame
 * every 30 s, no stream) keeps an otherwise silent connection from that, not these pings.
 */
export const PING_INTERVAL_MS = 120_000

/**
 * How long a ping may take before its connection is aborted as dead. libp2p's adaptive default (at least 5 s)
 * counts a busy peer as a dead one: on a CPU-starved network (50 peers on 2 cores) pings timed out, the monitor
 * aborted connections (40–50 closed per peer in 90 s), and the redials' handshakes starved it further.
 */
export const PING_TIMEOUT_MS = 20_000

/**
 * New inbound connections accepted per second from one IP address, and handshakes in progress at once. The
 * defaults (5 per second, 10 pending) suit the public network, where one address is one peer; here the peers of
 * one cluster or NAT share an address, and nodes started together through one bootstrap peer were refused
 * until their back-off left some of them alone for a minute (the gossip bench, 50 peers on one machine).
 */
const INBOUND_CONNECTIONS_PER_SECOND_PER_HOST = 50
const MAX_PENDING_INBOUND_CONNECTIONS = 64

/**
 * Gossipsub's mesh, smaller than its defaults (D 6, 4–12, lazy 6): every mesh neighbour forwards every record once
 * more, so a peer receives each record about as many times as it has mesh neighbours, and copies were most of the
 * gossip CPU. With three, a 100-peer network delivered every record to every peer as with four. Peers accept grafts
 * up to the upper bound: at 5 they averaged 3.9 neighbours, at 4 (now: 2–4) 3.5. When a peer is pruned from a full
 * mesh, peer exchange offers it others (below). Gossip (IHAVE) goes to two peers outside the mesh per heartbeat,
 * not to a share of them all: with 60–70 connections a peer, gossipsub's default share (a quarter) made more
 * messages a second than the records themselves.
 */
const GOSSIP_MESH = { D: 3, Dlo: 2, Dhi: 4, Dscore: 1, Dout: 1, Dlazy: 2, gossipFactor: 0 }

/** Peers offered to a peer pruned from the mesh (gossipsub's default of 16 is a dial storm in a forming network). */
const PEER_EXCHANGE_PEERS = 4

/**
 * IDONTWANT (gossipsub 1.2) is sent to every mesh neighbour for each message above this size, to spare it a
 * copy. Records are 1–10 KiB and arrive within a millisecond by every path, so the copies are already on the
 * way when an IDONTWANT would go out: it only doubled the frames per record. Above any record's size.
 */
const IDONTWANT_MIN_BYTES = 256 * 1024

/** `memory` runs whole networks inside one process (tests); `tcp` is for real deployments. */
export type PeerTransport = 'tcp' | 'memory'

export interface PeerOptions {
  transport?: PeerTransport
  /** Multiaddrs to listen on; defaults to an ephemeral loopback TCP port or a unique memory address. */
  listen?: string[]
  /** Multiaddrs (with /p2p/<peer-id>) to join through; redialled with back-off whenever they drop. */
  bootstrap?: string[]
  privateKey?: PrivateKey
  /** Upper bound on open connections; the connection manager prunes the least useful beyond it. */
  maxConnections?: number
  /** Decides which peers and connections are allowed (an operator's deny list; partitions in tests). */
  connectionGater?: ConnectionGater
  logger?: Logger
  /** How many subscribers of the record topics to stay connected to (see TopicPeerKeeper); false: no keeper. */
  topicPeers?: Partial<TopicPeerKeeperOptions> | false
  /** When to close connections nobody uses (see ConnectionTrimmer); false: keep every connection. */
  connectionTrim?: Partial<ConnectionTrimOptions> | false
}

export type NexusServices = { identify: Identify; ping: Ping; pubsub: GossipSub; dht: KadDHT }
export type NexusPeer = Libp2p<NexusServices>

let memoryAddressCounter = 0

function defaultListen(transport: PeerTransport): string[] {
  if (transport === 'memory') return [`/memory/nexus-${process.pid}-${++memoryAddressCounter}-${Date.now()}`]
  return ['/ip4/127.0.0.1/tcp/0']
}

/**
 * Peer scoring for the record topics: delivering a record that fails validation costs a peer 10 points,
 * squared per count, so three forged records put it under gossipsub's graylist threshold (-80) and its
 * messages are then ignored. Records are rare, so slow mesh delivery is not punished, and peers on one
 * machine or behind one NAT (a cluster) are not punished for sharing an IP address.
 */
function recordTopicScoring() {
  const recordTopic = createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: 1_000,
    timeInMeshCap: 100,
    firstMessageDeliveriesWeight: 0.1,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 100,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: -10,
    invalidMessageDeliveriesDecay: 0.9,
  })
  return createPeerScoreParams({
    IPColocationFactorWeight: 0,
    topics: { [ANNOUNCE_TOPIC]: recordTopic, [DEMAND_TOPIC]: recordTopic },
  })
}

/**
 * Creates and starts the libp2p peer that nodes and gateways share: noise, yamux, identify, ping, gossipsub
 * with scoring, and a Kademlia DHT under the project's own protocol (never mixed with the public IPFS DHT).
 */
export async function createPeer(options: PeerOptions = {}): Promise<NexusPeer> {
  const transport = options.transport ?? 'tcp'
  sendWindowUpdatesAtHalfWindow()
  verifyWithCachedKeys()
  const bootstrap = (options.bootstrap ?? []).map((address) => {
    try {
      return multiaddr(address)
    } catch (err) {
      throw new NexusError('INVALID_CONFIG', `invalid bootstrap address ${address}: ${errorMessage(err)}`)
    }
  })
  const peer = await createLibp2p({
    privateKey: options.privateKey,
    logger: libp2pComponentLogger(),
    addresses: { listen: options.listen ?? defaultListen(transport) },
    transports: [transport === 'memory' ? memory() : tcp()],
    connectionEncrypters: [noiseWithWholeFrames()],
    streamMuxers: [
      yamux({
        maxInboundStreams: MAX_STREAMS_PER_CONNECTION,
        maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
        // A session that stops reading (back-pressure from a slow agent or server) receives at most one window
        // more; kept below the stream's read buffer limit (4 MiB), beyond which a paused stream is aborted.
        streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES },
      }),
    ],
    connectionManager: {
      maxConnections: options.maxConnections ?? 300,
      inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_SECOND_PER_HOST,
      maxIncomingPendingConnections: MAX_PENDING_INBOUND_CONNECTIONS,
    },
    connectionMonitor: {
      pingInterval: PING_INTERVAL_MS,
      pingTimeout: { minTimeout: PING_TIMEOUT_MS, maxTimeout: PING_TIMEOUT_MS },
    },
    connectionGater: options.connectionGater,
    services: {
      identify: identify(),
      // Two services ping a peer, possibly at once: libp2p's connection monitor, which drops the whole
      // connection (every session on it) when a ping fails, and the DHT checking its routing table. With
      // ping's default of one outbound stream, the second ping fails locally and takes the connection down.
      // Two is what the ping spec lets a listener accept.
      ping: ping({ maxOutboundStreams: 2 }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // Records go through the mesh; those wanted at once are flood-published (see `GossipRecords#publish`).
        floodPublish: false,
        // Every peer receives each record from several neighbours. Without a fast id, gossipsub verifies the
        // signature of every copy before it notices the duplicate; with it, only the first copy whose signature
        // verifies enters the cache, and later copies are dropped unverified. (from, seqno) names a record
        // uniquely: a forged copy fails verification and never enters the cache.
        fastMsgIdFn: (message) => fastMessageId(message.from, message.seqno),
        scoreParams: recordTopicScoring(),
        // A peer pruned from a full mesh is told of a few others to graft instead (peer exchange, with their
        // signed peer records), and takes such advice from any peer in good standing.
        doPX: true,
        prunePeers: PEER_EXCHANGE_PEERS,
        scoreThresholds: { acceptPXThreshold: 0 },
        ...GOSSIP_MESH,
        idontwantMinDataSize: IDONTWANT_MIN_BYTES,
      }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        // Nodes and gateways are reachable peers of a private network: serve queries, keep LAN addresses.
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        initialQuerySelfInterval: 100,
      }),
    },
  })
  if (options.topicPeers !== false) {
    const keeper = new TopicPeerKeeper(
      peer,
      [ANNOUNCE_TOPIC, DEMAND_TOPIC],
      options.topicPeers,
      options.logger,
    )
    keeper.start()
    peer.addEventListener('stop', () => keeper.stop(), { once: true })
  }
  const bootstrapKeeper =
    bootstrap.length > 0 ? new BootstrapKeeper(peer, bootstrap, options.logger) : undefined
  if (options.connectionTrim !== false) {
    const trimmer = new ConnectionTrimmer(peer, options.connectionTrim, {
      isProtected: (peerId) => bootstrapKeeper?.keeps(peerId) === true,
      meshPeers: () => [ANNOUNCE_TOPIC, DEMAND_TOPIC].flatMap((topic) => gossipMeshPeers(peer, topic)),
      logger: options.logger,
    })
    trimmer.start()
    peer.addEventListener('stop', () => trimmer.stop(), { once: true })
  }
  if (bootstrapKeeper !== undefined) {
    peer.addEventListener('stop', () => bootstrapKeeper.stop(), { once: true })
    await bootstrapKeeper.start()
  }
  return peer
}

const NO_BYTES = new Uint8Array(0)

function fastMessageId(from: Uint8Array | undefined, seqno: Uint8Array | undefined): string {
  return `${bytesToString(from ?? NO_BYTES, 'base64')}/${bytesToString(seqno ?? NO_BYTES, 'base16')}`
}

/** Gossipsub's score of a peer (negative once it delivered invalid records); 0 for peers it does not track. */
export function gossipScore(peer: NexusPeer, peerId: string): number {
  // The service implements getScore; its published interface does not declare it.
  const pubsub = peer.services.pubsub as unknown as { getScore(id: string): number }
  return pubsub.getScore(peerId)
}

/** The peers in this peer's gossipsub mesh of `topic`. */
export function gossipMeshPeers(peer: NexusPeer, topic: string): string[] {
  // The service implements getMeshPeers; its published interface does not declare it.
  const pubsub = peer.services.pubsub as unknown as { getMeshPeers(topic: string): string[] }
  return pubsub.getMeshPeers(topic)
}

/**
 * Whether gossipsub has its own stream to `peerId` open, so that a record published now reaches that peer. A peer's
 * subscription comes over the peer's stream, which can open before this one.
 */
export function gossipStreamOpenTo(peer: NexusPeer, peerId: string): boolean {
  // The service implements streamsOutbound; its published interface does not declare it.
  const pubsub = peer.services.pubsub as unknown as { streamsOutbound?: Map<string, unknown> }
  return pubsub.streamsOutbound?.has(peerId) === true
}
