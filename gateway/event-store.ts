import type { EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { NexusError } from '../protocol/errors.ts'

interface StoredEvent {
  id: string
  streamId: string
  message: JSONRPCMessage
  bytes: number
}

const SEPARATOR = '|'

/**
 * One session's SSE events, kept so a client whose connection dropped can resume with Last-Event-ID.
 * Bounded by count and bytes, oldest first out; a resumption from an evicted event fails loudly rather than
 * silently skipping what was lost.
 */
export class BoundedEventStore implements EventStore {
  readonly #maxEvents: number
  readonly #maxBytes: number
  readonly #events: StoredEvent[] = []
  #head = 0
  #bytes = 0
  #counter = 0

  constructor(maxEvents: number, maxBytes: number) {
    this.#maxEvents = maxEvents
    this.#maxBytes = maxBytes
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
    while (this.size > this.#maxEvents || (this.#bytes > this.#maxBytes && this.size > 0)) {
      this.#bytes -= this.#events[this.#head]!.bytes
      this.#head++
    }
    // Compact now and then so the array does not grow with everything ever evicted.
    if (this.#head > 1024 && this.#head * 2 > this.#events.length) {
      this.#events.splice(0, this.#head)
      this.#head = 0
    }
    return id
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    const at = eventId.lastIndexOf(SEPARATOR)
    return at > 0 ? eventId.slice(0, at) : undefined
  }

  async replayEventsAfter(
    lastEventId: string,
    { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> },
  ): Promise<string> {
    const streamId = await this.getStreamIdForEventId(lastEventId)
    const counter = Number(lastEventId.slice(lastEventId.lastIndexOf(SEPARATOR) + 1))
    if (streamId === undefined || !Number.isInteger(counter)) {
      throw new NexusError('PROTOCOL_VIOLATION', `malformed Last-Event-ID ${lastEventId}`)
    }
    const oldest = this.#events[this.#head]
    if (oldest !== undefined && counter + 1 < Number(oldest.id.slice(oldest.id.lastIndexOf(SEPARATOR) + 1))) {
      throw new NexusError('PROTOCOL_VIOLATION', `events after ${lastEventId} are no longer stored`)
    }
    for (let i = this.#head; i < this.#events.length; i++) {
      const event = this.#events[i]!
      const eventCounter = Number(event.id.slice(event.id.lastIndexOf(SEPARATOR) + 1))
      // Priming events carry an empty object only to hand out an id; there is nothing to replay in them.
      if (eventCounter > counter && event.streamId === streamId && Object.keys(event.message).length > 0) {
        await send(event.id, event.message)
      }
    }
    return streamId
  }
}
