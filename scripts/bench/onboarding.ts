/**
 * The onboarding pipeline on the four reference servers from the public npm registry and two Python servers
 * from PyPI: time per stage, the verdict, and how many findings of each severity; each server's image, its
 * size and build time with nothing cached, and whether a second onboarding from scratch (resolved, installed
 * and compressed anew) gives the same digest.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEMO_MANIFESTS } from '../../node/demo-servers.ts'
import { type OnboardingReport, type OnboardOptions, onboard } from '../../trust/onboarding/onboard.ts'

/** Python reference servers, at the versions this release was measured with. */
const PYPI_SERVERS = ['pypi:mcp-server-time==2026.10.19', 'pypi:mcp-server-git==2026.10.19']

function summary(report: OnboardingReport, totalMs: number, repeat: OnboardingReport) {
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
    image: report.image && {
      mib: Math.round((report.image.bytes / 2 ** 20) * 10) / 10,
      layersMiB: Object.fromEntries(
        report.image.layers.map((l) => [l.name, Math.round((l.bytes / 2 ** 20) * 10) / 10]),
      ),
      sameDigestOnRepeat: repeat.image?.digest === report.image.digest,
    },
  }
}

/** Onboards twice, each time into an empty layout with an empty layer cache: nothing is reused. */
async function twice(options: OnboardOptions) {
  const runs: { report: OnboardingReport; ms: number }[] = []
  for (let i = 0; i < 2; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-image-'))
    try {
      const started = performance.now()
      const report = await onboard({
        ...options,
        image: { layout: join(dir, 'layout'), layerCache: join(dir, 'cache') },
      })
      runs.push({ report, ms: Math.round(performance.now() - started) })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  return summary(runs[0]!.report, runs[0]!.ms, runs[1]!.report)
}

export async function benchOnboarding() {
  const results = []
  for (const spec of PYPI_SERVERS) results.push(await twice({ spec }))
  for (const { spec, ...options } of DEMO_MANIFESTS) {
    const installed = join(import.meta.dirname, '..', '..', 'node_modules', spec, 'package.json')
    const version = (JSON.parse(readFileSync(installed, 'utf8')) as { version: string }).version
    results.push(
      await twice({
        spec: `npm:${spec}@${version}`,
        args: 'args' in options ? [...options.args] : spec.endsWith('filesystem') ? ['/tmp'] : [],
        env: 'env' in options ? [...options.env] : [],
      }),
    )
  }
  return results
}
