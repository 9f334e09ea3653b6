import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Upgrader } from '@libp2p/interface'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LengthPrefixedDecoder, multiaddrConnectionPair } from '@libp2p/utils'
import t from 'tap'
import { noiseFrameLength } from '../protocol/noise-length-decoder.ts'
import { noiseWithWholeFrames } from '../protocol/noise-whole-frames.ts'

/** Noise's wire framing: a 2-byte big-endian length, then that many bytes. */
function framed(frames: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((sum, f) => sum + 2 + f.byteLength, 0))
  let at = 0
  for (const frame of frames) {
    out[at] = frame.byteLength >> 8
    out[at + 1] = frame.byteLength & 0xff
    out.set(frame, at + 2)
    at += 2 + frame.byteLength
  }
  return out
}

/** The decoder as noise builds it, with the project's length reader. */
const decoder = () =>
  new LengthPrefixedDecoder({
    lengthDecoder: noiseFrameLength,
    maxBufferSize: 1 << 24,
    encodingLength: () => 2,
  })

t.test('frames split anywhere come out whole and in order; a partial frame waits for the rest', async (t) => {
  const frames = [300, 1, 65_535, 7, 256].map((size, i) => new Uint8Array(size).fill(i + 1))
  const wire = framed(frames)
  for (const chunkSize of [1, 2, 3, 255, 4096, wire.byteLength]) {
    const d = decoder()
    const out: Uint8Array[] = []
    for (let at = 0; at < wire.byteLength; at += chunkSize)
      for (const frame of d.decode(wire.subarray(at, at + chunkSize))) out.push(frame.subarray())
    t.same(
      out.map((f) => [f.byteLength, f[0]]),
      frames.map((f) => [f.byteLength, f[0]]),
      `${chunkSize}-byte reads: every frame, whole, in order`,
    )
  }
  const d = decoder()
  t.same([...d.decode(wire.subarray(0, 1))], [], 'one byte of a length: nothing yet')
  t.same([...d.decode(wire.subarray(1, 100))], [], 'the length and part of the frame: nothing yet')
  t.same(
    [...d.decode(wire.subarray(100, 302))].map((f) => f.byteLength),
    [300],
    'the rest of the frame: the frame',
  )
})

t.test('it reads no length from fewer than 2 bytes, with one error made once', async (t) => {
  const errors = new Set<unknown>()
  for (const bytes of [new Uint8Array(0), new Uint8Array(1)]) {
    try {
      noiseFrameLength(bytes)
      t.fail('read a length from fewer than 2 bytes')
    } catch (err) {
      t.type(err, RangeError, 'a RangeError, which tells the decoder to wait for more')
      errors.add(err)
    }
  }
  t.equal(errors.size, 1, 'the same error each time: no stack trace is built per read')
  t.equal(noiseFrameLength(new Uint8Array([0x12, 0x34, 9])), 0x1234, 'big-endian, as noise writes it')
})

t.test('a noise connection from the project wrapper reads lengths this way, and carries data', async (t) => {
  // Noise asks the upgrader only for the muxers to offer during the handshake; none are negotiated here.
  const components = async () => {
    const privateKey = await generateKeyPair('Ed25519')
    return {
      privateKey,
      peerId: peerIdFromPrivateKey(privateKey),
      logger: defaultLogger(),
      upgrader: { getStreamMuxers: () => new Map() } as unknown as Upgrader,
    }
  }
  const [outbound, inbound] = multiaddrConnectionPair()
  const dialer = noiseWithWholeFrames()(await components())
  const listener = noiseWithWholeFrames()(await components())
  const [a, b] = await Promise.all([dialer.secureOutbound(outbound), listener.secureInbound(inbound)])
  for (const secured of [a, b]) {
    const decoder = (secured.connection as unknown as { decoder?: { lengthDecoder?: unknown } }).decoder
    t.equal(
      decoder?.lengthDecoder,
      noiseFrameLength,
      "noise's decoder uses the project's length reader (if not, noise changed: see noise-length-decoder.ts)",
    )
  }
  const received = new Promise<Uint8Array>((resolve) =>
    b.connection.addEventListener('message', (evt) => resolve(evt.data.subarray()), { once: true }),
  )
  a.connection.send(new Uint8Array(5_000).fill(7))
  const data = await received
  t.equal(data.byteLength, 5_000, 'a message arrives whole')
  await Promise.all([a.connection.close(), b.connection.close()])
})
