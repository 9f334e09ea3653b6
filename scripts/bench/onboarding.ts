/**
 * The onboarding pipeline on the four reference servers from the public npm registry: time per stage, the
 * verdict, and how many findings of each severity. (Images come with the containerizing stage.)
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEMO_MANIFESTS } from '../../node/demo-servers.ts'
import { onboard } from '../../trust/onboarding/onboard.ts'

export async function benchOnboarding() {
  const results = []
  for (const { spec, ...options } of DEMO_MANIFESTS) {
    const installed = join(import.meta.dirname, '..', '..', 'node_modules', spec, 'package.json')
    const version = (JSON.parse(readFileSync(installed, 'utf8')) as { version: string }).version
    const started = performance.now()
    const report = await onboard({
      spec: `npm:${spec}@${version}`,
      args: 'args' in options ? [...options.args] : spec.endsWith('filesystem') ? ['/tmp'] : [],
      env: 'env' in options ? [...options.env] : [],
    })
    const bySeverity: Record<string, number> = {}
    for (const f of report.findings) bySeverity[f.severity] = (bySeverity[f.severity] ?? 0) + 1
    results.push({
      spec: report.spec,
      verdict: report.verdict,
      totalMs: Math.round(performance.now() - started),
      stagesMs: Object.fromEntries(report.stages.map((s) => [s.stage, s.ms])),
      findings: bySeverity,
      packages: report.dependencies.packages,
      tools: report.dynamic.tools.length,
      startupMs: report.dynamic.startupMs,
      peakMemoryMiB: report.dynamic.peakMemoryMiB,
    })
  }
  return results
}
