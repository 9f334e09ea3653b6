import { readFileSync } from 'node:fs'
import { type Provider, Wallet } from 'ethers'
import { NexusError } from '../protocol/errors.ts'

export interface KeySource {
  /** An encrypted JSON keystore (its password in NEXUS_KEYSTORE_PASSWORD). */
  keystore?: string
}

/**
 * The signing key of a curator or of governance: from an encrypted keystore file, or from NEXUS_PRIVATE_KEY.
 * The key is never printed, and errors never include it.
 */
export async function loadSigner(source: KeySource, provider?: Provider): Promise<Wallet> {
  if (source.keystore !== undefined) {
    const password = process.env.NEXUS_KEYSTORE_PASSWORD
    if (password === undefined)
      throw new NexusError('INVALID_CONFIG', 'set NEXUS_KEYSTORE_PASSWORD to decrypt the keystore')
    let json: string
    try {
      json = readFileSync(source.keystore, 'utf8')
    } catch (err) {
      throw new NexusError(
        'INVALID_CONFIG',
        `cannot read keystore ${source.keystore}: ${(err as Error).message}`,
      )
    }
    try {
      const wallet = await Wallet.fromEncryptedJson(json, password)
      return new Wallet(wallet.privateKey, provider)
    } catch {
      throw new NexusError('INVALID_CONFIG', `cannot decrypt keystore ${source.keystore} (wrong password?)`)
    }
  }
  const key = process.env.NEXUS_PRIVATE_KEY
  if (key === undefined || key === '')
    throw new NexusError('INVALID_CONFIG', 'no signing key: pass --keystore <file> or set NEXUS_PRIVATE_KEY')
  try {
    return new Wallet(key.trim(), provider)
  } catch {
    throw new NexusError('INVALID_CONFIG', 'NEXUS_PRIVATE_KEY is not a valid private key (32 bytes, hex)')
  }
}
