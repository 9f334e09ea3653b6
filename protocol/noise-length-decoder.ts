import type { MessageStream } from '@libp2p/interface'

/**
 * `@chainsafe/libp2p-noise` 17 reads frame lengths with `LengthPrefixedDecoder` from `@libp2p/utils`, which
 * learns that a buffer holds no further frame by calling the length decoder and catching the `RangeError` it
 * throws. It asks once more after every frame it took, so nearly every socket read ended in a new `RangeError`,
 * and building an error's stack trace costs more than decrypting a small frame: in a 50-peer gossip network
 * it was the fourth-largest item of the profile (3.7 % of all CPU, in `uint16BEDecode`).
 *
 * The decoder still learns it the same way, but from one `RangeError` made once: throwing it costs no stack
 * trace. Lengths themselves are read as noise reads them (2 bytes, big-endian).
 */
const NO_LENGTH_YET = new RangeError('fewer than 2 bytes: no frame length yet')

/** A noise frame's length: the first 2 bytes, big-endian, of what the decoder holds. */
export function noiseFrameLength(
  data: Uint8Array | { byteLength: number; get(index: number): number },
): number {
  if (data.byteLength < 2) throw NO_LENGTH_YET
  if (data instanceof Uint8Array) return (data[0]! << 8) | data[1]!
  return (data.get(0) << 8) | data.get(1)
}

/** What this relies on: noise's secured connection keeps its `LengthPrefixedDecoder` as `decoder`. */
interface DecodingLengths {
  decoder: { lengthDecoder: unknown }
}

/** Gives a noise connection's frame decoder the length reader above; other connections are left as they are. */
export function decodeLengthsWithoutStackTraces(connection: MessageStream): boolean {
  const decoder = (connection as Partial<DecodingLengths>).decoder
  if (typeof decoder?.lengthDecoder !== 'function') return false
  decoder.lengthDecoder = noiseFrameLength
  return true
}
