import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Wallet } from 'ethers'
import { manifestHash } from '../protocol/manifest.ts'
import { type LocalChain, type LocalChainOptions, startLocalChain } from './anvil.ts'
import { type SignedManifest, signManifest } from './manifest-signature.ts'
import { Registry } from './registry.ts'
import type { TrustConfigInput } from './trust-config.ts'
import { writeWhitelistFile } from './whitelist-file.ts'

export interface LocalRegistry {
  chain: LocalChain
  /** The registry as its governance account sees it. */
  registry: Registry
  governance: Wallet
  curator: Wallet
  /** The file of the curator-signed manifests the registry anchors. */
  bundlePath: string
  /** What nodes and gateways need to follow this registry. */
  trust: TrustConfigInput
  stop(): Promise<void>
}

/**
 * A whole on-chain whitelist on this machine: anvil, a deployed registry (governance: dev account 0), a curator
 * (dev account 1) who signs the given manifests for this chain, and every manifest published. For the demo
 * (`npm start -- --chain`) and for tests.
 */
export async function startLocalRegistry(
  manifests: SignedManifest[],
  options: LocalChainOptions & { pollIntervalMs?: number } = {},
): Promise<LocalRegistry> {
  const chain = await startLocalChain(options)
  const dir = mkdtempSync(join(tmpdir(), 'nexus-registry-'))
  try {
    const governance = chain.wallet(0)
    const curator = chain.wallet(1)
    const { registry } = await Registry.deploy(governance)
    await registry.addCurator(curator.address)
    const signed: SignedManifest[] = []
    for (const { manifest } of manifests) {
      signed.push(await signManifest({ manifest, signatures: [] }, curator, chain.chainId))
      await registry.publish(manifest.id, manifest.version, manifestHash(manifest))
    }
    const bundlePath = join(dir, 'whitelist.json')
    writeWhitelistFile(bundlePath, signed)
    return {
      chain,
      registry,
      governance,
      curator,
      bundlePath,
      trust: {
        whitelist: bundlePath,
        chainRpc: chain.url,
        registry: registry.address,
        pollIntervalMs: options.pollIntervalMs ?? 200,
      },
      stop: async () => {
        await chain.stop()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    await chain.stop()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}
