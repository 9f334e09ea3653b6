import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pythonExecutable } from '../../node/runtime/python-package.ts'
import { NexusError } from '../../protocol/errors.ts'
import { parsePackageRef } from '../../protocol/manifest.ts'
import type { Finding } from './findings.ts'

const run = promisify(execFile)

/** One distribution of the locked Python tree. */
export interface LockedDistribution {
  name: string
  version: string
  sha256: string
  license?: string
}

export interface ResolvedPypi {
  name: string
  version: string
  /** Where the tree is installed (pip's `--target`): PYTHONPATH when the server runs. */
  site: string
  /** `name==version --hash=sha256:…` per distribution: the manifest's `pythonLock`. */
  lock: string[]
  tree: LockedDistribution[]
  python: string
  findings: Finding[]
}

interface PipReport {
  install: {
    download_info?: { archive_info?: { hashes?: { sha256?: string } } }
    metadata: { name: string; version: string; license?: string; classifier?: string[] }
  }[]
}

/**
 * Installs `pypi:<name>==<exact version>` and its dependencies into a folder of their own with pip, and reads
 * pip's installation report: every distribution with its version and the sha256 of the file installed. That
 * is the lock a node installs from with `--require-hashes`. A distribution without a hash is a finding.
 */
export async function resolvePypi(spec: string, workDir: string, index?: string): Promise<ResolvedPypi> {
  const ref = parsePackageRef(spec)
  if (ref.kind !== 'pypi') throw new NexusError('INVALID_CONFIG', `${spec} is not a PyPI package`)
  const site = join(workDir, 'site')
  mkdirSync(site, { recursive: true })
  const report = join(workDir, 'pip-report.json')
  const python = await pythonExecutable()
  const args = [
    '-m',
    'pip',
    'install',
    '--quiet',
    '--ignore-installed',
    '--no-compile',
    '--disable-pip-version-check',
  ]
  if (index !== undefined) args.push('--index-url', index)
  args.push('--target', site, '--report', report, `${ref.name}==${ref.version}`)
  try {
    await run(python, args, { maxBuffer: 64 << 20, timeout: 600_000 })
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? (err as Error).message
    throw new NexusError(
      'INVALID_CONFIG',
      `pip cannot install ${ref.name}==${ref.version}: ${stderr.trim().split('\n').slice(-3).join(' ')}`,
    )
  }
  const installed = (JSON.parse(readFileSync(report, 'utf8')) as PipReport).install
  const findings: Finding[] = []
  const tree: LockedDistribution[] = installed.map((item) => {
    const sha256 = item.download_info?.archive_info?.hashes?.sha256 ?? ''
    if (!/^[0-9a-f]{64}$/.test(sha256))
      findings.push({
        stage: 'resolve',
        id: `resolve.unpinned:${item.metadata.name}`,
        severity: 'high',
        title: `${item.metadata.name}==${item.metadata.version} has no sha256 in pip's report`,
      })
    const licence =
      item.metadata.license ??
      item.metadata.classifier
        ?.find((c) => c.startsWith('License ::'))
        ?.split('::')
        .pop()
        ?.trim()
    return { name: item.metadata.name, version: item.metadata.version, sha256, license: licence }
  })
  return {
    name: ref.name,
    version: ref.version,
    site,
    lock: tree.filter((d) => d.sha256 !== '').map((d) => `${d.name}==${d.version} --hash=sha256:${d.sha256}`),
    tree,
    python,
    findings,
  }
}

type ReleaseJson = {
  info?: { version?: string }
  vulnerabilities?: { id?: string; summary?: string; details?: string; fixed_in?: string[] }[]
}

/**
 * A release's JSON from PyPI: the release's own page, or, where only project pages are served (some mirrors),
 * the project's when its latest release is this one (its vulnerabilities are then this release's).
 */
async function releaseJson(d: LockedDistribution, timeoutMs: number): Promise<ReleaseJson> {
  const name = encodeURIComponent(d.name)
  const release = await fetch(`https://pypi.org/pypi/${name}/${encodeURIComponent(d.version)}/json`, {
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (release.ok) return (await release.json()) as ReleaseJson
  const project = await fetch(`https://pypi.org/pypi/${name}/json`, {
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (!project.ok) throw new Error(`${d.name}: HTTP ${release.status}, and ${project.status} for the project`)
  const body = (await project.json()) as ReleaseJson
  if (body.info?.version !== d.version)
    throw new Error(
      `${d.name}==${d.version}: only the latest release's advisories (${body.info?.version}) are served here`,
    )
  return body
}

/**
 * Known vulnerabilities of the locked Python tree, from PyPI's own advisory data (each release's JSON lists
 * the OSV advisories that affect it). A tree PyPI cannot answer for is a finding, not a silent pass.
 */
export async function pypiAdvisories(
  tree: readonly LockedDistribution[],
  timeoutMs = 20_000,
): Promise<Finding[]> {
  const findings: Finding[] = []
  try {
    await Promise.all(
      tree.map(async (d) => {
        const body = await releaseJson(d, timeoutMs)
        for (const v of body.vulnerabilities ?? [])
          findings.push({
            stage: 'static',
            id: `static.vulnerable:${d.name}`,
            severity: 'high',
            title: `${d.name}==${d.version}: ${v.summary ?? v.details?.slice(0, 120) ?? v.id ?? 'a known vulnerability'}`,
            evidence: [v.id, v.fixed_in?.length ? `fixed in ${v.fixed_in.join(', ')}` : '']
              .filter(Boolean)
              .join('; '),
          })
      }),
    )
  } catch (err) {
    return [
      {
        stage: 'static',
        id: 'static.advisories-unavailable',
        severity: 'medium',
        title: "PyPI's advisory data could not be read, so known vulnerabilities were not checked",
        evidence: (err as Error).message,
      },
    ]
  }
  return findings
}
