import type { Logger } from 'pino'
import { type Announcement, encodeAnnouncement } from '../protocol/announcement.ts'
import { type GossipRecords, nextSeq } from '../protocol/gossip-records.ts'
import type { NexusPeer } from '../protocol/peer.ts'
import { NewcomerGreeter } from './newcomer-greeter.ts'

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
 * A peer that newly subscribed gets the record at once (`NewcomerGreeter`).
 */
export class Announcer {
  readonly #topic: GossipRecords<Announcement>
  readonly #build: (cause: AnnouncementCause) => AnnouncementBody
  readonly #intervalMs: number
  readonly #logger: Logger
  readonly #random: () => number
  readonly #greeter: NewcomerGreeter
  #timer: NodeJS.Timeout | undefined
  #scheduled = false
  #seq = 0
  #lastAnnouncedAt = 0
  #stopped = true
  /** Sees every announcement this node makes (gossipsub does not deliver a peer's own records to it). */
  onAnnounce: ((announcement: Announcement) => void) | undefined
  readonly #published: Record<PublishedCause, number> = { periodic: 0, change: 0, newcomers: 0 }

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
    this.#topic = topic
    this.#build = build
    this.#intervalMs = intervalMs
    this.#logger = logger
    this.#greeter = new NewcomerGreeter(
      peer,
      topic,
      {
        announceForNewcomers: () => this.announce('newcomers'),
        recordForNewcomer: () => encodeAnnouncement(this.#record('direct')),
      },
      intervalMs,
      logger,
    )
  }

  start(): void {
    this.#stopped = false
    this.#greeter.start()
    this.announceSoon()
  }

  /** Announcements made, by cause: what a network's record rate is made of. */
  get counts(): Readonly<Record<AnnouncementCause, number>> {
    return { ...this.#published, direct: this.#greeter.handedOver }
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
    this.#published[cause]++
    this.#lastAnnouncedAt = Date.now()
    clearTimeout(this.#timer)
    this.#timer = setTimeout(
      () => void this.announce('periodic'),
      periodicDelayMs(this.#intervalMs, this.#random),
    )
    const announcement = this.#record(cause)
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
    this.#greeter.published(recipients)
  }

  /**
   * A fresh record, with a sequence number of its own. One handed to a newcomer alone takes one too: the next
   * published record has a higher one, which the newcomer then accepts.
   */
  #record(cause: AnnouncementCause): Announcement {
    this.#seq = nextSeq(this.#seq)
    return { ...this.#build(cause), intervalMs: this.#intervalMs, seq: this.#seq, timestamp: Date.now() }
  }

  /** Peers that subscribed and wait for the record to reach them. */
  get newcomers(): number {
    return this.#greeter.waiting
  }

  /** Takes note of a record this node received from a peer, on any topic (announcements are noted by themselves). */
  heard(record: { peerId: string; intervalMs: number }): void {
    this.#greeter.heard(record)
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#greeter.stop()
  }
}
