import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { defaultSearchPaths, findPackageDir } from '../node/runtime/package-bin.ts'
import { NexusError } from '../protocol/errors.ts'
import { type Manifest, parseManifest } from '../protocol/manifest.ts'
import { lockedIntegrity } from './installed-package.ts'
import { digestsOf, directoryDigests, filesHash, tarballFiles, tarballIntegrity } from './package-files.ts'

export interface ManifestOptions {
  id?: string
  transport?: 'stdio' | 'streamable-http'
  bin?: string
  args?: readonly string[]
  operatorArgs?: boolean
  env?: readonly string[]
  cpu?: number
  memoryMiB?: number
  notes?: string[]
  /** Take version, integrity and files from the npm registry even when the package is installed here. */
  fromRegistry?: boolean
  searchFrom?: string[]
}

interface PackageJson {
  name: string
  version: string
  bin?: string | Record<string, string>
}

interface PackedPackage {
  pkg: PackageJson
  integrity: string
  files: string
}

const run = promisify(execFile)

/** `name`, `name@version` or `npm:name@version` → name and optional version. */
function splitSpec(spec: string): { name: string; version?: string } {
  const bare = spec.startsWith('npm:') ? spec.slice(4) : spec
  const at = bare.lastIndexOf('@')
  return at > 0 ? { name: bare.slice(0, at), version: bare.slice(at + 1) } : { name: bare }
}

function fromTarball(tarball: Uint8Array, where: string): PackedPackage {
  const files = tarballFiles(tarball)
  const manifest = files.get('package.json')
  if (manifest === undefined) throw new NexusError('INVALID_CONFIG', `${where} has no package/package.json`)
  return {
    pkg: JSON.parse(Buffer.from(manifest).toString('utf8')) as PackageJson,
    integrity: tarballIntegrity(tarball),
    files: filesHash(digestsOf(files)),
  }
}

/** Downloads the tarball with npm and checks it against the registry's integrity. */
async function fromRegistry(name: string, version: string | undefined): Promise<PackedPackage> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-pack-'))
  try {
    const spec = version === undefined ? name : `${name}@${version}`
    let stdout: string
    try {
      ;({ stdout } = await run('npm', ['pack', spec, '--json', '--pack-destination', dir], {
        maxBuffer: 64 << 20,
      }))
    } catch (err) {
      throw new NexusError('INVALID_CONFIG', `npm cannot fetch ${spec}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const [packed] = JSON.parse(stdout) as { filename: string; integrity: string }[]
    const tarball = readFileSync(join(dir, packed!.filename))
    const result = fromTarball(tarball, spec)
    if (result.integrity !== packed!.integrity)
      throw new NexusError(
        'PACKAGE_TAMPERED',
        `the tarball of ${spec} does not match the registry's integrity`,
      )
    return result
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function fromInstalled(dir: string, name: string): Promise<PackedPackage | undefined> {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson
  const integrity = lockedIntegrity(dir, name)
  if (integrity === undefined) return undefined
  return { pkg, integrity, files: filesHash(await directoryDigests(dir)) }
}

function defaultId(name: string): string {
  const last = name.split('/').pop()!.toLowerCase()
  return last
    .replace(/^mcp-server-/, '')
    .replace(/^server-/, '')
    .replace(/-mcp-server$/, '')
}

function chooseBin(pkg: PackageJson, wanted: string | undefined): string | undefined {
  if (pkg.bin === undefined) throw new NexusError('INVALID_CONFIG', `${pkg.name} has no executable`)
  if (typeof pkg.bin === 'string') return wanted
  const names = Object.keys(pkg.bin)
  if (wanted !== undefined && !names.includes(wanted))
    throw new NexusError(
      'INVALID_CONFIG',
      `${pkg.name} has no executable ${wanted} (it has ${names.join(', ')})`,
    )
  if (wanted === undefined && names.length > 1)
    throw new NexusError(
      'INVALID_CONFIG',
      `${pkg.name} has several executables (${names.join(', ')}); choose one with --bin`,
    )
  return wanted
}

/**
 * Builds the manifest of an npm package: from a local tarball (`./x-1.0.0.tgz`), from the copy installed here
 * (its npm lock record gives the integrity), or from the npm registry. The version is always exact.
 */
export async function createManifest(spec: string, options: ManifestOptions = {}): Promise<Manifest> {
  let packed: PackedPackage | undefined
  if (spec.endsWith('.tgz') && existsSync(spec)) packed = fromTarball(readFileSync(spec), spec)
  else {
    const { name, version } = splitSpec(spec)
    if (!options.fromRegistry) {
      const dir = findPackageDir(name, options.searchFrom ?? defaultSearchPaths())
      if (dir !== undefined) {
        const installed = await fromInstalled(dir, name)
        if (installed !== undefined && (version === undefined || installed.pkg.version === version))
          packed = installed
      }
    }
    packed ??= await fromRegistry(name, version)
  }
  const { pkg } = packed
  return parseManifest({
    id: options.id ?? defaultId(pkg.name),
    version: pkg.version,
    package: `npm:${pkg.name}@${pkg.version}`,
    integrity: packed.integrity,
    files: packed.files,
    transport: options.transport ?? 'stdio',
    bin: chooseBin(pkg, options.bin),
    args: [...(options.args ?? [])],
    operatorArgs: options.operatorArgs ?? false,
    env: [...(options.env ?? [])],
    resources: { cpu: options.cpu ?? 0.25, memoryMiB: options.memoryMiB ?? 256 },
    notes: options.notes ?? [],
  })
}
