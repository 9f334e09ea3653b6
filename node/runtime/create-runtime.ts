import type { Logger } from 'pino'
import type { KubernetesRuntimeConfig, NodeConfig } from '../config.ts'
import type { NodeMetrics } from '../node-metrics.ts'
import type { Runtime } from './runtime.ts'

/**
 * The Kubernetes runtime a node's configuration names, connected to its API server (kubeconfig or in-cluster).
 * Its client is loaded only when a node uses it.
 */
export async function createKubernetesRuntime(
  config: NodeConfig,
  runtime: KubernetesRuntimeConfig,
  logger: Logger,
  metrics: NodeMetrics,
): Promise<Runtime> {
  const { KubeApi } = await import('./kubernetes/kube-api.ts')
  const { KubernetesRuntime } = await import('./kubernetes/kubernetes-runtime.ts')
  const api = await KubeApi.connect(runtime, { onRequest: (record) => metrics.kubeRequest(record) })
  return new KubernetesRuntime({ api, config: runtime, logger, drainTimeoutMs: config.drainTimeoutMs })
}
