import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { errorMessage } from './errors.ts'
import type { NexusPeer } from './peer.ts'

export interface TopicPeerKeeperOptions {
  /** Connected subscribers of each topic to keep: above gossipsub's mesh degree, so a prune leaves others. */
  target: number
  /** How often to count them. */
  intervalMs: number
  /** Dials started per check, at most. */
  dialsPerCheck: number
  /** A peer dialled lately is not dialled again before this (it may be down, or have just refused us). */
  redialAfterMs: number
  dialTimeoutMs: number
}

export const TOPIC_PEER_DEFAULTS: TopicPeerKeeperOptions = {
  target: 6,
  intervalMs: 1_000,
  dialsPerCheck: 2,
  redialAfterMs: 30_000,
  dialTimeoutMs: 10_000,
}

/** Gossipsub's protocol ids start with this; a peer whose protocols are known and lack it is not dialled. */
const MESHSUB_PREFIX = '/meshsub/'

/**
 * Keeps this peer connected to enough subscribers of the gossip topics it follows for gossipsub to build its mesh.
 *
 * Gossipsub meshes only with peers it is already connected to, and libp2p dials nobody on its own. A peer that
 * joined through one bootstrap peer was connected to it alone for many seconds (the DHT's walks connect slowly),
 * and once the bootstrap peer, grafted by everyone who joined through it, pruned it (with gossipsub's minute of
 * back-off), it received only the bootstrap peer's own records: in the discovery test's 21-peer network a
 * gateway's view fell from 18 hosts to 1 for seconds at a time, and CI failed on it. The peer store already held
 * the other peers' addresses (from the DHT's answers), so while fewer than `target` connected peers subscribe
 * and it is connected to fewer than `target` peers at all, this dials a few peers it knows.
 */
export class TopicPeerKeeper {
  readonly #peer: NexusPeer
  readonly #topics: string[]
  readonly #options: TopicPeerKeeperOptions
  readonly #logger: Logger | undefined
  /** When each peer was last dialled by this keeper. */
  readonly #dialledAt = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined
  #checking = false
  /** Dials this keeper started, for tests and the operator's logs. */
  dials = 0

  constructor(
    peer: NexusPeer,
    topics: string[],
    options: Partial<TopicPeerKeeperOptions> = {},
    logger?: Logger,
  ) {
    this.#peer = peer
    this.#topics = topics
    this.#options = { ...TOPIC_PEER_DEFAULTS, ...options }
    this.#logger = logger
  }

  start(): void {
    this.#timer = setInterval(() => void this.check(), this.#options.intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
  }

  /**
   * Connected subscribers of the least followed of the topics this peer subscribes to; undefined when it
   * subscribes to none of them (a gateway with gossip off has no mesh to keep).
   */
  subscribers(): number | undefined {
    const pubsub = this.#peer.services.pubsub
    const subscribed = pubsub.getTopics().filter((topic) => this.#topics.includes(topic))
    if (subscribed.length === 0) return undefined
    return Math.min(...subscribed.map((topic) => pubsub.getSubscribers(topic).length))
  }

  /** Counts the topics' connected subscribers and, when too few, dials some known peers; resolves when dialled. */
  async check(): Promise<void> {
    if (this.#checking || this.#peer.status !== 'started') return
    // Connected peers whose subscriptions have not arrived yet count too: on a busy network gossipsub opens its
    // streams slowly, and dialling more peers then only adds handshakes (the 50-peer gossip bench lost ground).
    // So a peer with enough connections, the usual case, is done without counting subscribers.
    const connected = this.#connectedPeers().size
    if (connected >= this.#options.target) return
    const subscribers = this.subscribers()
    if (subscribers === undefined) return
    const missing = this.#options.target - Math.max(subscribers, connected)
    if (missing <= 0) return
    this.#checking = true
    try {
      const candidates = await this.#candidates()
      const chosen = candidates.slice(0, Math.min(missing, this.#options.dialsPerCheck))
      await Promise.all(chosen.map((id) => this.#dial(id)))
    } finally {
      this.#checking = false
    }
  }

  /** Known peers with an address, not connected, not dialled lately, that may speak gossipsub; shuffled. */
  async #candidates(): Promise<PeerId[]> {
    const self = this.#peer.peerId
    const connected = this.#connectedPeers()
    const now = Date.now()
    const known = await this.#peer.peerStore.all()
    const candidates = known
      .filter((p) => {
        const id = p.id.toString()
        if (p.id.equals(self) || connected.has(id) || p.addresses.length === 0) return false
        if (now - (this.#dialledAt.get(id) ?? -Infinity) < this.#options.redialAfterMs) return false
        // Peers met only through the DHT have no protocols recorded yet: they may well be gossip peers.
        return p.protocols.length === 0 || p.protocols.some((protocol) => protocol.startsWith(MESHSUB_PREFIX))
      })
      .map((p) => p.id)
    for (let i = candidates.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1))
      ;[candidates[i], candidates[j]] = [candidates[j]!, candidates[i]!]
    }
    return candidates
  }

  /**
   * Ids of the peers this one is connected to. Not `getPeers()`: that parses every connected peer's id anew from
   * its string (a base58 decode each), and at 100 peers this check, once a second on every peer, was 2 % of all
   * CPU in the gossip bench.
   */
  #connectedPeers(): Set<string> {
    return new Set(this.#peer.getConnections().map((c) => c.remotePeer.toString()))
  }

  async #dial(id: PeerId): Promise<void> {
    this.#dialledAt.set(id.toString(), Date.now())
    this.dials++
    try {
      await this.#peer.dial(id, { signal: AbortSignal.timeout(this.#options.dialTimeoutMs) })
    } catch (err) {
      this.#logger?.debug({ peer: id.toString(), err: errorMessage(err) }, 'gossip peer unreachable')
    }
  }
}
