import type { Logger } from 'pino'
import { type Announcement, encodeAnnouncement } from '../protocol/announcement.ts'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'

export type AnnouncementBody = Omit<Announcement, 'seq' | 'timestamp'>

/**
 * Publishes this node's announcement periodically, and at once when something changed or a peer newly
 * subscribed, so a gateway that just joined does not wait a whole interval to learn about this node.
 */
export class Announcer {
  readonly #peer: NexusPeer
  readonly #build: () => AnnouncementBody
  readonly #intervalMs: number
  readonly #logger: Logger
  #timer: NodeJS.Timeout | undefined
  #scheduled = false
  #seq = 0
  #stopped = true
  readonly #onSubscriptionChange = (
    evt: CustomEvent<{ subscriptions: { topic: string; subscribe: boolean }[] }>,
  ) => {
    if (evt.detail.subscriptions.some((s) => s.topic === ANNOUNCE_TOPIC && s.subscribe)) this.announceSoon()
  }

  constructor(peer: NexusPeer, build: () => AnnouncementBody, intervalMs: number, logger: Logger) {
    this.#peer = peer
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

  /** Coalesces bursts of changes into one announcement. */
  announceSoon(): void {
    if (this.#scheduled || this.#stopped) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      void this.announce()
    })
  }

  async announce(): Promise<void> {
    if (this.#stopped) return
    // Sequence numbers stay increasing across restarts because they start from the clock.
    this.#seq = Math.max(this.#seq + 1, Date.now() * 1000)
    const announcement: Announcement = { ...this.#build(), seq: this.#seq, timestamp: Date.now() }
    try {
      await this.#peer.services.pubsub.publish(ANNOUNCE_TOPIC, encodeAnnouncement(announcement))
    } catch (err) {
      this.#logger.debug({ err }, 'announcement not published')
    }
  }

  stop(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#peer.services.pubsub.removeEventListener('subscription-change', this.#onSubscriptionChange)
  }
}
