import t from 'tap'
import { demoServers } from '../node/demo-servers.ts'
import {
  DEPLOYMENTS,
  type KubeObject,
  NETWORK_POLICIES,
  SERVICES,
} from '../node/runtime/kubernetes/kube-api.ts'
import type { KubernetesRuntime } from '../node/runtime/kubernetes/kubernetes-runtime.ts'
import { managedSelector } from '../node/runtime/kubernetes/workload.ts'
import { KUBE_REQUIRED, kubeUnavailable } from './kube/kube-available.ts'
import { startKubeEnvironment } from './kube/kube-environment.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { startNetwork } from './support/network.ts'
import { waitFor } from './support/wait.ts'

const unavailable = kubeUnavailable()
if (unavailable !== undefined) {
  if (KUBE_REQUIRED) t.fail(`the Kubernetes tests are required here but cannot run: ${unavailable}`)
  else t.test('the Kubernetes suite', { skip: `cannot run here: ${unavailable}` }, async () => {})
} else {
  await suite()
}

async function suite() {
  const NAMESPACES = ['team-a', 'team-b', 'team-c']
  const env = await startKubeEnvironment(NAMESPACES)
  t.teardown(env.stop)
  const refusedPods: string[] = []
  env.actor.on('pod-refused', (r) => refusedPods.push(r.message))

  const managed = async (namespace: string, nodeName: string) => {
    const selector = managedSelector(nodeName)
    const [deployments, services, policies] = await Promise.all(
      [DEPLOYMENTS, SERVICES, NETWORK_POLICIES].map((type) => env.admin.list(type, namespace, selector)),
    )
    return { deployments: deployments!.items, services: services!.items, policies: policies!.items }
  }
  const serverIdOf = (object: KubeObject) => object.metadata.annotations?.['nexus.mcp/server-id']

  t.test(
    'three nodes in three namespaces: the allocation is applied to the cluster, announced, and a session is served through a pod host',
    async (t) => {
      const network = await startNetwork({
        nodes: NAMESPACES.map((namespace, i) => ({
          servers: demoServers({ warmPool: 0 }),
          labels: { operator: `operator-${i}` },
          runtime: env.runtime(namespace, `node-${i}`),
        })),
        node: {
          allocation: {
            enabled: true,
            epochMs: 1_000,
            settleMs: 300,
            joinDelayMs: 1_000,
            policy: { minReplicas: 1, idleReplicas: 1 },
          },
          announceIntervalMs: 500,
        },
        readyTimeoutMs: 60_000,
      })
      t.teardown(network.stop)
      const hosted = new Map<string, string[]>()
      for (const [i, node] of network.nodes.entries()) {
        const servers = node.runtime.status().map((s) => s.id)
        const { deployments, services, policies } = await managed(NAMESPACES[i]!, `node-${i}`)
        t.same(
          deployments.map(serverIdOf).sort(),
          [...servers].sort(),
          `node-${i}: one Deployment in ${NAMESPACES[i]} per server it was assigned`,
        )
        t.equal(services.length, deployments.length, 'a Service for each')
        t.equal(policies.length, deployments.length, 'a NetworkPolicy for each')
        hosted.set(`node-${i}`, servers)
      }
      t.same(
        [...hosted.values()].flat().sort(),
        ['everything', 'filesystem', 'memory', 'sequential-thinking'],
        'every whitelisted server is placed once (minReplicas 1), across the three namespaces',
      )
      for (const id of ['everything', 'memory'])
        t.ok(network.gateway.view.hostsOf(id).length >= 1, `${id} is announced once its pods are ready`)

      const { client } = await connectStreamable(network.gateway.serverUrl('everything'))
      t.teardown(() => client.close())
      const result = await client.callTool({ name: 'echo', arguments: { message: 'through a pod' } })
      t.match(textOf(result), /through a pod/, 'agent → gateway → node → pod host → server, and back')
      const host = network.nodes.find((n) => n.runtime.has('everything'))!
      const status = host.runtime.status().find((s) => s.id === 'everything')!
      t.equal(status.activeSessions, 1, 'the node holds the session on one of its pods')
      t.same(refusedPods, [], 'PodSecurity restricted admitted every pod the nodes asked for')
    },
  )
}
