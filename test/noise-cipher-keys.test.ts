import crypto, { KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import t from 'tap'
import { noiseCryptoWithKeyObjects as tuned } from '../protocol/noise-cipher-keys.ts'

// The tuned crypto writes what noise's own writes, byte for byte, reads it back, refuses what was tampered with,
// and hands node's cipher a key object (made once per session key) instead of the key's bytes.

const k = crypto.randomBytes(32)
const nonce = new Uint8Array(12)
nonce[4] = 7
const ad = crypto.randomBytes(16)
const bytes = (out: Uint8Array | { subarray(): Uint8Array }) => Buffer.from(out.subarray())

t.test('the same frames as noise, at every size either side of its switch to node', async (t) => {
  for (const size of [0, 100, 1199, 1200, 5_000, 65_519]) {
    const plaintext = crypto.randomBytes(size)
    const ours = tuned.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    const noises = defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    t.same(bytes(ours), bytes(noises), `${size} bytes: the same ciphertext`)
    t.same(
      bytes(tuned.chaCha20Poly1305Decrypt(bytes(noises), nonce, ad, k)),
      plaintext,
      `${size} bytes: read back`,
    )
    const tampered = bytes(ours)
    tampered[0]! ^= 1
    t.throws(() => tuned.chaCha20Poly1305Decrypt(tampered, nonce, ad, k), `${size} bytes: tampered, refused`)
  }
})

t.test("node's cipher gets a key object, the same one for every frame of a session key", async (t) => {
  const seen: unknown[] = []
  const createCipheriv = crypto.createCipheriv
  const createDecipheriv = crypto.createDecipheriv
  crypto.createCipheriv = ((...args: Parameters<typeof createCipheriv>) => {
    seen.push(args[1])
    return createCipheriv(...args)
  }) as typeof createCipheriv
  crypto.createDecipheriv = ((...args: Parameters<typeof createDecipheriv>) => {
    seen.push(args[1])
    return createDecipheriv(...args)
  }) as typeof createDecipheriv
  t.teardown(() => {
    crypto.createCipheriv = createCipheriv
    crypto.createDecipheriv = createDecipheriv
  })
  const sessionKey = crypto.randomBytes(32)
  for (let i = 0; i < 3; i++) {
    const frame = tuned.chaCha20Poly1305Encrypt(crypto.randomBytes(4_000), nonce, ad, sessionKey)
    tuned.chaCha20Poly1305Decrypt(bytes(frame), nonce, ad, sessionKey)
  }
  t.equal(seen.length, 6, 'three frames each way went to node')
  t.ok(
    seen.every((key) => key instanceof KeyObject),
    'every one with a key object',
  )
  t.equal(new Set(seen).size, 1, 'one key object for the session key')
})
