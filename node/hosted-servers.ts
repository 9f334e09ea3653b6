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
import { IMAGE_LAUNCH_COMMAND } from './runtime/kubernetes/workload.ts'
import { ensurePythonPackage, type InstalledPython } from './runtime/python-package.ts'
import type { Runtime, RuntimeServer } from './runtime/runtime.ts'
import { serverHash } from './server-hash.ts'

/** A server the node will run, the hash it announces for it, and its manifest. */
export type ResolvedServer = RuntimeServer

export interface ServerRefusal {
  id: string
  code: NexusErrorCode
  reason: string
}

/**
 * The operator's binds against what the manifest declares: no more folders than it lists, and a writable one
 * only where it lists a writable one. A manifest that declares nothing leaves them to the operator.
 */
function checkBinds(manifest: Manifest, settings: WhitelistedServer): void {
  const declared = manifest.binds
  if (declared === undefined || settings.binds.length === 0) return
  const writable = declared.filter((b) => b.mode === 'rw').length
  const wanted = settings.binds.filter((b) => b.mode === 'rw').length
  if (settings.binds.length > declared.length || wanted > writable)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id}: its manifest allows ${declared.length} bind(s), ${writable} of them writable ` +
        `(${declared.map((b) => `${b.purpose}: ${b.mode}`).join('; ') || 'none'}); the configuration asks for ` +
        `${settings.binds.length}, ${wanted} writable`,
    )
}

/**
 * How a whitelisted manifest runs, with the operator's values for its variables. An npm package runs its bin;
 * an OCI image (only on a runtime that runs images) runs the manifest's command inside the image.
 */
export function launchFromManifest(
  manifest: Manifest,
  settings: WhitelistedServer,
  runsImages = false,
  python?: InstalledPython,
): ServerConfig {
  const allowed = new Set(manifest.env)
  const given = [...Object.keys(settings.env), ...settings.passEnv]
  const foreign = given.filter((name) => !allowed.has(name))
  if (foreign.length > 0)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id}: its manifest does not allow the variable(s) ${foreign.join(', ')}` +
        ` (allowed: ${manifest.env.join(', ') || 'none'})`,
    )
  checkBinds(manifest, settings)
  if (settings.args.length > 0 && !manifest.operatorArgs)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id}: its manifest does not let the operator add arguments (remove args)`,
    )
  const ref = manifestPackage(manifest)
  if (ref.kind === 'oci' && !runsImages)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${manifest.id} is an OCI image; the process runtime runs npm and PyPI packages only`,
    )
  // An image built by the onboarding pipeline carries its server's launch: the pod host runs it, and an HTTP
  // server is the image's entrypoint.
  const fromImage = runsImages && ref.kind !== 'oci' && manifest.image !== undefined
  if (ref.kind === 'pypi' && python === undefined && !fromImage)
    throw new NexusError(
      'INVALID_CONFIG',
      runsImages
        ? `server ${manifest.id}: a PyPI package runs in a cluster from the image nexus onboard built (its manifest has none)`
        : `server ${manifest.id}: its PyPI package is not installed`,
    )
  const [command, ...commandArgs] = manifest.command ?? []
  if (ref.kind === 'oci' && manifest.transport === 'stdio' && command === undefined)
    throw new NexusError('INVALID_CONFIG', `server ${manifest.id}: an OCI image needs the command to run`)
  // A PyPI server runs its console script with the node's Python, its locked tree on PYTHONPATH (and in its
  // sandbox, read-only).
  const launch = fromImage
    ? { command: manifest.transport === 'stdio' ? IMAGE_LAUNCH_COMMAND : 'entrypoint', args: [] as string[] }
    : ref.kind === 'npm'
      ? { package: ref.name, bin: manifest.bin }
      : ref.kind === 'pypi'
        ? {
            command: python!.python,
            args: [
              '-c',
              `import sys; from ${python!.module} import ${python!.func} as main; sys.exit(main())`,
            ],
          }
        : { command: command ?? 'entrypoint', args: commandArgs }
  const pythonEnv = python === undefined ? {} : { PYTHONPATH: python.target, PYTHONDONTWRITEBYTECODE: '1' }
  const pythonBinds = python === undefined ? [] : [{ path: python.target, mode: 'ro' as const }]
  const common = {
    id: manifest.id,
    version: manifest.version,
    ...launch,
    args: [...(launch.args ?? []), ...manifest.args, ...settings.args],
    env: { ...settings.env, ...pythonEnv },
    passEnv: settings.passEnv,
    cwd: settings.cwd,
    binds: [...settings.binds, ...pythonBinds],
    resources: manifest.resources,
    egress: manifest.egress,
  }
  if (manifest.transport === 'stdio')
    return StdioServerConfigSchema.parse({
      ...common,
      transport: 'stdio',
      warmPool: settings.warmPool,
      shared: manifest.shared,
    })
  return HttpServerConfigSchema.parse({
    ...common,
    transport: 'streamable-http',
    path: manifest.http?.path,
    portEnv: manifest.http?.portEnv,
    eras: manifest.eras,
  })
}

/**
 * Decides what the node runs from its configuration and the whitelist: each whitelisted entry through its
 * signed manifest, after checking the installed package (once per manifest); unverified entries as configured,
 * when the configuration allows them at all. Entries that fail are refused with the reason, not run.
 */
export class HostedServers {
  readonly #whitelist: Whitelist | undefined
  readonly #runtime: Pick<Runtime, 'runsImages' | 'admit'> | undefined
  /** Package checks that passed, by manifest hash: a package is checked before its first start. */
  readonly #verified = new Map<string, Promise<string>>()

  constructor(whitelist: Whitelist | undefined, runtime?: Pick<Runtime, 'runsImages' | 'admit'>) {
    this.#whitelist = whitelist
    this.#runtime = runtime
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
    try {
      if (!isWhitelistedServer(server))
        return this.#admitted({ config: server, manifestHash: serverHash(server) })
      if (this.#whitelist === undefined) throw new NexusError('UNTRUSTED_MANIFEST', 'no whitelist is loaded')
      const { manifest, hash } = this.#whitelist.resolve(server.id, server.version)
      const python =
        manifestPackage(manifest).kind === 'pypi' && !this.#runtime?.runsImages
          ? await ensurePythonPackage(manifest)
          : undefined
      const config = launchFromManifest(manifest, server, this.#runtime?.runsImages, python)
      const resolved = this.#admitted({ config, manifestHash: hash, manifest })
      // An image is pinned by its digest, a PyPI tree by pip's hash checks as it installs it; the files of an
      // npm package are checked where they are installed.
      if (!this.#runtime?.runsImages && python === undefined) await this.#verify(manifest, hash)
      return resolved
    } catch (err) {
      return {
        id: server.id,
        code: isNexusError(err) ? err.code : 'INVALID_CONFIG',
        reason: errorMessage(err),
      }
    }
  }

  #admitted(server: ResolvedServer): ResolvedServer {
    this.#runtime?.admit?.(server)
    return server
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
