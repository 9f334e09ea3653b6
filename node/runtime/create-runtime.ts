import type { Logger } from 'pino'
import type { NodeConfig } from '../config.ts'
import type { NodeMetrics } from '../node-metrics.ts'
import { ProcessRuntime } from './process-runtime.ts'
import type { Runtime } from './runtime.ts'

/** The runtime the node's configuration names. Kubernetes' client is loaded only when it is used. */
export async function createRuntime(
  config: NodeConfig,
  logger: Logger,
  metrics: NodeMetrics,
): Promise<Runtime> {
  const runtime = config.runtime
  if (runtime.kind === 'process')
    return new ProcessRuntime(logger, { maxConcurrentTeardowns: config.maxConcurrentTeardowns })
  const { KubeApi } = await import('./kubernetes/kube-api.ts')
  const { KubernetesRuntime } = await import('./kubernetes/kubernetes-runtime.ts')
  const api = await KubeApi.connect(runtime, { onRequest: (record) => metrics.kubeRequest(record) })
  return new KubernetesRuntime({ api, config: runtime, logger, drainTimeoutMs: config.drainTimeoutMs })
}
