import type { SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Logger } from 'pino'
import type { Announcement } from '../protocol/announcement.ts'
import type { GossipRecords } from '../protocol/gossip-records.ts'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import { gossipStreamOpenTo, type NexusPeer } from '../protocol/peer.ts'
import { Newcomers, STILL_HOLDS_INTERVALS } from './newcomers.ts'

/**
 * An announcement for newcomers waits this long, so that one covers a burst of subscriptions, unless gossipsub
 * has its stream to a newcomer open already: then it goes out at once (the node is joining, and every peer
 * waits for its record). A subscription can arrive before that stream is open, and a record published then
 * does not reach the newcomer.
 */
const NEWCOMER_DELAY_MS = 100
/**
 * At most one announcement per this gap for newcomers' sake. Every announcement is a record for the whole
 * network, and while a network forms every peer is a newcomer to every node: unbounded, that is N² records
 * each verified by N peers.
 */
const NEWCOMER_GAP_MS = 1_000
/** A record handed to newcomers one by one waits this long: one record covers the subscriptions of a burst. */
const HAND_OVER_DELAY_MS = 20

/** What the greeter needs of the node's announcer. */
export interface GreeterAnnouncer {
  /** Publishes an announcement for newcomers to the whole network. */
  announceForNewcomers(): Promise<void>
  /** A fresh record of this node's for one newcomer, with a sequence number of its own. */
  recordForNewcomer(): Uint8Array
}

/**
 * Gives a peer that newly subscribed this node's record at once, so that a gateway that just joined does not wait
 * a whole interval to learn about this node: handed to it alone (`GossipRecords#sendDirect`) while this node's
 * announcements reach the network, published to the whole network while they do not (the node is joining, or
 * was cut off, and the network needs its record too). Publishing for every newcomer made each join cost the
 * network one record per node the newcomer connected to: at 100 peers 4–10 records, each verified by every
 * peer, in the same second as the newcomer's own (0.4–1.1 CPU-seconds on two cores, delaying it). `Newcomers`
 * decides who counts as a newcomer; this decides when and how it gets the record.
 */
export class NewcomerGreeter {
  readonly #peer: NexusPeer
  readonly #topic: GossipRecords<Announcement>
  readonly #announcer: GreeterAnnouncer
  readonly #intervalMs: number
  readonly #logger: Logger
  readonly #newcomers: Newcomers
  #stopped = true
  /**
   * When a published announcement of this node's last reached a peer. Within `STILL_HOLDS_INTERVALS` of that,
   * the network holds its record: a publish that finds no stream open yet (a subscription can come first)
   * does not make the node a stranger again; a node cut off for that long is one.
   */
  #reachedPeersAt = Number.NEGATIVE_INFINITY
  /** When this node last published for newcomers: at most one such record per `NEWCOMER_GAP_MS`. */
  #lastPublishedAt = Number.NEGATIVE_INFINITY
  /** An announcement or hand-over for the waiting newcomers is scheduled. */
  #due = false
  #timer: NodeJS.Timeout | undefined
  /** Newcomers a record is being handed to now. */
  readonly #handingTo = new Set<string>()
  /** Records handed to a newcomer that took it. */
  handedOver = 0
  readonly #onRecord = (record: Pick<Announcement, 'peerId' | 'intervalMs'>) => this.#newcomers.heard(record)
  readonly #onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>) => {
    if (!evt.detail.subscriptions.some((s) => s.topic === ANNOUNCE_TOPIC && s.subscribe)) return
    if (this.#newcomers.subscribed(evt.detail.peerId.toString())) this.#schedule()
  }

  constructor(
    peer: NexusPeer,
    topic: GossipRecords<Announcement>,
    announcer: GreeterAnnouncer,
    intervalMs: number,
    logger: Logger,
  ) {
    this.#peer = peer
    this.#topic = topic
    this.#announcer = announcer
    this.#intervalMs = intervalMs
    this.#logger = logger
    this.#newcomers = new Newcomers(intervalMs)
  }

  start(): void {
    this.#stopped = false
    this.#peer.services.pubsub.addEventListener('subscription-change', this.#onSubscriptionChange)
    this.#topic.on('record', this.#onRecord)
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#peer.services.pubsub.removeEventListener('subscription-change', this.#onSubscriptionChange)
    this.#topic.off('record', this.#onRecord)
  }

  /** Peers that subscribed and wait for the record to reach them. */
  get waiting(): number {
    return this.#newcomers.size
  }

  /** An announcement of this node's went out to the network and reached `recipients` directly. */
  published(recipients: string[]): void {
    if (recipients.length > 0) this.#reachedPeersAt = Date.now()
    // A record that reached nobody cost the network nothing: the next one for newcomers need not wait the gap.
    // (A joining node's first one can find gossipsub's stream not open yet; the gap made it wait a second.)
    else this.#lastPublishedAt = Number.NEGATIVE_INFINITY
    this.#newcomers.announced(recipients)
    this.#schedule()
  }

  /** Takes note of a record this node received from a peer, on any topic (announcements are noted by themselves). */
  heard(record: { peerId: string; intervalMs: number }): void {
    this.#newcomers.heard(record)
  }

  #schedule(): void {
    if (this.#due || this.#stopped || this.#newcomers.size === 0) return
    this.#due = true
    let wait = HAND_OVER_DELAY_MS
    let greet = () => this.#handOver()
    if (!this.#inNetwork()) {
      const reachable = this.#newcomers.waiting.some((peerId) => gossipStreamOpenTo(this.#peer, peerId))
      wait = Math.max(reachable ? 0 : NEWCOMER_DELAY_MS, this.#lastPublishedAt + NEWCOMER_GAP_MS - Date.now())
      greet = () => {
        this.#lastPublishedAt = Date.now()
        return this.#announcer.announceForNewcomers()
      }
    }
    const run = () => {
      this.#timer = undefined
      this.#due = false
      if (!this.#stopped) void greet()
    }
    // At once means after the other subscriptions of the same message (an event each) have been taken in.
    if (wait === 0) queueMicrotask(run)
    else this.#timer = setTimeout(run, wait)
  }

  /** Hands a fresh record to each waiting newcomer on its own; nobody else receives it. */
  async #handOver(): Promise<void> {
    const peers = this.#newcomers.waiting.filter((peerId) => !this.#handingTo.has(peerId))
    if (peers.length === 0) return
    for (const peerId of peers) this.#handingTo.add(peerId)
    let taken: boolean[] = []
    try {
      const data = this.#announcer.recordForNewcomer()
      taken = await Promise.all(peers.map((peerId) => this.#topic.sendDirect(peerId, data)))
    } catch (err) {
      this.#logger.error({ err }, 'records not handed to newcomers')
    } finally {
      for (const peerId of peers) this.#handingTo.delete(peerId)
    }
    const reached = new Set(peers.filter((_, i) => taken[i]))
    this.handedOver += reached.size
    this.#newcomers.handedOver(peers, reached)
    this.#schedule()
  }

  #inNetwork(): boolean {
    return Date.now() - this.#reachedPeersAt < STILL_HOLDS_INTERVALS * this.#intervalMs
  }
}
