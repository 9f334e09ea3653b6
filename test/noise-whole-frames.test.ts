import { once } from 'node:events'
import { Socket } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import t, { type Test } from 'tap'
import { createPeer } from '../protocol/peer.ts'

const PROTOCOL = '/nexus/test/frames/1.0.0'
const MESSAGES = 50
/** Noise's length prefix: a write of exactly this many bytes is a frame's length sent apart from its body. */
const LENGTH_PREFIX_BYTES = 2

/**
 * Counts what goes through `net.Socket#write` while `run` runs: `@libp2p/tcp` hands every buffer of what it sends
 * to one `write`, so the sizes seen here are the writes the kernel sees.
 */
async function socketWrites<T>(run: () => Promise<T>): Promise<{ result: T; sizes: number[] }> {
  const sizes: number[] = []
  const write = Socket.prototype.write
  Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
    if (chunk instanceof Uint8Array) sizes.push(chunk.byteLength)
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof write
  try {
    return { result: await run(), sizes }
  } finally {
    Socket.prototype.write = write
  }
}

/** A project peer listening on TCP that counts the bytes of `PROTOCOL` streams and resolves at `expected`. */
async function listener(t: Test, expected: number) {
  const peer = await createPeer({ listen: ['/ip4/127.0.0.1/tcp/0'] })
  t.teardown(() => peer.stop())
  let received = 0
  const all = new Promise<void>((resolve) =>
    peer.handle(PROTOCOL, (inbound: Stream) => {
      inbound.addEventListener('message', (evt) => {
        received += evt.data.byteLength
        if (received >= expected) resolve()
      })
    }),
  )
  return { peer, all, received: () => received }
}

/** Sends `MESSAGES` small messages, each awaited as a relayed call would be sent, from `dial`'s stream. */
async function sendMessages(outbound: Stream) {
  for (let i = 0; i < MESSAGES; i++) {
    if (!outbound.send(new Uint8Array(100).fill(i))) await once(outbound, 'drain')
    // One message per turn of the event loop, as calls arrive: yamux and the transport would otherwise
    // gather several messages into one write and hide what one message costs.
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Dials `peer` from `dialer`, sends the messages, and returns the sizes of the socket writes until all arrived. */
async function sendFrom(dialer: Libp2p, peer: Libp2p, all: Promise<void>): Promise<number[]> {
  const outbound = await dialer.dialProtocol(peer.getMultiaddrs(), PROTOCOL, {
    signal: AbortSignal.timeout(10_000),
  })
  const { sizes } = await socketWrites(async () => {
    await sendMessages(outbound)
    await all
  })
  return sizes
}

t.test('each message leaves in one write with its length: none is a lone 2-byte length', async (t) => {
  const { peer, all, received } = await listener(t, MESSAGES * 100)
  const dialer = await createPeer({ listen: ['/ip4/127.0.0.1/tcp/0'] })
  t.teardown(() => dialer.stop())
  const sizes = await sendFrom(dialer, peer, all)
  t.equal(received(), MESSAGES * 100, 'every byte arrived, decrypted')
  t.ok(sizes.length >= MESSAGES, `the messages went out (${sizes.length} socket writes)`)
  t.equal(
    sizes.filter((size) => size === LENGTH_PREFIX_BYTES).length,
    0,
    'no frame length was written apart from its ciphertext',
  )
})

t.test('noise as installed writes a length apart from each frame (what the wrapper is for)', async (t) => {
  // A plain libp2p with the installed noise, unwrapped, dialling a project peer: if this stops holding, noise
  // has changed how it frames messages and the wrapper in protocol/noise-whole-frames.ts may be dropped.
  const { peer, all, received } = await listener(t, MESSAGES * 100)
  const plain = await createLibp2p({
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  })
  t.teardown(() => plain.stop())
  const sizes = await sendFrom(plain, peer, all)
  t.equal(
    received(),
    MESSAGES * 100,
    'a project peer and plain noise interoperate: the wire format is the same',
  )
  t.ok(
    sizes.filter((size) => size === LENGTH_PREFIX_BYTES).length >= MESSAGES,
    'the unwrapped side wrote each frame length on its own',
  )
})
