/**
 * How many announcements may pass before a newcomer that none of them reached directly is given up on. A
 * newcomer not reached directly (gossipsub had no stream to it yet) mostly gets the record through its other
 * peers; five tries made every such peer cost the whole network five records.
 */
const NEWCOMER_ATTEMPTS = 2
/**
 * A peer that subscribed, or that an announcement reached directly, within this many intervals (the time a
 * record stays fresh) is no newcomer when it subscribes again, on a new connection or after a reconnect.
 */
export const STILL_HOLDS_INTERVALS = 3

/**
 * Which subscribing peers a node gives its record to at once: peers that may not hold it yet. The
 * `NewcomerGreeter` decides when and how; this decides who counts.
 */
export class Newcomers {
  readonly #intervalMs: number
  /** Peers that subscribed and that no announcement reached yet, with the announcements tried since. */
  readonly #waiting = new Map<string, number>()
  /**
   * When each peer last subscribed or an announcement last reached it directly. Without it every new connection
   * between two peers (the DHT's, the topic-peer keeper's, a reconnect) made each node announce again for the
   * whole network: in a forming 50-peer network, two to three times the periodic records.
   */
  readonly #reachedAt = new Map<string, number>()
  /**
   * Peers whose records this node receives: since when without a gap of three of their intervals, and when last.
   * A peer whose records have reached this node for a whole interval of its own is in the mesh both ways, and
   * has had this node's periodic announcement by the same paths: it is no newcomer on a new connection. Without
   * this, peers that connect now and then (the DHT's queries, the topic-peer keeper) were newcomers each time
   * once three intervals had passed: in a settled 50-peer network, up to twice as many records as the periodic
   * ones. A peer heard for the first time is a newcomer still: it may be joining, its record out before ours.
   */
  readonly #heard = new Map<string, { since: number; last: number; intervalMs: number }>()

  /** `intervalMs`: this node's announcement interval. */
  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs
  }

  /** A peer subscribed to the announcements; true when it is a newcomer, now waiting for an announcement. */
  subscribed(peerId: string, now = Date.now()): boolean {
    const known = this.#stillHolds(peerId, now) || this.#hearsUs(peerId, now)
    // Seen now: whether an announcement reaches it directly or through others, it is a newcomer once.
    this.#reachedAt.set(peerId, now)
    if (known) return false
    this.#waiting.set(peerId, 0)
    return true
  }

  /** Takes note of a record this node received from a peer, on any topic. */
  heard(record: { peerId: string; intervalMs: number }, now = Date.now()): void {
    const entry = this.#heard.get(record.peerId)
    if (entry === undefined || now - entry.last >= STILL_HOLDS_INTERVALS * entry.intervalMs)
      this.#heard.set(record.peerId, { since: now, last: now, intervalMs: record.intervalMs })
    else Object.assign(entry, { last: now, intervalMs: record.intervalMs })
  }

  /**
   * An announcement went out and reached `recipients` directly. A peer's subscription can arrive before
   * gossipsub has its own stream to that peer open, and a record published then does not reach it. Newcomers
   * that this announcement reached are done; the others wait for the next one. One that missed both still gets
   * the next periodic record, and gossipsub's gossip offers it the recent ones.
   */
  announced(recipients: string[], now = Date.now()): void {
    for (const [peerId] of this.#reachedAt) if (!this.#stillHolds(peerId, now)) this.#reachedAt.delete(peerId)
    for (const [peerId, { last, intervalMs }] of this.#heard)
      if (now - last >= STILL_HOLDS_INTERVALS * intervalMs) this.#heard.delete(peerId)
    for (const peerId of recipients) this.#reached(peerId, now)
    for (const peerId of [...this.#waiting.keys()]) this.#missed(peerId)
  }

  /**
   * The record was handed to each of `tried` on its own; `reached` took it. Those that did not are tried once
   * more, as after an announcement that missed them (the peer may be gone, or not speak the protocol yet).
   */
  handedOver(tried: string[], reached: ReadonlySet<string>, now = Date.now()): void {
    for (const peerId of tried) {
      if (!this.#waiting.has(peerId)) continue
      if (reached.has(peerId)) this.#reached(peerId, now)
      else this.#missed(peerId)
    }
  }

  /** Newcomers waiting for an announcement to reach them. */
  get size(): number {
    return this.#waiting.size
  }

  /** The newcomers waiting, oldest first. */
  get waiting(): string[] {
    return [...this.#waiting.keys()]
  }

  #reached(peerId: string, now: number): void {
    this.#reachedAt.set(peerId, now)
    this.#waiting.delete(peerId)
  }

  #missed(peerId: string): void {
    const attempts = this.#waiting.get(peerId)
    if (attempts === undefined) return
    if (attempts + 1 >= NEWCOMER_ATTEMPTS) this.#waiting.delete(peerId)
    else this.#waiting.set(peerId, attempts + 1)
  }

  #hearsUs(peerId: string, now: number): boolean {
    const entry = this.#heard.get(peerId)
    if (entry === undefined) return false
    return (
      now - entry.last < STILL_HOLDS_INTERVALS * entry.intervalMs && now - entry.since >= this.#intervalMs
    )
  }

  #stillHolds(peerId: string, now: number): boolean {
    const at = this.#reachedAt.get(peerId)
    return at !== undefined && now - at < STILL_HOLDS_INTERVALS * this.#intervalMs
  }
}
