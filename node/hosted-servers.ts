import { errorMessage, isNexusError, NexusError, type NexusErrorCode } from '../protocol/errors.ts'
import { type Manifest, manifestPackage } from '../protocol/manifest.ts'
import { verifyInstalledPackage } from '../trust/installed-package.ts'
import type { Whitelist } from '../trust/whitelist.ts'
import {
  type HostedServerConfig,
  HttpServerConfigSchema,
  isWhitelistedServer,
  type ServerConfig,
  StdioServerConfigSchema,
  type WhitelistedServer,
} from './config.ts'
import { serverHash } from './server-hash.ts'

/** A server the node will run, and the hash it announces for it. */
export interface ResolvedServer {
  config: ServerConfig
  manifestHash: string
}

export interface ServerRefusal {
  id: string
  code: NexusErrorCode
  reason: string
}

/** How a whitelisted manifest runs on the process runtime, with the operator's values for its variables. */
export function launchFromManifest(manifest: Manifest, settings: WhitelistedServer): ServerConfig {
  const allowed = new Set(manifest.env)
  const given = [...Object.keys(settings.env), ...settings.passEnv]
  const foreign = given.filter((name) => !allowed.has(name))
  if (foreign.length > 0)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id}: its manifest does not allow the variable(s) ${foreign.join(', ')}` +
        ` (allowed: ${manifest.env.join(', ') || 'none'})`,
    )
  if (settings.args.length > 0 && !manifest.operatorArgs)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id}: its manifest does not let the operator add arguments (remove args)`,
    )
  const ref = manifestPackage(manifest)
  if (ref.kind !== 'npm')
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id} is an OCI image; the process runtime runs npm packages only`,
    )
  const common = {
    id: manifest.id,
    version: manifest.version,
    package: ref.name,
    bin: manifest.bin,
    args: [...manifest.args, ...settings.args],
    env: settings.env,
    passEnv: settings.passEnv,
    cwd: settings.cwd,
  }
  if (manifest.transport === 'stdio')
    return StdioServerConfigSchema.parse({ ...common, transport: 'stdio', warmPool: settings.warmPool })
  return HttpServerConfigSchema.parse({
    ...common,
    transport: 'streamable-http',
    path: manifest.http?.path,
    portEnv: manifest.http?.portEnv,
  })
}

/**
 * Decides what the node runs from its configuration and the whitelist: each whitelisted entry through its
 * signed manifest, after checking the installed package (once per manifest); unverified entries as configured,
 * when the configuration allows them at all. Entries that fail are refused with the reason, not run.
 */
export class HostedServers {
  readonly #whitelist: Whitelist | undefined
  /** Package checks that passed, by manifest hash: a package is checked before its first start. */
  readonly #verified = new Map<string, Promise<string>>()

  constructor(whitelist: Whitelist | undefined) {
    this.#whitelist = whitelist
  }

  async resolve(
    servers: HostedServerConfig[],
  ): Promise<{ resolved: ResolvedServer[]; refused: ServerRefusal[] }> {
    const outcomes = await Promise.all(servers.map((server) => this.#resolveOne(server)))
    const resolved: ResolvedServer[] = []
    const refused: ServerRefusal[] = []
    for (const outcome of outcomes) {
      if ('config' in outcome) resolved.push(outcome)
      else refused.push(outcome)
    }
    return { resolved, refused }
  }

  async #resolveOne(server: HostedServerConfig): Promise<ResolvedServer | ServerRefusal> {
    if (!isWhitelistedServer(server)) return { config: server, manifestHash: serverHash(server) }
    try {
      if (this.#whitelist === undefined) throw new NexusError('UNTRUSTED_MANIFEST', 'no whitelist is loaded')
      const { manifest, hash } = this.#whitelist.resolve(server.id, server.version)
      const config = launchFromManifest(manifest, server)
      await this.#verify(manifest, hash)
      return { config, manifestHash: hash }
    } catch (err) {
      return {
        id: server.id,
        code: isNexusError(err) ? err.code : 'INVALID_CONFIG',
        reason: errorMessage(err),
      }
    }
  }

  #verify(manifest: Manifest, hash: string): Promise<string> {
    let check = this.#verified.get(hash)
    if (check === undefined) {
      check = verifyInstalledPackage(manifest)
      this.#verified.set(hash, check)
      // A failed check is not remembered: reinstalling the package fixes it without a restart.
      check.catch(() => this.#verified.delete(hash))
    }
    return check
  }
}
