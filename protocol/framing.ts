import { NexusError } from './errors.ts'

/** Large enough for any HTTP body the gateway accepts (4 MiB by default) plus JSON-RPC envelope growth. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

/** A frame length needs at most this many varint bytes (2^35 > any limit we accept). */
const MAX_PREFIX_BYTES = 5

/** Encodes one frame: an unsigned varint byte length followed by the payload. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  let prefixLength = 1
  while (payload.byteLength >= 2 ** (7 * prefixLength)) prefixLength++
  const out = new Uint8Array(prefixLength + payload.byteLength)
  let rest = payload.byteLength
  for (let i = 0; i < prefixLength; i++) {
    out[i] = (rest % 128) | (i < prefixLength - 1 ? 0x80 : 0)
    rest = Math.floor(rest / 128)
  }
  out.set(payload, prefixLength)
  return out
}

/** A chunk as libp2p streams deliver it: bytes, or a list of byte arrays (Uint8ArrayList). */
export type Chunk = Uint8Array | { subarray(): Uint8Array }

/**
 * Reassembles frames from arbitrarily split chunks; rejects frames over the size limit before buffering them.
 * Whole frames inside a chunk are handed out as views of it without copying; only a frame split across chunks
 * is gathered into one buffer (this sits on every message's path, twice per hop).
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number
  /** Bytes of an incomplete length prefix, or of an incomplete frame once its length is known. */
  #pending: Uint8Array | undefined
  #pendingLength = 0
  /** The awaited frame's payload length, -1 while its prefix is incomplete. */
  #frameLength = -1

  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.#maxFrameBytes = maxFrameBytes
  }

  *decode(chunk: Chunk): Generator<Uint8Array> {
    let data = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    let offset = 0
    if (this.#pending !== undefined) {
      const pending = this.#pending
      if (this.#frameLength < 0) {
        // The chunk ended inside a length prefix: decode the joined bytes afresh.
        const joined = new Uint8Array(this.#pendingLength + data.byteLength)
        joined.set(pending.subarray(0, this.#pendingLength))
        joined.set(data, this.#pendingLength)
        this.#pending = undefined
        data = joined
      } else {
        offset = Math.min(this.#frameLength - this.#pendingLength, data.byteLength)
        pending.set(data.subarray(0, offset), this.#pendingLength)
        this.#pendingLength += offset
        if (this.#pendingLength < this.#frameLength) return
        this.#pending = undefined
        this.#frameLength = -1
        yield pending
      }
    }
    while (offset < data.byteLength) {
      if (this.#frameLength < 0) {
        const prefix = this.#readPrefix(data, offset)
        if (prefix === undefined) {
          this.#hold(data.subarray(offset), MAX_PREFIX_BYTES)
          return
        }
        this.#frameLength = prefix.length
        offset = prefix.end
      }
      const end = offset + this.#frameLength
      if (end > data.byteLength) {
        // Held in a buffer of exactly the frame's size, which becomes the frame once full.
        this.#hold(data.subarray(offset), this.#frameLength)
        return
      }
      this.#frameLength = -1
      yield data.subarray(offset, end)
      offset = end
    }
  }

  /** Reads a length prefix at `offset`; undefined when the chunk ends inside it. */
  #readPrefix(data: Uint8Array, offset: number): { length: number; end: number } | undefined {
    let length = 0
    for (let i = 0; i < MAX_PREFIX_BYTES; i++) {
      if (offset + i >= data.byteLength) return undefined
      const byte = data[offset + i]!
      length += (byte & 0x7f) * 2 ** (7 * i)
      if ((byte & 0x80) === 0) {
        if (length > this.#maxFrameBytes)
          throw new NexusError('FRAME_TOO_LARGE', `frame exceeds the limit of ${this.#maxFrameBytes} bytes`)
        return { length, end: offset + i + 1 }
      }
    }
    throw new NexusError('FRAME_TOO_LARGE', `frame exceeds the limit of ${this.#maxFrameBytes} bytes`)
  }

  #hold(bytes: Uint8Array, capacity: number): void {
    this.#pending = new Uint8Array(Math.max(capacity, bytes.byteLength))
    this.#pending.set(bytes)
    this.#pendingLength = bytes.byteLength
  }
}
