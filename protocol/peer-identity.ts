import { readFileSync } from 'node:fs'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { errorMessage, NexusError } from './errors.ts'

/**
 * A peer's lasting identity: its libp2p private key as base64 of the protobuf encoding, one line. Kept in a
 * file (a Kubernetes Secret mounted as one), it gives a peer the same peer id across restarts and pods, so the
 * addresses other peers bootstrap with stay valid. Changing this encoding breaks every stored identity.
 */
export function encodePeerKey(key: PrivateKey): string {
  return Buffer.from(privateKeyToProtobuf(key)).toString('base64')
}

/** A new Ed25519 identity, encoded for an identity file. */
export async function newPeerKeyText(): Promise<string> {
  return encodePeerKey(await generateKeyPair('Ed25519'))
}

/** Reads an identity file; names the file and the problem when it is missing or not a key. */
export function readPeerKey(path: string): PrivateKey {
  let text: string
  try {
    text = readFileSync(path, 'utf8').trim()
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot read the identity file ${path}: ${errorMessage(err)}`)
  }
  try {
    if (!/^[A-Za-z0-9+/]+=*$/.test(text)) throw new Error('not base64')
    return privateKeyFromProtobuf(Buffer.from(text, 'base64'))
  } catch (err) {
    throw new NexusError(
      'INVALID_CONFIG',
      `the identity file ${path} does not hold a peer key (base64 of a libp2p private key, as \`nexus peer-key\` prints): ${errorMessage(err)}`,
    )
  }
}
