import { LengthPrefixedDecoder } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { NexusError } from './errors.ts'

/** Large enough for any HTTP body the gateway accepts (4 MiB by default) plus JSON-RPC envelope growth. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

/** Encodes one frame: an unsigned varint byte length followed by the payload. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const prefixLength = varint.encodingLength(payload.byteLength)
  const out = new Uint8Array(prefixLength + payload.byteLength)
  varint.encode(payload.byteLength, out, 0)
  out.set(payload, prefixLength)
  return out
}

/** Reassembles frames from arbitrarily split chunks; rejects frames over the size limit before buffering them. */
export class FrameDecoder {
  readonly #decoder: LengthPrefixedDecoder
  readonly #maxFrameBytes: number

  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.#maxFrameBytes = maxFrameBytes
    this.#decoder = new LengthPrefixedDecoder({
      maxDataLength: maxFrameBytes,
      maxBufferSize: maxFrameBytes + 16,
    })
  }

  *decode(chunk: Parameters<LengthPrefixedDecoder['decode']>[0]): Generator<Uint8Array> {
    try {
      for (const frame of this.#decoder.decode(chunk)) yield frame.subarray()
    } catch (err) {
      throw new NexusError('FRAME_TOO_LARGE', `frame exceeds the limit of ${this.#maxFrameBytes} bytes`, {
        cause: err,
      })
    }
  }
}
