import { noise } from '@chainsafe/libp2p-noise'
import type { ConnectionEncrypter, MessageStream, SecuredConnection } from '@libp2p/interface'
import { noiseCryptoWithKeyObjects } from './noise-cipher-keys.ts'
import { decodeLengthsWithoutStackTraces } from './noise-length-decoder.ts'

/**
 * Noise whose frames each reach the socket in one write.
 *
 * `@chainsafe/libp2p-noise` 17 encrypts a message into a list of two buffers, the 2-byte length and the
 * ciphertext, and `@libp2p/tcp` writes a list buffer by buffer: every message cost two `write` calls, and the
 * peer, woken by the first, read the 2-byte length alone and had to wake again for the rest (strace of a
 * relayed call: `write(fd, "\0\223", 2)` then `write(fd, …, 147)`, answered by `read = 2` then `read = 147`).
 * In a virtual machine a write that wakes another process is the costliest thing a relay does, so here the
 * encrypted frames of a message are joined into one buffer (a copy of a few hundred bytes for a call, cheaper
 * than a system call at any size) before they go to the transport.
 *
 * Its decoder of frame lengths and its session keys are tuned too (`noise-length-decoder.ts`,
 * `noise-cipher-keys.ts`). Only the secured connection's `encrypt` is wrapped, per connection: the handshake,
 * the cipher and the frame layout on the wire are noise's own and unchanged. `test/noise-whole-frames.test.ts`
 * checks that no frame length leaves apart from its ciphertext, and that the installed noise alone still does
 * that (else this can go).
 */
export function noiseWithWholeFrames(): (
  components: Parameters<ReturnType<typeof noise>>[0],
) => ConnectionEncrypter {
  const createNoise = noise({ crypto: noiseCryptoWithKeyObjects })
  return (components) => {
    const encrypter = createNoise(components)
    const secureInbound = encrypter.secureInbound.bind(encrypter)
    const secureOutbound = encrypter.secureOutbound.bind(encrypter)
    const tune = <T extends SecuredConnection<unknown>>(secured: T): T => {
      decodeLengthsWithoutStackTraces(secured.connection)
      return joinFrames(secured)
    }
    encrypter.secureInbound = async (connection, options) => tune(await secureInbound(connection, options))
    encrypter.secureOutbound = async (connection, options) => tune(await secureOutbound(connection, options))
    return encrypter
  }
}

/** What the secured connection has that this relies on: noise's `encrypt`, a list of buffers per message. */
interface Encrypting {
  encrypt(chunk: Uint8Array): Uint8Array | { subarray(): Uint8Array }
}

function joinFrames<T extends SecuredConnection<unknown>>(secured: T): T {
  if (!encryptsInFrames(secured.connection)) return secured
  const connection = secured.connection
  const encrypt = connection.encrypt.bind(connection)
  // What `encrypt` returns goes to the transport's `send`, which takes a buffer or a list alike. `subarray()` of a
  // list of several buffers is one new buffer holding them all.
  connection.encrypt = (chunk) => {
    const frames = encrypt(chunk)
    return frames instanceof Uint8Array ? frames : frames.subarray()
  }
  return secured
}

/** Whether a secured connection is noise's, with the `encrypt` method this wraps. */
function encryptsInFrames(connection: MessageStream): connection is MessageStream & Encrypting {
  return typeof (connection as Partial<Encrypting>).encrypt === 'function'
}
