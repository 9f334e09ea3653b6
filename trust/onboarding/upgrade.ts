import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NexusError } from '../../protocol/errors.ts'
import { type Manifest, manifestHash, manifestPackage } from '../../protocol/manifest.ts'
import { advisoryChecks } from './advisories.ts'
import type { Finding } from './findings.ts'
import { resolveNpm } from './npm-resolve.ts'
import { type OnboardingReport, type OnboardOptions, onboard } from './onboard.ts'
import { staticChecks } from './static-checks.ts'

/** What a new version changes against the signed previous one. */
export interface UpgradeDiff {
  from: { version: string; manifestHash: string }
  to: { version: string }
  /** Tools by their pinned digests; `unpinned` when the previous manifest pinned none. */
  tools: { added: string[]; removed: string[]; changed: string[] } | 'unpinned'
  dependencies: { added: string[]; removed: string[]; changed: { name: string; from: string; to: string }[] }
  /** Findings of the resolve and static stages the new version has and the old had not, and the reverse. */
  findings: { introduced: Finding[]; resolved: Finding[] }
}

export type UpgradeReport = OnboardingReport & { upgrade: UpgradeDiff }

/**
 * `nexus onboard --upgrade`: the new version goes through the whole pipeline, with the previous manifest's
 * launch settings and permissions, and the report gains a diff against the previous signed version: tools
 * added, removed or changed (by digest), dependencies, and findings introduced or resolved (the previous
 * version's tree is resolved and checked statically again for this).
 */
export async function onboardUpgrade(
  previous: Manifest,
  version: string,
  options: Omit<OnboardOptions, 'spec'> = {},
): Promise<UpgradeReport> {
  const ref = manifestPackage(previous)
  if (ref.kind !== 'npm')
    throw new NexusError('INVALID_CONFIG', `${previous.id}: only npm packages are onboarded for now`)
  const report = await onboard({
    spec: `npm:${ref.name}@${version}`,
    id: previous.id,
    bin: previous.bin,
    args: previous.args,
    env: previous.env,
    operatorArgs: previous.operatorArgs,
    egress: previous.egress,
    ...options,
  })
  const workDir = mkdtempSync(join(tmpdir(), 'nexus-upgrade-'))
  try {
    const old = await resolveNpm(previous.package, workDir, options.registry)
    const oldFindings = [
      ...old.findings,
      ...staticChecks(old),
      ...(await advisoryChecks(old.tree, options.registry)),
    ]
    const newFindings = report.findings.filter((f) => f.stage === 'resolve' || f.stage === 'static')
    const ids = (list: Finding[]) => new Set(list.map((f) => f.id))
    const versions = (tree: { name: string; version: string }[]) => {
      const map = new Map<string, string>()
      for (const p of tree) map.set(p.name, map.has(p.name) ? `${map.get(p.name)}, ${p.version}` : p.version)
      return map
    }
    const before = versions(old.tree)
    const after = versions(report.dependencies.tree)
    const pinned = previous.tools
    const now = report.manifest.tools ?? {}
    return {
      ...report,
      upgrade: {
        from: { version: previous.version, manifestHash: manifestHash(previous) },
        to: { version },
        tools:
          pinned === undefined
            ? 'unpinned'
            : {
                added: Object.keys(now).filter((n) => !(n in pinned)),
                removed: Object.keys(pinned).filter((n) => !(n in now)),
                changed: Object.keys(now).filter((n) => n in pinned && pinned[n] !== now[n]),
              },
        dependencies: {
          added: [...after.keys()].filter((n) => !before.has(n)).map((n) => `${n}@${after.get(n)}`),
          removed: [...before.keys()].filter((n) => !after.has(n)).map((n) => `${n}@${before.get(n)}`),
          changed: [...after.keys()]
            .filter((n) => before.has(n) && before.get(n) !== after.get(n))
            .map((n) => ({ name: n, from: before.get(n)!, to: after.get(n)! })),
        },
        findings: {
          introduced: newFindings.filter((f) => !ids(oldFindings).has(f.id)),
          resolved: oldFindings.filter((f) => !ids(newFindings).has(f.id)),
        },
      },
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true })
  }
}
