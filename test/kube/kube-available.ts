import { existsSync } from 'node:fs'
import { goMissing, harnessPath } from './harness-build.ts'

/** Set by `.ci/run`: the Kubernetes tests must run, and a machine that cannot run them fails. */
export const KUBE_REQUIRED = process.env.NEXUS_REQUIRE_KUBE === '1'

/**
 * Why the Kubernetes tests cannot run on this machine (no Go, and no harness built before), or undefined.
 * Said loudly: a skipped suite must not pass unnoticed.
 */
export function kubeUnavailable(): string | undefined {
  if (existsSync(harnessPath())) return undefined
  const missing = goMissing()
  if (missing === undefined) return undefined
  const consequence = KUBE_REQUIRED
    ? 'They are required here (NEXUS_REQUIRE_KUBE=1): this run fails.'
    : 'SKIPPING them. Install Go (https://go.dev/dl/) and run npm test again; CI fails here.'
  const rule = '!'.repeat(100)
  process.stderr.write(
    `\n${rule}\n!! The Kubernetes tests cannot run: ${missing}.\n!! ${consequence}\n${rule}\n\n`,
  )
  return missing
}
