import type { JsonRpcProvider } from 'ethers'
import { NexusError } from '../protocol/errors.ts'
import { createLogger } from '../protocol/logger.ts'
import { manifestHash } from '../protocol/manifest.ts'
import { chainProvider } from '../trust/chain-provider.ts'
import { verifyInstalledPackage } from '../trust/installed-package.ts'
import { createManifest } from '../trust/manifest-create.ts'
import { manifestDocumentJson, readManifestDocument, writeOutput } from '../trust/manifest-documents.ts'
import { signManifest } from '../trust/manifest-signature.ts'
import { Registry } from '../trust/registry.ts'
import { RegistryFollower } from '../trust/registry-follower.ts'
import { loadSigner } from '../trust/signer-key.ts'
import { DEFAULT_CHAIN_ID, DEFAULT_CURATORS } from '../trust/trust-config.ts'
import { evaluateWhitelist } from '../trust/whitelist.ts'

/** Options of the manifest and registry commands, as parsed by `cli/nexus.ts`. */
export interface TrustOptions {
  output?: string
  id?: string
  transport?: string
  bin?: string
  arg?: string[]
  env?: string[]
  'operator-args'?: boolean
  cpu?: string
  'memory-mib'?: string
  note?: string[]
  'from-registry'?: boolean
  'chain-id'?: string
  curator?: string[]
  keystore?: string
  rpc?: string
  registry?: string
  governance?: string
  reason?: string
  installed?: boolean
  json?: boolean
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new NexusError('INVALID_CONFIG', `missing ${what}`)
  return value
}

function number(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n)) throw new NexusError('INVALID_CONFIG', `${what} must be a number, not ${value}`)
  return n
}

function provider(options: TrustOptions): JsonRpcProvider {
  return chainProvider(need(options.rpc, '--rpc <url>'), 250)
}

const print = (line: string) => process.stdout.write(`${line}\n`)

export async function manifestCommand(
  sub: string | undefined,
  args: string[],
  o: TrustOptions,
): Promise<number> {
  switch (sub) {
    case 'create': {
      const transport = o.transport ?? 'stdio'
      if (transport !== 'stdio' && transport !== 'streamable-http')
        throw new NexusError('INVALID_CONFIG', '--transport is stdio or streamable-http')
      const manifest = await createManifest(need(args[0], 'the npm package spec or tarball'), {
        id: o.id,
        transport,
        bin: o.bin,
        args: o.arg,
        env: o.env,
        operatorArgs: o['operator-args'],
        cpu: number(o.cpu, '--cpu'),
        memoryMiB: number(o['memory-mib'], '--memory-mib'),
        notes: o.note,
        fromRegistry: o['from-registry'],
      })
      writeOutput(o.output, `${JSON.stringify(manifest, null, 2)}\n`)
      return 0
    }
    case 'hash': {
      for (const { manifest } of readManifestDocument(need(args[0], 'the manifest file')).manifests)
        print(`${manifestHash(manifest)}  ${manifest.id}@${manifest.version}`)
      return 0
    }
    case 'sign': {
      const document = readManifestDocument(need(args[0], 'the manifest file'))
      const signer = await loadSigner({ keystore: o.keystore })
      const chainId = number(o['chain-id'], '--chain-id') ?? DEFAULT_CHAIN_ID
      const manifests = []
      for (const signed of document.manifests) manifests.push(await signManifest(signed, signer, chainId))
      const kind = document.kind === 'manifest' ? 'signed' : document.kind
      writeOutput(o.output, manifestDocumentJson({ kind, manifests }))
      process.stderr.write(
        `signed ${manifests.length} manifest(s) as ${signer.address} for chain ${chainId}\n`,
      )
      return 0
    }
    case 'verify': {
      const document = readManifestDocument(need(args[0], 'the manifest file'))
      let registryState: Awaited<ReturnType<RegistryFollower['start']>> | undefined
      if (o.registry !== undefined) {
        const chain = provider(o)
        const follower = new RegistryFollower({
          provider: chain,
          address: o.registry,
          pollIntervalMs: 60_000,
          logger: createLogger('nexus'),
        })
        try {
          registryState = await follower.start()
        } finally {
          await follower.stop()
          chain.destroy()
        }
      }
      const anchors = {
        curators: o.curator ?? DEFAULT_CURATORS,
        chainId: number(o['chain-id'], '--chain-id') ?? DEFAULT_CHAIN_ID,
      }
      const { active, refused } = evaluateWhitelist(document.manifests, anchors, registryState)
      let failures = refused.size
      for (const [key, entry] of active) {
        let note = `trusted  ${key}  ${entry.hash}`
        if (o.installed) {
          try {
            await verifyInstalledPackage(entry.manifest)
            note += '  installed package intact'
          } catch (err) {
            failures++
            note = `refused  ${key}  ${(err as Error).message}`
          }
        }
        print(note)
      }
      for (const [key, refusal] of refused) print(`refused  ${key}  ${refusal.code}: ${refusal.reason}`)
      return failures === 0 ? 0 : 1
    }
    default:
      throw new NexusError(
        'INVALID_CONFIG',
        `unknown command: manifest ${sub ?? ''} (create, hash, sign, verify)`,
      )
  }
}

