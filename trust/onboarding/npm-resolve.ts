import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { NexusError } from '../../protocol/errors.ts'
import { parsePackageRef } from '../../protocol/manifest.ts'
import type { Finding } from './findings.ts'

const run = promisify(execFile)

/** One package of the locked tree. */
export interface LockedPackage {
  name: string
  version: string
  /** Where it is installed, relative to the project (`node_modules/x`). */
  path: string
  integrity?: string
  license?: string
  /** Lifecycle scripts it declares (not run: the tree is installed with --ignore-scripts). */
  installScripts: string[]
  dir: string
}

export interface ResolvedNpm {
  name: string
  version: string
  /** The project the server is installed in (its `node_modules` is the server's whole tree). */
  project: string
  lockfile: string
  tree: LockedPackage[]
  findings: Finding[]
}

/** The scripts npm runs when it installs a package from a registry (`prepare` runs only for git and local ones). */
const LIFECYCLE = ['preinstall', 'install', 'postinstall']

/**
 * Installs `npm:<name>@<exact version>` into a project of its own, without running any package's scripts, and
 * reads the lock npm wrote: every package of the tree with its version and integrity. A package in the tree
 * without a sha512 integrity, or with install scripts, is a finding.
 */
export async function resolveNpm(spec: string, workDir: string, registry?: string): Promise<ResolvedNpm> {
  let ref: ReturnType<typeof parsePackageRef>
  try {
    ref = parsePackageRef(spec)
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot onboard ${spec}: ${(err as Error).message}`)
  }
  if (ref.kind !== 'npm') throw new NexusError('INVALID_CONFIG', `${spec} is not an npm package`)
  const project = join(workDir, 'project')
  mkdirSync(project, { recursive: true })
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'nexus-onboarding', private: true }))
  const args = [
    'install',
    `${ref.name}@${ref.version}`,
    '--ignore-scripts',
    '--no-audit',
    '--no-fund',
    '--save-exact',
    // A tarball that fails its integrity fails again: one quick retry, not npm's minutes of back-off.
    '--fetch-retries=1',
    '--fetch-retry-mintimeout=1000',
    '--fetch-retry-maxtimeout=3000',
  ]
  if (registry !== undefined) args.push('--registry', registry)
  try {
    await run('npm', args, { cwd: project, maxBuffer: 64 << 20, timeout: 300_000 })
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? (err as Error).message
    if (/EINTEGRITY/.test(stderr)) {
      // npm names the package in its warning: "tarball data for <name>@<url> (<integrity>) seems to be corrupted".
      const which = /tarball data for (\S+?)@\S+ \(/.exec(stderr)?.[1] ?? 'a package of its tree'
      const wantedGot = /wanted (\S+) but got (\S+?)\.? /.exec(stderr)
      throw new NexusError(
        'PACKAGE_TAMPERED',
        `${which}, in the tree of ${ref.name}@${ref.version}, does not match its integrity in the registry` +
          (wantedGot === null ? '' : ` (wanted ${wantedGot[1]}, got ${wantedGot[2]})`),
      )
    }
    throw new NexusError(
      'INVALID_CONFIG',
      `npm cannot install ${ref.name}@${ref.version}: ${stderr.trim().split('\n').slice(-3).join(' ')}`,
    )
  }
  const lockfile = join(project, 'package-lock.json')
  const lock = JSON.parse(readFileSync(lockfile, 'utf8')) as {
    packages: Record<string, { version?: string; integrity?: string; license?: string; link?: boolean }>
  }
  const tree: LockedPackage[] = []
  const findings = new Map<string, Finding>()
  const add = (finding: Finding) => findings.set(finding.id, finding)
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.link) continue
    const dir = join(project, path)
    const pkg = existsSync(join(dir, 'package.json'))
      ? (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
          name?: string
          license?: unknown
          scripts?: Record<string, string>
        })
      : {}
    const name = pkg.name ?? path.slice(path.lastIndexOf('node_modules/') + 13)
    const installScripts = LIFECYCLE.filter((s) => pkg.scripts?.[s] !== undefined)
    const locked: LockedPackage = {
      name,
      version: entry.version ?? '?',
      path,
      integrity: entry.integrity,
      license: typeof pkg.license === 'string' ? pkg.license : entry.license,
      installScripts,
      dir,
    }
    tree.push(locked)
    if (!entry.integrity?.startsWith('sha512-'))
      add({
        stage: 'resolve',
        id: `resolve.unpinned:${name}`,
        severity: 'high',
        title: `${name}@${locked.version} has no sha512 integrity in the lock`,
        evidence: `${path}: ${entry.integrity ?? 'no integrity'}`,
      })
    for (const script of installScripts)
      add({
        stage: 'static',
        id: `static.install-script:${name}`,
        severity: 'high',
        title: `${name}@${locked.version} has a ${script} script (not run here; it would run on npm install)`,
        evidence: `${script}: ${pkg.scripts![script]}`,
      })
  }
  // A package installed at several places of the tree is one finding.
  return {
    name: ref.name,
    version: ref.version,
    project,
    lockfile,
    tree,
    findings: [...findings.values()],
  }
}
