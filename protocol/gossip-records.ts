import { EventEmitter } from 'node:events'
import { type Message, type PublishResult, TopicValidatorResult } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import { handleDirectRecords, sendDirectRecord } from './direct-records.ts'
import type { NexusPeer } from './peer.ts'

/** The fields every gossiped record carries, whatever its topic. */
export interface SignedRecord {
  peerId: string
  seq: number
  timestamp: number
}

export interface FreshnessRules {
  /** Records signed longer ago than this are dropped: nobody may resurrect a silent peer. */
  maxAgeMs: number
  /** Records from further in the future than this are invalid (a broken or lying clock). */
  maxFutureMs: number
}

/**
 * The next sequence number for a record of ours. It starts from the clock (microseconds), so that it keeps
 * increasing across restarts and receivers never mistake a fresh record for a replay.
 */
export function nextSeq(previous: number, now = Date.now()): number {
  return Math.max(previous + 1, now * 1000)
}

export const DEFAULT_FRESHNESS: FreshnessRules = { maxAgeMs: 30_000, maxFutureMs: 10_000 }

export type Verdict<T> = { result: 'accept'; record: T } | { result: 'ignore' | 'reject'; reason: string }

/**
 * Decides whether a gossiped record may enter a peer's view and travel on. Forged, malformed and future-dated
 * records are rejected, which makes gossipsub score down the peer that delivered them. Stale and replayed
 * records are only ignored: an honest peer may relay an older record that arrives late by another path, and
 * must not be punished for it; such records go no further either way.
 */
export class RecordValidator<T extends SignedRecord> {
  readonly #decode: (bytes: Uint8Array) => T | undefined
  readonly #rules: FreshnessRules
  readonly #now: () => number
  readonly #lastSeq = new Map<string, { seq: number; at: number }>()

  constructor(decode: (bytes: Uint8Array) => T | undefined, rules: FreshnessRules, now = Date.now) {
    this.#decode = decode
    this.#rules = rules
    this.#now = now
  }

