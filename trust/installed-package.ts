import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { defaultSearchPaths, findPackageDir } from '../node/runtime/package-bin.ts'
import { NexusError } from '../protocol/errors.ts'
import { type Manifest, manifestPackage } from '../protocol/manifest.ts'
import { directoryDigests, filesHash } from './package-files.ts'

/** npm's record of what it installed: `node_modules/.package-lock.json`, keyed by `node_modules/<name>`. */
export function lockedIntegrity(packageDir: string, name: string): string | undefined {
  const nodeModules = join(packageDir, ...name.split('/').map(() => '..'))
  const lockPath = join(nodeModules, '.package-lock.json')
  if (!existsSync(lockPath)) return undefined
  try {
    const lock = JSON.parse(readFileSync(lockPath, 'utf8')) as {
      packages?: Record<string, { integrity?: string }>
    }
    return lock.packages?.[`node_modules/${name}`]?.integrity
  } catch {
    return undefined
  }
}

/**
 * Checks that the installed copy of a manifest's npm package is exactly what the manifest pins: the same
 * version, installed from the same tarball (npm's lock record), and files unchanged since (their hash). Returns
 * the package's directory; throws PACKAGE_TAMPERED saying what differs, or INVALID_CONFIG when it is missing.
 */
export async function verifyInstalledPackage(
  manifest: Manifest,
  searchFrom: string[] = defaultSearchPaths(),
): Promise<string> {
  const ref = manifestPackage(manifest)
  const label = `${manifest.id}@${manifest.version}`
  if (ref.kind === 'oci')
    throw new NexusError(
      'INVALID_CONFIG',
      `${label} is an OCI image (${manifest.package}); the process runtime runs npm packages only`,
    )
  const dir = findPackageDir(ref.name, searchFrom)
  if (dir === undefined)
    throw new NexusError(
      'INVALID_CONFIG',
      `${label}: npm package ${ref.name} is not installed (npm install ${ref.name}@${ref.version})`,
    )
  let installedVersion: string | undefined
  try {
    installedVersion = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string })
      .version
  } catch {
    installedVersion = undefined
  }
  if (installedVersion !== ref.version)
    throw new NexusError(
      'PACKAGE_TAMPERED',
      `${label}: ${dir} holds ${ref.name}@${installedVersion ?? 'unknown'}, the manifest pins ${ref.version}`,
    )
  const locked = lockedIntegrity(dir, ref.name)
  if (locked !== undefined && locked !== manifest.integrity)
    throw new NexusError(
      'PACKAGE_TAMPERED',
      `${label}: ${ref.name} was installed from a tarball with integrity ${locked}, the manifest pins ${manifest.integrity}`,
    )
  const actual = filesHash(await directoryDigests(dir))
  if (actual !== manifest.files)
    throw new NexusError(
      'PACKAGE_TAMPERED',
      `${label}: the files of ${dir} changed since the package was published (files hash ${actual}, the manifest pins ${manifest.files}); reinstall it`,
    )
  return dir
}
