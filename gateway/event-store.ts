import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { NexusError } from '../protocol/errors.ts'

interface StoredEvent {
  id: string
  streamId: string
  message: JSONRPCMessage
  bytes: number
}

/** What an evicted event's slot holds until the array is compacted. */
const EVICTED: StoredEvent = { id: '', streamId: '', message: {} as JSONRPCMessage, bytes: 0 }

const SEPARATOR = '|'

/** What a session keeps of its newest events even when the gateway-wide budget is spent. */
export const STORE_FLOOR_BYTES = 32 * 1024

/**
 * The bytes of stored events across every session of a gateway. Past `maxBytes`, the session that stores
 * evicts its own oldest events (down to its newest `STORE_FLOOR_BYTES`): the writer pays, quiet sessions keep
 * their history, and the gateway holds at most `maxBytes` plus a floor per session.
 */
export class EventBudget {
  readonly maxBytes: number
  #bytes = 0

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }

  get bytes(): number {
    return this.#bytes
  }

  get exceeded(): boolean {
    return this.#bytes > this.maxBytes
  }

  add(bytes: number): void {
    this.#bytes += bytes
  }
}

/**
 * One session's SSE events, kept so a client whose connection dropped can resume with Last-Event-ID.
 * Bounded by count and bytes, oldest first out; a resumption from an evicted event fails loudly rather than
 * silently skipping what was lost.
 */
export class BoundedEventStore implements EventStore {
  readonly #maxEvents: number
  readonly #maxBytes: number
  readonly #budget: EventBudget | undefined
  readonly #events: StoredEvent[] = []
  #head = 0
  #bytes = 0
  #counter = 0

  constructor(maxEvents: number, maxBytes: number, budget?: EventBudget) {
    this.#maxEvents = maxEvents
    this.#maxBytes = maxBytes
    this.#budget = budget
  }

  get size(): number {
    return this.#events.length - this.#head
  }

  get bytes(): number {
    return this.#bytes
  }

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const id = `${streamId}${SEPARATOR}${++this.#counter}`
    const bytes = JSON.stringify(message).length
    this.#events.push({ id, streamId, message, bytes })
    this.#bytes += bytes
    this.#budget?.add(bytes)
    while (
      this.size > this.#maxEvents ||
      (this.#bytes > this.#maxBytes && this.size > 0) ||
      (this.size > 0 &&
        this.#budget?.exceeded === true &&
        this.#bytes - this.#events[this.#head]!.bytes >= STORE_FLOOR_BYTES)
    ) {
      this.#evictOldest()
    }
    // Compact now and then so the array does not grow with everything ever evicted.
    if (this.#head > 1024 && this.#head * 2 > this.#events.length) {
      this.#events.splice(0, this.#head)
      this.#head = 0
    }
    return id
  }

  /** The session ended: its events go, and their bytes go back to the budget. */
  clear(): void {
    while (this.size > 0) this.#evictOldest()
    this.#events.length = 0
    this.#head = 0
  }

  #evictOldest(): void {
    const bytes = this.#events[this.#head]!.bytes
    this.#bytes -= bytes
    this.#budget?.add(-bytes)
    // The slot stays until the array is compacted; the event itself goes now.
    this.#events[this.#head] = EVICTED
    this.#head++
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return parseEventId(eventId)?.streamId
  }

  /**
   * Why a stream cannot resume after `lastEventId`: it is not an id this store hands out, or the events after
   * it were evicted. Undefined when it can.
   */
  resumeProblem(lastEventId: string): string | undefined {
    const parsed = parseEventId(lastEventId)
    if (parsed === undefined) return 'Last-Event-ID is not an event id this gateway handed out'
    if (this.#evictedAfter(parsed.counter))
      return `the events after Last-Event-ID ${lastEventId} are no longer stored; what followed it is lost`
    return undefined
  }

  /** Whether events that followed the one numbered `counter` are gone from the store. */
  #evictedAfter(counter: number): boolean {
    const oldest = this.#events[this.#head]
    return oldest !== undefined && counter + 1 < parseEventId(oldest.id)!.counter
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const parsed = parseEventId(lastEventId)
    if (parsed === undefined) throw new NexusError('PROTOCOL_VIOLATION', 'malformed Last-Event-ID')
    const { streamId, counter } = parsed
    if (this.#evictedAfter(counter)) {
      throw new NexusError('PROTOCOL_VIOLATION', `events after ${lastEventId} are no longer stored`)
    }
    for (let i = this.#head; i < this.#events.length; i++) {
      const event = this.#events[i]!
      const eventCounter = parseEventId(event.id)!.counter
      // Priming events carry an empty object only to hand out an id; there is nothing to replay in them.
      if (eventCounter > counter && event.streamId === streamId && Object.keys(event.message).length > 0) {
        await send(event.id, event.message)
      }
    }
    return streamId
  }
}

/** An event id is `<stream id>|<counter>`; anything else (from a client's Last-Event-ID) is undefined. */
function parseEventId(eventId: string): { streamId: string; counter: number } | undefined {
  if (eventId.length > 256) return undefined
  const at = eventId.lastIndexOf(SEPARATOR)
  const digits = eventId.slice(at + 1)
  if (at <= 0 || !/^\d{1,15}$/.test(digits)) return undefined
  return { streamId: eventId.slice(0, at), counter: Number(digits) }
}
