import { getAddress, type Signer, TypedDataEncoder, verifyTypedData } from 'ethers'
import * as z from 'zod/v4'
import { NexusError } from '../protocol/errors.ts'
import { type Manifest, ManifestSchema, manifestHash, parseManifest } from '../protocol/manifest.ts'

/**
 * Curators sign manifests as EIP-712 typed data: a wallet shows the server id, version and package it is asked
 * to approve, and the hash binds every other field. The domain pins the chain the whitelist belongs to, so a
 * signature made for one network is refused on another.
 */
export const MANIFEST_DOMAIN_NAME = 'MCP Nexus Whitelist'
export const MANIFEST_DOMAIN_VERSION = '1'
export const MANIFEST_TYPES = {
  ServerManifest: [
    { name: 'id', type: 'string' },
    { name: 'version', type: 'string' },
    { name: 'package', type: 'string' },
    { name: 'manifestHash', type: 'bytes32' },
  ],
}

export interface ManifestDomain {
  name: string
  version: string
  chainId: number
}

export function manifestDomain(chainId: number): ManifestDomain {
  return { name: MANIFEST_DOMAIN_NAME, version: MANIFEST_DOMAIN_VERSION, chainId }
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/

export const CuratorSignatureSchema = z
  .object({
    signer: z.string().regex(ADDRESS, 'an Ethereum address'),
    /** 65-byte signature, hex. */
    signature: z.string().regex(/^0x[0-9a-fA-F]{130}$/, '65 bytes as 0x-prefixed hex'),
    chainId: z.number().int().positive(),
  })
  .strict()
export type CuratorSignature = z.infer<typeof CuratorSignatureSchema>

export const SignedManifestSchema = z
  .object({
    manifest: ManifestSchema,
    signatures: z.array(CuratorSignatureSchema).max(32).default([]),
  })
  .strict()
export type SignedManifest = z.infer<typeof SignedManifestSchema>

function typedValue(manifest: Manifest) {
  return {
    id: manifest.id,
    version: manifest.version,
    package: manifest.package,
    manifestHash: manifestHash(manifest),
  }
}

/** The EIP-712 digest a curator signs for this manifest on this chain. */
export function manifestDigest(manifest: Manifest, chainId: number): string {
  return TypedDataEncoder.hash(manifestDomain(chainId), MANIFEST_TYPES, typedValue(manifest))
}

/** Adds the signer's signature (replacing an older one of the same signer for the same chain). */
export async function signManifest(
  signed: SignedManifest,
  signer: Signer,
  chainId: number,
): Promise<SignedManifest> {
  const signature = await signer.signTypedData(
    manifestDomain(chainId),
    MANIFEST_TYPES,
    typedValue(signed.manifest),
  )
  const address = getAddress(await signer.getAddress())
  const others = signed.signatures.filter((s) => !(getAddress(s.signer) === address && s.chainId === chainId))
  return { manifest: signed.manifest, signatures: [...others, { signer: address, signature, chainId }] }
}

export interface TrustAnchors {
  /** Addresses whose signatures make a manifest trusted. */
  curators: Iterable<string>
  chainId: number
  /** How many distinct trusted curators must have signed; 1 by default. */
  threshold?: number
}

/**
 * Checks that enough trusted curators signed exactly this manifest for this chain. Returns the manifest hash;
 * throws UNTRUSTED_MANIFEST naming what is wrong (no signature, wrong chain, forged or foreign signer).
 */
export function verifySignedManifest(signed: SignedManifest, anchors: TrustAnchors): string {
  const manifest = parseManifest(signed.manifest)
  const label = `${manifest.id}@${manifest.version}`
  const curators = new Set([...anchors.curators].map((c) => getAddress(c)))
  const threshold = anchors.threshold ?? 1
  if (signed.signatures.length === 0)
    throw new NexusError('UNTRUSTED_MANIFEST', `manifest ${label} is not signed`)
  const trusted = new Set<string>()
  const problems: string[] = []
  for (const { signer, signature, chainId } of signed.signatures) {
    if (chainId !== anchors.chainId) {
      problems.push(`a signature is for chain ${chainId}, this whitelist belongs to chain ${anchors.chainId}`)
      continue
    }
    let recovered: string
    try {
      recovered = verifyTypedData(manifestDomain(chainId), MANIFEST_TYPES, typedValue(manifest), signature)
    } catch (err) {
      problems.push(`a signature is malformed (${(err as Error).message})`)
      continue
    }
    if (recovered !== getAddress(signer)) {
      problems.push(`the signature claimed by ${signer} was made by ${recovered} or over other content`)
      continue
    }
    if (!curators.has(recovered)) {
      problems.push(`${recovered} is not a trusted curator`)
      continue
    }
    trusted.add(recovered)
  }
  if (trusted.size < threshold) {
    const found = `${trusted.size} trusted curator signature(s), ${threshold} required`
    throw new NexusError(
      'UNTRUSTED_MANIFEST',
      `manifest ${label} is not trusted: ${found}${problems.length > 0 ? `; ${problems.join('; ')}` : ''}`,
    )
  }
  return manifestHash(manifest)
}
