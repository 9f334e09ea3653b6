import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { KubernetesRuntimeConfig } from '../../node/config.ts'
import { KubeApi, type KubeRequestRecord } from '../../node/runtime/kubernetes/kube-api.ts'
import { KubernetesRuntime } from '../../node/runtime/kubernetes/kubernetes-runtime.ts'
import { createLogger } from '../../protocol/logger.ts'
import { ClusterActor } from './cluster-actor.ts'
import { KubeCluster } from './kube-cluster.ts'
import type { OciPods } from './oci-pods.ts'

const NAMESPACES = { apiVersion: 'v1', plural: 'namespaces' }

/**
 * An image reference pinned by digest for each reference server. No registry is reached: the cluster actor
 * runs the pod host that such an image's entrypoint is (see README, "Images"), so the digest only has to be
 * well-formed and stable.
 */
export function testImage(serverId: string): string {
  const digest = createHash('sha256').update(`mcp-nexus test image ${serverId}`).digest('hex')
  return `registry.example/mcp-nexus/${serverId}@sha256:${digest}`
}

export const TEST_IMAGES = Object.fromEntries(
  ['everything', 'memory', 'filesystem', 'sequential-thinking'].map((id) => [id, testImage(id)]),
)

export interface KubeEnvironment {
  cluster: KubeCluster
  admin: KubeApi
  actor: ClusterActor
  /** A node's runtime configuration for `namespace`, as the admin unless another kubeconfig is given. */
  runtime(
    namespace: string,
    nodeName: string,
    extra?: Partial<KubernetesRuntimeConfig>,
  ): KubernetesRuntimeConfig
  /**
   * A runtime built by the test (to pass to a node, or to drive alone), whose every API request is recorded:
   * the tests count writes with it.
   */
  kubernetesRuntime(
    namespace: string,
    nodeName: string,
    options?: { extra?: Partial<KubernetesRuntimeConfig>; drainTimeoutMs?: number; logger?: Logger },
  ): Promise<{ runtime: KubernetesRuntime; requests: KubeRequestRecord[] }>
  stop(): Promise<void>
}

/** Creates a namespace that enforces PodSecurity `restricted`, as the operators would. */
export async function createRestrictedNamespace(admin: KubeApi, name: string): Promise<void> {
  await admin.create(NAMESPACES, '', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      labels: {
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
      },
    },
  })
}

/**
 * A real API server with `namespaces` (restricted), and the actor playing kubelet and controllers in them
 * (running the pods whose images are in `images` as containers).
 */
export async function startKubeEnvironment(
  namespaces: string[],
  options: { images?: OciPods } = {},
): Promise<KubeEnvironment> {
  const cluster = await KubeCluster.start()
  try {
    const admin = await cluster.admin()
    for (const name of namespaces) await createRestrictedNamespace(admin, name)
    const actor = new ClusterActor(admin, namespaces, { images: options.images })
    await actor.start()
    const runtime = (
      namespace: string,
      nodeName: string,
      extra: Partial<KubernetesRuntimeConfig> = {},
    ): KubernetesRuntimeConfig => ({
      kind: 'kubernetes',
      namespace,
      nodeName,
      kubeconfig: cluster.kubeconfig(),
      inCluster: false,
      nodePodLabels: { 'app.kubernetes.io/name': 'nexus-node' },
      images: TEST_IMAGES,
      sessionsPerPod: 16,
      minPods: 1,
      maxPods: 4,
      onStop: 'keep',
      fieldManager: 'nexus-node',
      ...extra,
    })
    return {
      cluster,
      admin,
      actor,
      runtime,
      kubernetesRuntime: async (namespace, nodeName, options = {}) => {
        const config = runtime(namespace, nodeName, options.extra)
        const requests: KubeRequestRecord[] = []
        const api = await KubeApi.connect(config, { onRequest: (r) => requests.push(r) })
        const logger = options.logger ?? createLogger('node')
        const made = new KubernetesRuntime({ api, config, logger, drainTimeoutMs: options.drainTimeoutMs })
        return { runtime: made, requests }
      },
      stop: async () => {
        await actor.stop()
        await cluster.stop()
      },
    }
  } catch (err) {
    await cluster.stop()
    throw err
  }
}
