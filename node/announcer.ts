import type { SubscriptionChangeData } from '@libp2p/gossipsub'
import type { Logger } from 'pino'
import { type Announcement, encodeAnnouncement } from '../protocol/announcement.ts'
import { type GossipRecords, nextSeq } from '../protocol/gossip-records.ts'
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
/** At most one announcement per this gap (or a quarter interval) on change: each costs every peer a verification. */
const MIN_GAP_MS = 500
/**
 * The periodic announcement comes after a random 80–100 % of the interval, never later than the interval. With a
 * fixed period, nodes stay in the phase they were put in together: every node a newcomer reaches announces for
 * it 100 ms after it subscribed, and each such announcement restarts the period. In the 100-peer bench, 4–7
 * nodes then announced within the same half second, every interval, and the whole network (1 CPU-second a
 * burst) delayed those records together: the slowest 1 % took 0.6–0.8 s, every late copy a mesh delivery.
 */
const PERIODIC_JITTER = 0.2

/** When the next periodic announcement is due, for a node that announced just now. */
export function periodicDelayMs(intervalMs: number, random: () => number = Math.random): number {
  return Math.round(intervalMs * (1 - PERIODIC_JITTER * random()))
}

export type AnnouncementBody = Omit<Announcement, 'seq' | 'timestamp' | 'intervalMs'>

/**
 * Why an announcement went out: its interval ran out, something changed, or peers newly subscribed while this
 * node's own record had not reached the network (it is joining, or was cut off). `direct`: handed to such
 * newcomers one by one instead, its record being in the network already.
 */
export type AnnouncementCause = 'periodic' | 'change' | 'newcomers' | 'direct'
/** The causes of announcements published to the whole network. */
export type PublishedCause = Exclude<AnnouncementCause, 'direct'>

/**
 * Publishes this node's announcement at least once per interval, and at once when something changed. An
 * announcement made for a change counts as the periodic one: the next periodic announcement comes an interval
 * (less a random part, `periodicDelayMs`) after it, so changes do not add records on top of the periodic ones.
 *
 * A peer that newly subscribed gets this node's record at once, so that a gateway that just joined does not wait
 * a whole interval to learn about this node: handed to it alone (`GossipRecords#sendDirect`) while this node's
 * announcements reach the network, published to the whole network while they do not (the node is joining, or
 * was cut off, and the network needs its record too). Publishing for every newcomer made each join cost the
 * network one record per node the newcomer connected to: at 100 peers 4–10 records, each verified by every
 * peer, in the same second as the newcomer's own (0.4–1.1 CPU-seconds on two cores, delaying it).
 */
export class Announcer {
  readonly #peer: NexusPeer
  readonly #topic: GossipRecords<Announcement>
  readonly #build: (cause: AnnouncementCause) => AnnouncementBody
  readonly #intervalMs: number
  readonly #logger: Logger
  readonly #random: () => number
  #timer: NodeJS.Timeout | undefined
  #scheduled = false
  #seq = 0
  #lastAnnouncedAt = 0
  #stopped = true
  /**
   * When a published announcement of this node's last reached a peer. Within `STILL_HOLDS_INTERVALS` of that,
   * the network holds its record: a publish that finds no stream open yet (a subscription can come first)
   * does not make the node a stranger again; a node cut off for that long is one.
   */
  #reachedPeersAt = Number.NEGATIVE_INFINITY
  /** Newcomers a record is being handed to now. */
  readonly #handingTo = new Set<string>()
  readonly #newcomers: Newcomers
  #newcomerTimer: NodeJS.Timeout | undefined
  /** An announcement or hand-over for the waiting newcomers is scheduled. */
  #forNewcomersDue = false
  /** Sees every announcement this node makes (gossipsub does not deliver a peer's own records to it). */
  onAnnounce: ((announcement: Announcement) => void) | undefined
  #lastForNewcomersAt = 0
  /** Announcements made, by cause: what a network's record rate is made of. */
  readonly counts: Record<AnnouncementCause, number> = { periodic: 0, change: 0, newcomers: 0, direct: 0 }
  readonly #onRecord = (record: Pick<Announcement, 'peerId' | 'intervalMs'>) => this.#newcomers.heard(record)
  readonly #onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>) => {
    if (!evt.detail.subscriptions.some((s) => s.topic === ANNOUNCE_TOPIC && s.subscribe)) return
    if (this.#newcomers.subscribed(evt.detail.peerId.toString())) this.#scheduleForNewcomers()
  }

  constructor(
    peer: NexusPeer,
    topic: GossipRecords<Announcement>,
    build: (cause: AnnouncementCause) => AnnouncementBody,
    intervalMs: number,
    logger: Logger,
    /** Draws the random part of each period (tests pin it). */
    random: () => number = Math.random,
  ) {
    this.#random = random
    this.#peer = peer
    this.#topic = topic
    this.#build = build
    this.#intervalMs = intervalMs
    this.#logger = logger
    this.#newcomers = new Newcomers(intervalMs)
  }

