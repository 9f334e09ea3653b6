import type { SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Logger } from 'pino'
import { type Announcement, encodeAnnouncement } from '../protocol/announcement.ts'
import { type GossipRecords, nextSeq } from '../protocol/gossip-records.ts'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'

const NEWCOMER_RETRIES = 20
const NEWCOMER_RETRY_MS = 50

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
  /** Peers that just subscribed and have not been sent an announcement yet. */
  readonly #newcomers = new Map<string, number>()
  #retry: NodeJS.Timeout | undefined
  readonly #onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>) => {
    if (!evt.detail.subscriptions.some((s) => s.topic === ANNOUNCE_TOPIC && s.subscribe)) return
    this.#newcomers.set(evt.detail.peerId.toString(), 0)
    this.announceSoon()
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
    const minGapMs = Math.min(250, this.#intervalMs / 4)
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
    try {
      const recipients = await this.#topic.publish(encodeAnnouncement(announcement))
      for (const peerId of recipients) this.#newcomers.delete(peerId)
    } catch (err) {
      this.#logger.debug({ err }, 'announcement not published')
    }
    this.#retryForNewcomers()
  }

  /**
   * A peer's subscription can arrive before gossipsub has its own stream to that peer open, and a record
   * published then does not reach it. Announce again shortly, a few times, until every newcomer got one.
   */
  #retryForNewcomers(): void {
    for (const [peerId, attempts] of this.#newcomers) {
      if (attempts >= NEWCOMER_RETRIES) this.#newcomers.delete(peerId)
      else this.#newcomers.set(peerId, attempts + 1)
    }
    if (this.#newcomers.size === 0 || this.#retry !== undefined || this.#stopped) return
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      this.announceSoon()
    }, NEWCOMER_RETRY_MS)
  }

  stop(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    clearTimeout(this.#retry)
    this.#peer.services.pubsub.removeEventListener('subscription-change', this.#onSubscriptionChange)
  }
}
