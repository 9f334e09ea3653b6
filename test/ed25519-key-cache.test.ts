import { generateKeyPair } from '@libp2p/crypto/keys'
import t from 'tap'
import { Uint8ArrayList } from 'uint8arraylist'
import { cachedKeyCount, originalVerify, verifyWithCachedKeys } from '../protocol/ed25519-key-cache.ts'

// The patched verify gives the package's own answers: for good signatures, tampered data, another key's
// signature and malformed signatures; and each peer's key is imported once however many records it signs.

/** What a key's verify takes: bytes, or a list of buffers (the installed uint8arraylist's). */
type Signed = Parameters<Awaited<ReturnType<typeof generateKeyPair>>['publicKey']['verify']>[0]

verifyWithCachedKeys()
verifyWithCachedKeys() // installing twice changes nothing

t.test('the same answers as the package, with one imported key per signer', async (t) => {
  const [alice, bob] = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
  const before = cachedKeyCount()
  for (let i = 0; i < 20; i++) {
    const data = new TextEncoder().encode(`record ${i}`)
    const sig = await alice.sign(data)
    const tampered = data.slice()
    tampered[0]! ^= 1
    const cases: [string, Signed, Uint8Array, typeof alice.publicKey][] = [
      ['a good signature', data, sig, alice.publicKey],
      [
        'a good signature over a list of buffers',
        new Uint8ArrayList(data.subarray(0, 3), data.subarray(3)) as unknown as Signed,
        sig,
        alice.publicKey,
      ],
      ['tampered data', tampered, sig, alice.publicKey],
      ["another signer's key", data, sig, bob.publicKey],
    ]
    for (const [what, bytes, signature, key] of cases) {
      const expected = await originalVerify.call(key, bytes as never, signature)
      if (i === 0)
        t.equal(key.verify(bytes, signature), expected, `${what}: ${expected}, as the package says`)
      else if (key.verify(bytes, signature) !== expected) t.fail(`${what}, record ${i}: another answer`)
    }
  }
  t.equal(cachedKeyCount() - before, 2, 'two signers, two imported keys, for 80 checks')
  t.throws(
    () => alice.publicKey.verify(new Uint8Array(3), new Uint8Array(10)),
    TypeError,
    'a short signature throws',
  )
  t.throws(
    () => alice.publicKey.verify(new Uint8Array(3), new Uint8Array(64), { signal: AbortSignal.abort() }),
    'an aborted check throws',
  )
})