  start(): void {
    this.#stopped = false
    this.#peer.services.pubsub.addEventListener('subscription-change', this.#onSubscriptionChange)
    this.#topic.on('record', this.#onRecord)
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
      void this.announce('change')
    }, wait)
  }

  async announce(cause: PublishedCause): Promise<void> {
    if (this.#stopped) return
    this.counts[cause]++
    this.#lastAnnouncedAt = Date.now()
    clearTimeout(this.#timer)
    this.#timer = setTimeout(
      () => void this.announce('periodic'),
      periodicDelayMs(this.#intervalMs, this.#random),
    )
    this.#seq = nextSeq(this.#seq)
    const announcement: Announcement = {
      ...this.#build(cause),
      intervalMs: this.#intervalMs,
      seq: this.#seq,
      timestamp: Date.now(),
    }
    this.onAnnounce?.(announcement)
    let recipients: string[] = []
    try {
      // A periodic record has a whole interval to spread, so it goes through the mesh alone; flooding it to every
      // connected subscriber cost a 100-peer network (60–70 connections a peer) a fifth of its copies. A change
      // and a record for newcomers are wanted at once, the newcomers being connected peers outside the mesh.
      recipients = await this.#topic.publish(encodeAnnouncement(announcement), {
        flood: cause !== 'periodic',
      })
    } catch (err) {
      this.#logger.debug({ err }, 'announcement not published')
    }
    if (recipients.length > 0) this.#reachedPeersAt = Date.now()
    this.#newcomers.announced(recipients)
    this.#scheduleForNewcomers()
  }

  /** Hands a fresh record to each waiting newcomer on its own; nobody else receives it. */
  async #handOver(): Promise<void> {
    const peers = this.#newcomers.waiting.filter((peerId) => !this.#handingTo.has(peerId))
    if (peers.length === 0 || this.#stopped) return
    for (const peerId of peers) this.#handingTo.add(peerId)
    // Its own sequence number: the next published record has a higher one, which the newcomer then accepts.
    this.#seq = nextSeq(this.#seq)
    const data = encodeAnnouncement({
      ...this.#build('direct'),
      intervalMs: this.#intervalMs,
      seq: this.#seq,
      timestamp: Date.now(),
    })
    let taken: boolean[] = []
    try {
      taken = await Promise.all(peers.map((peerId) => this.#topic.sendDirect(peerId, data)))
    } catch (err) {
      this.#logger.error({ err }, 'records not handed to newcomers')
    } finally {
      for (const peerId of peers) this.#handingTo.delete(peerId)
    }
    const reached = new Set(peers.filter((_, i) => taken[i]))
    this.counts.direct += reached.size
    this.#newcomers.handedOver(peers, reached)
    this.#scheduleForNewcomers()
  }

  /** Peers that subscribed and wait for an announcement to reach them. */
  get newcomers(): number {
    return this.#newcomers.size
  }

  /** Takes note of a record this node received from a peer, on any topic (announcements are noted by themselves). */
  heard(record: { peerId: string; intervalMs: number }): void {
    this.#newcomers.heard(record)
  }

  #scheduleForNewcomers(): void {
    if (this.#forNewcomersDue || this.#stopped || this.#newcomers.size === 0) return
    this.#forNewcomersDue = true
    let wait = HAND_OVER_DELAY_MS
    let due = () => this.#handOver()
    if (!this.#inNetwork()) {
      const reachable = this.#newcomers.waiting.some((peerId) => gossipStreamOpenTo(this.#peer, peerId))
      wait = Math.max(
        reachable ? 0 : NEWCOMER_DELAY_MS,
        this.#lastForNewcomersAt + NEWCOMER_GAP_MS - Date.now(),
      )
      due = () => {
        this.#lastForNewcomersAt = Date.now()
        return this.announce('newcomers')
      }
    }
    const run = () => {
      this.#newcomerTimer = undefined
      this.#forNewcomersDue = false
      if (!this.#stopped) void due()
    }
    // At once means after the other subscriptions of the same message (an event each) have been taken in.
    if (wait === 0) queueMicrotask(run)
    else this.#newcomerTimer = setTimeout(run, wait)
  }

  #inNetwork(): boolean {
    return Date.now() - this.#reachedPeersAt < STILL_HOLDS_INTERVALS * this.#intervalMs
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    clearTimeout(this.#newcomerTimer)
    this.#peer.services.pubsub.removeEventListener('subscription-change', this.#onSubscriptionChange)
    this.#topic.off('record', this.#onRecord)
  }
}