export async function registryCommand(
  sub: string | undefined,
  args: string[],
  o: TrustOptions,
): Promise<number> {
  const chain = provider(o)
  try {
    if (sub === 'deploy') {
      const signer = await loadSigner({ keystore: o.keystore }, chain)
      const { registry, block } = await Registry.deploy(signer, o.governance)
      print(
        `registry ${registry.address} deployed in block ${block} on chain ${(await chain.getNetwork()).chainId}`,
      )
      return 0
    }
    const address = need(o.registry, '--registry <address>')
    if (sub === 'list') {
      const registry = new Registry(address, chain)
      const records = await registry.list()
      const curators = await registry.curators()
      if (o.json) {
        print(JSON.stringify({ governance: await registry.governance(), curators, records }, null, 2))
        return 0
      }
      print(`governance ${await registry.governance()}`)
      for (const curator of curators) print(`curator    ${curator}`)
      for (const r of records)
        print(
          `${r.status.padEnd(8)} ${`${r.id}@${r.version}`.padEnd(40)} ${r.manifestHash}  block ${r.publishedBlock}` +
            (r.status === 'revoked' ? `  revoked in block ${r.revokedBlock}: ${r.reason}` : ''),
        )
      return 0
    }
    const registry = new Registry(address, await loadSigner({ keystore: o.keystore }, chain))
    switch (sub) {
      case 'publish': {
        const document = readManifestDocument(need(args[0], 'the manifest or whitelist file'))
        for (const { manifest } of document.manifests) {
          const hash = manifestHash(manifest)
          const current = await registry.get(manifest.id, manifest.version)
          const key = `${manifest.id}@${manifest.version}`
          if (current.status !== 'none' && current.manifestHash === hash) {
            print(`already  ${key}  ${hash} (${current.status})`)
            continue
          }
          const receipt = await registry.publish(manifest.id, manifest.version, hash)
          print(`published ${key}  ${hash}  block ${receipt.blockNumber}`)
        }
        return 0
      }
      case 'revoke': {
        const [id, version] = [need(args[0], 'the server id'), need(args[1], 'the version')]
        const receipt = await registry.revoke(id, version, need(o.reason, '--reason <text>'))
        print(`revoked ${id}@${version} in block ${receipt.blockNumber}`)
        return 0
      }
      case 'add-curator':
      case 'remove-curator': {
        const curator = need(args[0], 'the curator address')
        const receipt =
          sub === 'add-curator' ? await registry.addCurator(curator) : await registry.removeCurator(curator)
        print(
          `${sub === 'add-curator' ? 'added' : 'removed'} curator ${curator} in block ${receipt.blockNumber}`,
        )
        return 0
      }
      case 'transfer-governance': {
        const receipt = await registry.transferGovernance(need(args[0], 'the new governance address'))
        print(`governance transfer to ${args[0]} started in block ${receipt.blockNumber}; it must accept`)
        return 0
      }
      case 'accept-governance': {
        const receipt = await registry.acceptGovernance()
        print(`governance accepted in block ${receipt.blockNumber}`)
        return 0
      }
      default:
        throw new NexusError(
          'INVALID_CONFIG',
          `unknown command: registry ${sub ?? ''} (deploy, publish, revoke, list, add-curator, remove-curator, transfer-governance, accept-governance)`,
        )
    }
  } finally {
    chain.destroy()
  }
}