  /**
   * `direct`: the record was handed over by its signer itself, on a connection that authenticated it. Only a
   * third party can replay a record, so the sequence check is skipped, and the record does not count as the
   * last one seen: the signer's previous gossiped record may still be on its way, and must not be ignored (a
   * peer ignoring a record does not forward it).
   */
  validate(signer: string | undefined, data: Uint8Array, direct = false): Verdict<T> {
    if (signer === undefined) return { result: 'reject', reason: 'unsigned record' }
    const record = this.#decode(data)
    if (record === undefined) return { result: 'reject', reason: 'malformed record' }
    if (record.peerId !== signer)
      return { result: 'reject', reason: `record for ${record.peerId} signed by ${signer}` }
    const now = this.#now()
    if (record.timestamp > now + this.#rules.maxFutureMs)
      return { result: 'reject', reason: `timestamp ${record.timestamp - now} ms in the future` }
    if (record.timestamp < now - this.#rules.maxAgeMs)
      return { result: 'ignore', reason: `stale record, ${now - record.timestamp} ms old` }
    if (direct) return { result: 'accept', record }
    const last = this.#lastSeq.get(signer)
    if (last !== undefined && record.seq <= last.seq)
      return { result: 'ignore', reason: `sequence number ${record.seq} not above ${last.seq}` }
    this.#lastSeq.set(signer, { seq: record.seq, at: now })
    this.#prune(now)
    return { result: 'accept', record }
  }

  /** Past `maxAgeMs` the timestamp check alone stops replays, so older sequence numbers can be forgotten. */
  #prune(now: number): void {
    if (this.#lastSeq.size < 1024) return
    for (const [peerId, { at }] of this.#lastSeq) {
      if (at < now - 2 * this.#rules.maxAgeMs) this.#lastSeq.delete(peerId)
    }
  }
}

export interface GossipRecordEvents<T> {
  record: [T]
  invalid: [{ from: string; result: 'ignore' | 'reject'; reason: string }]
}

export interface GossipRecordsOptions {
  /**
   * A protocol on which a peer hands this peer one record of its own, outside gossipsub (`sendDirect`). Such a
   * record is validated as a gossiped one, signed by the connection's authenticated peer, and goes no further.
   */
  directProtocol?: string
}

/**
 * One gossipsub topic of signed records: validates every message before gossipsub delivers or forwards it,
 * and emits the records that pass; with a `directProtocol`, also those a peer hands over directly. `counts`
 * says how many were accepted, ignored and rejected, and `directCounts` of those handed over directly.
 */
export class GossipRecords<T extends SignedRecord> extends EventEmitter<GossipRecordEvents<T>> {
  readonly topic: string
  readonly counts = { accepted: 0, ignored: 0, rejected: 0 }
  /** Records peers handed this one directly: accepted, ignored and rejected (the same records are not in `counts`). */
  readonly directCounts = { accepted: 0, ignored: 0, rejected: 0 }
  readonly #peer: NexusPeer
  readonly #directProtocol: string | undefined
  readonly #validator: RecordValidator<T>
  readonly #logger: Logger
  /** Records decoded during validation, so that delivery does not parse them again. */
  readonly #validated = new WeakMap<Uint8Array, T>()
  #subscribed = false
  readonly #onMessage = (evt: CustomEvent<Message>) => {
    const message = evt.detail
    if (message.topic !== this.topic) return
    const record = this.#validated.get(message.data)
    if (record !== undefined) this.#deliver(record)
  }

  constructor(
    peer: NexusPeer,
    topic: string,
    decode: (bytes: Uint8Array) => T | undefined,
    rules: FreshnessRules,
    logger: Logger,
    options: GossipRecordsOptions = {},
  ) {
    super()
    this.#peer = peer
    this.#directProtocol = options.directProtocol
    this.topic = topic
    this.#validator = new RecordValidator(decode, rules)
    this.#logger = logger
  }

  /** Validates the topic's messages; `subscribe: false` only validates what this peer publishes or relays. */
  start({ subscribe = true } = {}): void {
    const pubsub = this.#peer.services.pubsub
    pubsub.topicValidators.set(this.topic, (from, message) => this.#validate(from, message))
    pubsub.addEventListener('message', this.#onMessage)
    if (subscribe) {
      pubsub.subscribe(this.topic)
      this.#subscribed = true
    }
    // Registration is synchronous; what libp2p awaits after it only records the protocol in the peer store.
    if (subscribe && this.#directProtocol !== undefined) {
      handleDirectRecords(
        this.#peer,
        this.#directProtocol,
        (from, data) => this.#receiveDirect(from, data),
        this.#logger,
      ).catch((err) => this.#logger.error({ err, topic: this.topic }, 'direct records cannot be received'))
    }
  }

  stop(): void {
    const pubsub = this.#peer.services.pubsub
    pubsub.removeEventListener('message', this.#onMessage)
    pubsub.topicValidators.delete(this.topic)
    if (this.#subscribed) {
      pubsub.unsubscribe(this.topic)
      // Direct records are taken exactly while subscribed (see `start`).
      if (this.#directProtocol !== undefined) this.#peer.unhandle(this.#directProtocol).catch(() => undefined)
    }
    this.#subscribed = false
  }

  /**
   * Publishes a record of this peer's; resolves with the peers it was sent to directly. `flood` sends it to every
   * connected subscriber (one hop to each), rather than to the mesh alone (each mesh neighbour passes it on).
   */
  async publish(data: Uint8Array, options: { flood?: boolean } = {}): Promise<string[]> {
    return publishOn(this.#peer, this.topic, data, options)
  }

  /**
   * Hands a record of this peer's to one connected peer only, on the direct protocol; resolves whether it took
   * it. Nobody else sees this record: the next one published must not depend on it.
   */
  async sendDirect(peerId: string, data: Uint8Array): Promise<boolean> {
    if (this.#directProtocol === undefined) throw new Error(`${this.topic} has no direct protocol`)
    return sendDirectRecord(this.#peer, peerId, this.#directProtocol, data, this.#logger)
  }

  #validate(propagator: PeerId, message: Message): TopicValidatorResult {
    const signer = message.type === 'signed' ? message.from.toString() : undefined
    const verdict = this.#judge(propagator.toString(), signer, message.data, false)
    if (verdict.result === 'accept') {
      this.#validated.set(message.data, verdict.record)
      return TopicValidatorResult.Accept
    }
    return verdict.result === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
  }

  /** A record a peer handed over directly: its own, the connection having authenticated it as the signer. */
  #receiveDirect(from: string, data: Uint8Array): boolean {
    const verdict = this.#judge(from, from, data, true)
    if (verdict.result === 'accept') this.#deliver(verdict.record)
    return verdict.result !== 'reject'
  }

  /** Validates one record, counts the verdict, and logs and emits what was not accepted. */
  #judge(from: string, signer: string | undefined, data: Uint8Array, direct: boolean): Verdict<T> {
    const counts = direct ? this.directCounts : this.counts
    let verdict: Verdict<T>
    try {
      verdict = this.#validator.validate(signer, data, direct)
    } catch (err) {
      this.#logger.error({ topic: this.topic, err }, 'validating a gossiped record failed; it is rejected')
      verdict = { result: 'reject', reason: 'the record could not be validated' }
    }
    if (verdict.result === 'accept') {
      counts.accepted++
      return verdict
    }
    if (verdict.result === 'reject') {
      counts.rejected++
      this.#logger.warn({ topic: this.topic, from, signer, reason: verdict.reason }, 'rejected gossip record')
    } else {
      counts.ignored++
      this.#logger.debug({ topic: this.topic, from, signer, reason: verdict.reason }, 'ignored gossip record')
    }
    this.emit('invalid', { from, result: verdict.result, reason: verdict.reason })
    return verdict
  }

  #deliver(record: T): void {
    // A listener that throws on one record must not throw into libp2p's event dispatch (an uncaught exception).
    try {
      this.emit('record', record)
    } catch (err) {
      this.#logger.error(
        { topic: this.topic, err },
        'handling a gossiped record failed; the record is dropped',
      )
    }
  }
}

/**
 * Publishes `data` on `topic` from `peer`; resolves with the peers it was sent to directly. `flood`: to every
 * connected subscriber rather than to the mesh alone. (Gossipsub's publish takes per-call options; the interface
 * libp2p publishes for the service omits them.)
 */
export async function publishOn(
  peer: NexusPeer,
  topic: string,
  data: Uint8Array,
  options: { flood?: boolean } = {},
): Promise<string[]> {
  const pubsub = peer.services.pubsub as unknown as {
    publish(topic: string, data: Uint8Array, opts: { floodPublish?: boolean }): Promise<PublishResult>
  }
  const { recipients } = await pubsub.publish(topic, data, { floodPublish: options.flood })
  return recipients.map(String)
}
