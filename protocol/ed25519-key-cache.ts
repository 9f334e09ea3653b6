import { createPublicKey, type KeyObject, verify } from 'node:crypto'
import { publicKeyFromRaw } from '@libp2p/crypto/keys'

/**
 * Ed25519 signature checks against a public key imported once per peer, not once per check.
 *
 * `@libp2p/crypto` 5 verifies an Ed25519 signature by first importing the raw public key into OpenSSL (a JWK
 * built with base64url, parsed, turned into a key object) and then verifying: every gossiped record costs every
 * peer one import. The records of a network come from its few hundred peers again and again, so their imported
 * keys are kept, most recently used last, up to `MAX_KEYS`.
 *
 * Only `Ed25519PublicKey#verify` changes (the class is the package's own; nothing else reaches it): the same
 * checks of the signature's length, the same answer. `test/ed25519-key-cache.test.ts` checks both.
 */
const MAX_KEYS = 4096
const SIGNATURE_BYTES = 64

/** Signed bytes, or a list of buffers (uint8arraylist's, which `subarray()` joins). */
type Signed = Uint8Array | { subarray(): Uint8Array }
type Verify = (data: Signed, sig: Uint8Array, options?: { signal?: AbortSignal }) => boolean
const prototype = Object.getPrototypeOf(publicKeyFromRaw(new Uint8Array(32))) as { verify: Verify }
const original = prototype.verify
const keys = new Map<string, KeyObject>()
let installed = false

function keyObject(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url')
  let key = keys.get(id)
  if (key !== undefined) {
    keys.delete(id)
  } else {
    key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: id } })
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value!)
  }
  keys.set(id, key)
  return key
}

export function verifyWithCachedKeys(): void {
  if (installed) return
  installed = true
  prototype.verify = function verifyWithCachedKey(this: { raw: Uint8Array }, data, sig, options) {
    options?.signal?.throwIfAborted()
    // As the original: a signature of the wrong length throws (gossipsub counts that as an invalid record).
    if (!(sig instanceof Uint8Array) || sig.byteLength !== SIGNATURE_BYTES)
      throw new TypeError('"sig" must be 64 bytes in length.')
    return verify(null, data instanceof Uint8Array ? data : data.subarray(), keyObject(this.raw), sig)
  }
}

/** Keys imported and kept (for the test). */
export function cachedKeyCount(): number {
  return keys.size
}

/** The package's own verify, for comparison in the test. */
export const originalVerify: Verify = original
