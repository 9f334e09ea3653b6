import { createSecretKey, type KeyObject } from 'node:crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import { defaultCrypto, nodeCrypto } from '@chainsafe/libp2p-noise/crypto'

/**
 * Noise's own crypto, with its session keys handed to OpenSSL as key objects.
 *
 * `@chainsafe/libp2p-noise` 17 encrypts frames of 1,200 bytes and more with `node:crypto`, passing the session key
 * as bytes to `createCipheriv` for every frame. Node 24 then asks whether those bytes are a `KeyObject` and then a
 * `CryptoKey` by reading private slots and catching the `TypeError` each read throws: two exceptions per frame,
 * whose cost grows with the depth of the stack (libp2p's is deep). In a 100-peer gossip network that was a tenth
 * of all CPU (`getKeyObjectSlots`, `getSlots`). A key object answers the first question at once.
 *
 * The key of a session direction is one buffer for the session's life (noise's cipher state), so its key object
 * is made once and kept for as long as that buffer lives. Frames below 1,200 bytes go to noise's WebAssembly
 * cipher as before, and the handshake is unchanged. `test/noise-cipher-keys.test.ts` checks the output is noise's.
 */
const keys = new WeakMap<Uint8Array, KeyObject>()

function keyObject(k: Uint8Array): Uint8Array {
  let key = keys.get(k)
  if (key === undefined) {
    key = createSecretKey(k)
    keys.set(k, key)
  }
  // `createCipheriv` takes a key object wherever it takes bytes; noise's types know only the bytes.
  return key as unknown as Uint8Array
}

/** Where noise itself switches from its WebAssembly cipher to node's (see its `defaultCrypto`). */
const NODE_CIPHER_FROM_BYTES = 1200

export const noiseCryptoWithKeyObjects: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    if (plaintext.byteLength < NODE_CIPHER_FROM_BYTES)
      return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    return nodeCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, keyObject(k))
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < NODE_CIPHER_FROM_BYTES)
      return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    return nodeCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, keyObject(k), dst)
  },
}
