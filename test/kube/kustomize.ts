import { execFile } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseAllDocuments } from 'yaml'
import type { KubeObject } from '../../node/runtime/kubernetes/kube-api.ts'
import { ensureHarness } from './harness-build.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** Renders a kustomization of `k8s/` with the real kustomize library (in kube-harness), as `kubectl -k` does. */
export async function renderKustomization(path: string): Promise<KubeObject[]> {
  const harness = await ensureHarness()
  const { stdout } = await promisify(execFile)(harness, ['kustomize', join(ROOT, path)], {
    maxBuffer: 16 * 1024 * 1024,
  })
  return parseAllDocuments(stdout).map((doc) => doc.toJS() as KubeObject)
}
