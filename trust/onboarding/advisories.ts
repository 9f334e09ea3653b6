import type { Finding, Severity } from './findings.ts'
import type { LockedPackage } from './npm-resolve.ts'

interface Advisory {
  id?: number | string
  title?: string
  severity?: string
  url?: string
  vulnerable_versions?: string
}

const SEVERITY: Record<string, Severity> = {
  info: 'info',
  low: 'low',
  moderate: 'medium',
  medium: 'medium',
  high: 'high',
  critical: 'critical',
}

/**
 * Known vulnerabilities of the locked tree, from the registry's advisory data (npm's bulk advisory endpoint,
 * the one `npm audit` uses): one finding per advisory that names a locked version. When the registry cannot
 * answer, that is a finding too (the tree was not checked), not a silent pass.
 */
export async function advisoryChecks(
  tree: readonly LockedPackage[],
  registry = 'https://registry.npmjs.org',
  timeoutMs = 20_000,
): Promise<Finding[]> {
  const versions: Record<string, string[]> = {}
  for (const pkg of tree) {
    versions[pkg.name] ??= []
    versions[pkg.name]!.push(pkg.version)
  }
  let body: Record<string, Advisory[]>
  try {
    const response = await fetch(new URL('/-/npm/v1/security/advisories/bulk', registry), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(versions),
      signal: AbortSignal.timeout(timeoutMs),
    })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    body = (await response.json()) as Record<string, Advisory[]>
  } catch (err) {
    return [
      {
        stage: 'static',
        id: 'static.advisories-unavailable',
        severity: 'medium',
        title: `the registry's advisory data could not be read, so known vulnerabilities were not checked`,
        evidence: `${registry}: ${(err as Error).message}`,
      },
    ]
  }
  const findings: Finding[] = []
  for (const [name, advisories] of Object.entries(body)) {
    for (const advisory of advisories ?? []) {
      const locked = tree.filter((p) => p.name === name).map((p) => p.version)
      findings.push({
        stage: 'static',
        id: `static.vulnerable:${name}`,
        severity: SEVERITY[advisory.severity ?? ''] ?? 'high',
        title: `${name}@${locked.join(', ')}: ${advisory.title ?? 'a known vulnerability'}`,
        evidence: [
          advisory.url,
          advisory.vulnerable_versions && `vulnerable: ${advisory.vulnerable_versions}`,
        ]
          .filter(Boolean)
          .join('; '),
      })
    }
  }
  return findings
}
