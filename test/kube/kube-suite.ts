import t from 'tap'
import { KUBE_REQUIRED, kubeUnavailable } from './kube-available.ts'

/**
 * Runs a Kubernetes test file's `suite` when this machine can; otherwise skips it loudly, or fails when the
 * run requires it (`.ci/run`).
 */
export async function kubeSuite(name: string, suite: () => Promise<void>): Promise<void> {
  const unavailable = kubeUnavailable()
  if (unavailable === undefined) return suite()
  if (KUBE_REQUIRED) t.fail(`the Kubernetes tests are required here but cannot run: ${unavailable}`)
  else t.test(name, { skip: `cannot run here: ${unavailable}` }, async () => {})
}
