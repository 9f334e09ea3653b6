import { join } from 'node:path'
import * as z from 'zod/v4'

/** The curator who signs the whitelist shipped with Nexus (the release key; its secret is not in the repo). */
export const DEFAULT_CURATORS = ['0x1161461Ca185c40C1A7508C8Ea6dEB4b9Aa608D3']
/** The chain id the embedded whitelist is signed for when no registry is used. */
export const DEFAULT_CHAIN_ID = 1
/** Signed manifests of the four reference servers, for the versions this release installs. */
export const DEFAULT_WHITELIST_PATH = join(import.meta.dirname, 'default-whitelist.json')

const Address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'an Ethereum address (0x and 40 hex digits)')

/** Where a node or gateway gets its whitelist, and whom it trusts. */
export const TrustConfigSchema = z
  .object({
    /** A file of signed manifests; the embedded whitelist by default. With a registry, the manifests it anchors. */
    whitelist: z.string().min(1).optional(),
    /** Curators whose signatures count (offline only: with a registry, its curator set decides). */
    curators: z.array(Address).min(1).optional(),
    /** The chain id signatures must be made for (offline only: with a registry, the chain's own id). */
    chainId: z.number().int().positive().optional(),
    /** How many distinct curators must have signed a manifest. */
    threshold: z.number().int().min(1).default(1),
    /** JSON-RPC endpoint of the chain that holds the registry. */
    chainRpc: z.url().optional(),
    /** Address of the NexusRegistry contract. */
    registry: Address.optional(),
    /** How often to look for new registry events. */
    pollIntervalMs: z.number().int().min(50).default(1_000),
    /**
     * Development only: lets a node run servers configured with their own command and no manifest, and a
     * gateway route to them. Never on a public network.
     */
    allowUnverified: z.boolean().default(false),
  })
  .strict()
  .refine((t) => (t.chainRpc === undefined) === (t.registry === undefined), {
    message: 'set both chainRpc and registry, or neither',
    path: ['registry'],
  })
  .refine((t) => t.chainRpc === undefined || t.curators === undefined, {
    message: 'with a registry, the curators are the registry’s; remove curators',
    path: ['curators'],
  })
export type TrustConfig = z.infer<typeof TrustConfigSchema>
export type TrustConfigInput = z.input<typeof TrustConfigSchema>

/** The trust options both peer CLIs take, and what they override in the configuration file. */
export const TRUST_CLI_OPTIONS = {
  whitelist: { type: 'string' },
  curator: { type: 'string', multiple: true },
  'chain-rpc': { type: 'string' },
  registry: { type: 'string' },
} as const

export const TRUST_CLI_USAGE = `
Whitelist (see README, "Trust"):
      --whitelist <file>     signed manifests (default: the embedded whitelist of the reference servers)
      --curator <address>    trusted curator, repeatable (offline whitelist only)
      --chain-rpc <url>      follow the registry on this chain ...
      --registry <address>   ... at this address`

export function trustFromCli(
  values: { whitelist?: string; curator?: string[]; 'chain-rpc'?: string; registry?: string },
  base: TrustConfigInput = {},
): TrustConfigInput {
  return {
    ...base,
    ...(values.whitelist !== undefined ? { whitelist: values.whitelist } : {}),
    ...(values.curator !== undefined ? { curators: values.curator } : {}),
    ...(values['chain-rpc'] !== undefined ? { chainRpc: values['chain-rpc'] } : {}),
    ...(values.registry !== undefined ? { registry: values.registry } : {}),
  }
}
