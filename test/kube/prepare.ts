// `npm test` runs this first: builds the real kube-apiserver and etcd the Kubernetes tests use (once per
// machine, cached by version), so that their build time and progress show here rather than inside a test.
import { ensureHarness } from './harness-build.ts'
import { KUBE_REQUIRED, kubeUnavailable } from './kube-available.ts'

const unavailable = kubeUnavailable()
if (unavailable !== undefined) {
  if (KUBE_REQUIRED) {
    process.stderr.write(`NEXUS_REQUIRE_KUBE=1 but the Kubernetes tests cannot run: ${unavailable}\n`)
    process.exit(1)
  }
} else {
  try {
    await ensureHarness()
  } catch (err) {
    process.stderr.write(`cannot build the Kubernetes test harness: ${(err as Error).message}\n`)
    process.exit(1)
  }
}
