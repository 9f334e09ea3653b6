import type { SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Logger } from 'pino'
import { type Announcement, encodeAnnouncement } from '../protocol/announcement.ts'
import { type GossipRecords, nextSeq } from '../protocol/gossip-records.ts'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'

/**
 * How many announcements may pass before a newcomer that none of them reached directly is given up on. A
 * newcomer not reached directly (gossipsub had no stream to it yet) mostly gets the record through its other
 * peers; five tries made every such peer cost the whole network five records.
 */
const NEWCOMER_ATTEMPTS = 2
/** The first announcement for newcomers waits this long, so that one covers a burst of subscriptions. */
const NEWCOMER_DELAY_MS = 100
/**
 * At most one announcement per this gap for newcomers' sake. Every announcement is a record for the whole
 * network, and while a network forms every peer is a newcomer to every node: unbounded, that is N² records
 * each verified by N peers.
 */
const NEWCOMER_GAP_MS = 1_000
/**
 * A peer that subscribed, or that an announcement reached directly, within this many intervals (the time a
 * record stays fresh) is no newcomer when it subscribes again, on a new connection or after a reconnect.
 */
const STILL_HOLDS_INTERVALS = 3
/** At most one announcement per this gap (or a quarter interval) on change: each costs every peer a verification. */
const MIN_GAP_MS = 500

export type AnnouncementBody = Omit<Announcement, 'seq' | 'timestamp' | 'intervalMs'>

/**
 * Publishes this node's announcement periodically, and at once when something changed or a peer newly
 * subscribed, so a gateway that just joined does not wait a whole interval to learn about this node.
 */
export class Announcer {
  readonly #peer: NexusPeer
  readonly #topic: GossipRecords<Announcement>
  readonly #build: () => AnnouncementBody
  readonly #intervalMs: number
  readonly #logger: Logger
  #timer: NodeJS.Timeout | undefined
  #scheduled = false
  #seq = 0
  #lastAnnouncedAt = 0
  #stopped = true
  /** Peers that just subscribed and that no announcement reached yet, with the announcements tried since. */
  readonly #newcomers = new Map<string, number>()
  #newcomerTimer: NodeJS.Timeout | undefined
  /** Sees every announcement this node makes (gossipsub does not deliver a peer's own records to it). */
  onAnnounce: ((announcement: Announcement) => void) | undefined
  #lastForNewcomersAt = 0
  /**
   * When each peer last subscribed or an announcement last reached it directly. Without it every new connection
   * between two peers (the DHT's, the topic-peer keeper's, a reconnect) made each node announce again for the
   * whole network: in a forming 50-peer network, two to three times the periodic records.
   */
  readonly #reachedAt = new Map<string, number>()
  readonly #onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>) => {
    if (!evt.detail.subscriptions.some((s) => s.topic === ANNOUNCE_TOPIC && s.subscribe)) return
    const peerId = evt.detail.peerId.toString()
    const now = Date.now()
    const known = this.#stillHolds(peerId, now)
    // Seen now: whether an announcement reaches it directly or through others, it is a newcomer once.
    this.#reachedAt.set(peerId, now)
    if (known) return
    this.#newcomers.set(peerId, 0)
    this.#scheduleForNewcomers()
  }

  constructor(
    peer: NexusPeer,
    topic: GossipRecords<Announcement>,
    build: () => AnnouncementBody,
    intervalMs: number,
    logger: Logger,
  ) {
    this.#peer = peer
    this.#topic = topic
    this.#build = build
    this.#intervalMs = intervalMs
    this.#logger = logger
  }

  start(): void {
    this.#stopped = false
    this.#peer.services.pubsub.addEventListener('subscription-change', this.#onSubscriptionChange)
    this.#timer = setInterval(() => void this.announce(), this.#intervalMs)
    this.announceSoon()
  }

  /**
   * Coalesces bursts of changes into one announcement, at most one per `minGapMs`: every peer verifies the
   * signature of every announcement, so a node with busy session churn must not flood the network.
   */
  announceSoon(): void {
    if (this.#scheduled || this.#stopped) return
    this.#scheduled = true
    const minGapMs = Math.min(MIN_GAP_MS, this.#intervalMs / 4)
    const wait = Math.max(0, this.#lastAnnouncedAt + minGapMs - Date.now())
    setTimeout(() => {
      this.#scheduled = false
      void this.announce()
    }, wait)
  }

  async announce(): Promise<void> {
    if (this.#stopped) return
    this.#lastAnnouncedAt = Date.now()
    this.#seq = nextSeq(this.#seq)
    const announcement: Announcement = {
      ...this.#build(),
      intervalMs: this.#intervalMs,
      seq: this.#seq,
      timestamp: Date.now(),
    }
    this.onAnnounce?.(announcement)
    let recipients: string[] = []
    try {
      recipients = await this.#topic.publish(encodeAnnouncement(announcement))
    } catch (err) {
      this.#logger.debug({ err }, 'announcement not published')
    }
    this.#settleNewcomers(recipients)
  }

  /**
   * A peer's subscription can arrive before gossipsub has its own stream to that peer open, and a record
   * published then does not reach it. Newcomers that this announcement reached are done; the others wait for
   * the next one, which comes within a second. One that missed both still gets the next periodic record, and
   * gossipsub's gossip offers it the recent ones.
   */
  #settleNewcomers(recipients: string[]): void {
    const now = Date.now()
    for (const [peerId] of this.#reachedAt) if (!this.#stillHolds(peerId, now)) this.#reachedAt.delete(peerId)
    for (const peerId of recipients) {
      this.#reachedAt.set(peerId, now)
      this.#newcomers.delete(peerId)
    }
    for (const [peerId, attempts] of this.#newcomers) {
      if (attempts + 1 >= NEWCOMER_ATTEMPTS) this.#newcomers.delete(peerId)
      else this.#newcomers.set(peerId, attempts + 1)
    }
    this.#scheduleForNewcomers()
  }

  /** Peers that subscribed and wait for an announcement to reach them. */
  get newcomers(): number {
    return this.#newcomers.size
  }

  #stillHolds(peerId: string, now: number): boolean {
    const at = this.#reachedAt.get(peerId)
    return at !== undefined && now - at < STILL_HOLDS_INTERVALS * this.#intervalMs
  }

  #scheduleForNewcomers(): void {
    if (this.#newcomerTimer !== undefined || this.#stopped || this.#newcomers.size === 0) return
    const wait = Math.max(NEWCOMER_DELAY_MS, this.#lastForNewcomersAt + NEWCOMER_GAP_MS - Date.now())
    this.#newcomerTimer = setTimeout(() => {
      this.#newcomerTimer = undefined
      this.#lastForNewcomersAt = Date.now()
      void this.announce()
    }, wait)
  }

  stop(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    clearTimeout(this.#newcomerTimer)
    this.#peer.services.pubsub.removeEventListener('subscription-change', this.#onSubscriptionChange)
  }
}
