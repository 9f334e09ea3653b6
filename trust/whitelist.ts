import { EventEmitter } from 'node:events'
import { getAddress } from 'ethers'
import { NexusError, type NexusErrorCode } from '../protocol/errors.ts'
import type { Manifest } from '../protocol/manifest.ts'
import { type SignedManifest, type TrustAnchors, verifySignedManifest } from './manifest-signature.ts'
import type { RegistryState } from './registry-follower.ts'

/** A manifest the whitelist lets run: signed by trusted curators and, with a registry, published and live. */
export interface WhitelistEntry {
  manifest: Manifest
  hash: string
}

/** A manifest the whitelist refuses, and why. */
export interface Refusal {
  code: Extract<NexusErrorCode, 'UNTRUSTED_MANIFEST' | 'SERVER_REVOKED'>
  reason: string
}

export interface WhitelistState {
  /** Keyed by `id@version`. */
  active: Map<string, WhitelistEntry>
  refused: Map<string, Refusal>
}

export function label(id: string, version: string): string {
  return `${id}@${version}`
}

function revokedReason(key: string, record: { revokedBlock: number; reason: string }): string {
  return `${key} was revoked in block ${record.revokedBlock}: ${record.reason || 'no reason given'}`
}

/**
 * Decides which manifests may run. Offline (no registry): every manifest that enough trusted curators signed.
 * With a registry: the curators are the registry's, and a manifest must also be published there under the same
 * hash and not revoked. Pure, so that every peer given the same input reaches the same answer.
 */
export function evaluateWhitelist(
  bundle: SignedManifest[],
  anchors: TrustAnchors,
  registry?: RegistryState,
): WhitelistState {
  const active = new Map<string, WhitelistEntry>()
  const refused = new Map<string, Refusal>()
  const effective: TrustAnchors =
    registry === undefined ? anchors : { ...anchors, curators: registry.curators, chainId: registry.chainId }
  for (const signed of bundle) {
    const key = label(signed.manifest.id, signed.manifest.version)
    let hash: string
    try {
      hash = verifySignedManifest(signed, effective)
    } catch (err) {
      refused.set(key, { code: 'UNTRUSTED_MANIFEST', reason: (err as Error).message })
      continue
    }
    if (registry !== undefined) {
      const record = registry.records.get(key)
      if (record === undefined) {
        refused.set(key, { code: 'UNTRUSTED_MANIFEST', reason: `${key} is not published in the registry` })
        continue
      }
      if (record.manifestHash !== hash) {
        const reason = `${key}: the registry anchors manifest ${record.manifestHash}, this one hashes to ${hash}`
        refused.set(key, { code: 'UNTRUSTED_MANIFEST', reason })
        continue
      }
      if (record.status === 'revoked') {
        const reason = revokedReason(key, record)
        refused.set(key, { code: 'SERVER_REVOKED', reason })
        continue
      }
    }
    if (active.has(key) && active.get(key)!.hash !== hash) {
      refused.set(key, { code: 'UNTRUSTED_MANIFEST', reason: `${key} has two different signed manifests` })
      active.delete(key)
      continue
    }
    if (!refused.has(key)) active.set(key, { manifest: signed.manifest, hash })
  }
  if (registry !== undefined) {
    for (const [key, record] of registry.records) {
      if (active.has(key) || refused.has(key)) continue
      const reason =
        record.status === 'revoked'
          ? revokedReason(key, record)
          : `${key} is published in the registry, but no signed manifest for it was provided`
      refused.set(key, {
        code: record.status === 'revoked' ? 'SERVER_REVOKED' : 'UNTRUSTED_MANIFEST',
        reason,
      })
    }
  }
  return { active, refused }
}

export interface WhitelistChange {
  added: WhitelistEntry[]
  /** Entries that were active and no longer are, with why. */
  removed: { entry: WhitelistEntry; refusal: Refusal }[]
}

export interface WhitelistEvents {
  change: [WhitelistChange]
}

/**
 * The live whitelist a node or gateway enforces. `update` replaces what it knows (a new registry state); the
 * `change` event names what became allowed and what stopped being allowed.
 */
export class Whitelist extends EventEmitter<WhitelistEvents> {
  #bundle: SignedManifest[]
  readonly #anchors: TrustAnchors
  /** Where the whitelist comes from, for messages: a file path or `registry 0x… on chain N`. */
  readonly source: string
  #state: WhitelistState

  constructor(bundle: SignedManifest[], anchors: TrustAnchors, source: string, registry?: RegistryState) {
    super()
    this.#bundle = bundle
    this.#anchors = { ...anchors, curators: [...anchors.curators].map((c) => getAddress(c)) }
    this.source = source
    this.#state = evaluateWhitelist(bundle, this.#anchors, registry)
  }

  /**
   * The registry's new state, and with it the signed manifests as they are now (a curator adds the manifest of
   * a version before governance publishes it): a newly published version becomes active here.
   */
  update(registry: RegistryState, bundle: SignedManifest[] = this.#bundle): void {
    this.#bundle = bundle
    const previous = this.#state
    this.#state = evaluateWhitelist(this.#bundle, this.#anchors, registry)
    const added = [...this.#state.active].filter(([k]) => !previous.active.has(k)).map(([, e]) => e)
    const removed = [...previous.active]
      .filter(([k]) => !this.#state.active.has(k))
      .map(([k, entry]) => ({ entry, refusal: this.#state.refused.get(k)! }))
    if (added.length > 0 || removed.length > 0) this.emit('change', { added, removed })
  }

  entries(): WhitelistEntry[] {
    return [...this.#state.active.values()]
  }

  refusals(): Map<string, Refusal> {
    return new Map(this.#state.refused)
  }

  /**
   * The manifest to run for a server: the given version, or else the one listed last among its active
   * versions. Throws UNTRUSTED_MANIFEST or SERVER_REVOKED with the reason.
   */
  resolve(id: string, version?: string): WhitelistEntry {
    if (version !== undefined) {
      const key = label(id, version)
      const entry = this.#state.active.get(key)
      if (entry !== undefined) return entry
      const refusal = this.#state.refused.get(key)
      if (refusal !== undefined) throw new NexusError(refusal.code, refusal.reason)
      throw new NexusError('UNTRUSTED_MANIFEST', `${key} is not in the whitelist (${this.source})`)
    }
    const versions = this.entries().filter((e) => e.manifest.id === id)
    if (versions.length > 0) return versions[versions.length - 1]!
    const refusals = [...this.#state.refused].filter(([k]) => k.startsWith(`${id}@`))
    if (refusals.length > 0) {
      const [, refusal] = refusals[refusals.length - 1]!
      throw new NexusError(refusal.code, refusal.reason)
    }
    throw new NexusError('UNTRUSTED_MANIFEST', `server ${id} is not in the whitelist (${this.source})`)
  }

  /** Whether a node announcing this server runs a manifest the whitelist allows. */
  allows(id: string, version: string, hash: string): boolean {
    return this.#state.active.get(label(id, version))?.hash === hash
  }

  /** Whether some version of the server is allowed (for hosts known from the DHT, whose hash is not known). */
  allowsSomeVersion(id: string): boolean {
    return this.entries().some((e) => e.manifest.id === id)
  }
}
