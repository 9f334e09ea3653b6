/**
 * The onboarding pipeline on the four reference servers from the public npm registry and two Python servers
 * from PyPI: time per stage, the verdict, and how many findings of each severity. (Images come with the
 * containerizing stage.)
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEMO_MANIFESTS } from '../../node/demo-servers.ts'
import { type OnboardingReport, onboard } from '../../trust/onboarding/onboard.ts'

/** Python reference servers, at the versions this release was measured with. */
const PYPI_SERVERS = ['pypi:mcp-server-time==2026.10.19', 'pypi:mcp-server-git==2026.10.19']

function summary(report: OnboardingReport, totalMs: number) {
  const bySeverity: Record<string, number> = {}
  for (const f of report.findings) bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1
  return {
    spec: report.spec,
    verdict: report.verdict,
    totalMs,
    stagesMs: Object.fromEntries(report.stages.map((s) => [s.stage, s.ms])),
    findings: bySeverity,
    packages: report.dependencies.packages,
    tools: report.dynamic.tools.length,
    startupMs: report.dynamic.startupMs,
    peakMemoryMiB: report.dynamic.peakMemoryMiB,
  }
}

export async function benchOnboarding() {
  const results = []
  for (const spec of PYPI_SERVERS) {
    const started = performance.now()
    results.push(summary(await onboard({ spec }), Math.round(performance.now() - started)))
  }
  for (const { spec, ...options } of DEMO_MANIFESTS) {
    const installed = join(import.meta.dirname, '..', '..', 'node_modules', spec, 'package.json')
    const version = (JSON.parse(readFileSync(installed, 'utf8')) as { version: string }).version
    const started = performance.now()
    const report = await onboard({
      spec: `npm:${spec}@${version}`,
      args: 'args' in options ? [...options.args] : spec.endsWith('filesystem') ? ['/tmp'] : [],
      env: 'env' in options ? [...options.env] : [],
    })
    results.push(summary(report, Math.round(performance.now() - started)))
  }
  return results
}
