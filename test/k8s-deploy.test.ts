import { setTimeout as delay } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { NexusNode } from '../node/nexus-node.ts'
import { DEPLOYMENTS, type KubeObject } from '../node/runtime/kubernetes/kube-api.ts'
import type { KubernetesRuntime } from '../node/runtime/kubernetes/kubernetes-runtime.ts'
import { ClusterActor, PODS } from './kube/cluster-actor.ts'
import { startKubeEnvironment } from './kube/kube-environment.ts'
import { kubeSuite } from './kube/kube-suite.ts'
import { renderKustomization } from './kube/kustomize.ts'
import { RawSession } from './kube/raw-session.ts'
import { waitFor } from './support/wait.ts'

/** Asks `check` again (every 50 ms) until it holds, for conditions nothing announces; fails after 10 s. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await delay(50)
  }
}

await kubeSuite('the k8s/ deployment suite', suite)

interface PodTemplateOwner extends KubeObject {
  spec: { template: { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> } }
}

async function suite() {
  const NAMESPACE = 'nexus-dev'
  const env = await startKubeEnvironment([])
  t.teardown(env.stop)
  const objects = await renderKustomization('k8s/overlays/dev')
  const kinds = (kind: string) => objects.filter((o) => o.kind === kind)

  t.test(
    'the dev overlay renders the whole network, and the real API server accepts every object',
    async (t) => {
      t.same(
        [...new Set(objects.map((o) => o.kind))].sort(),
        [
          'ConfigMap',
          'Deployment',
          'HorizontalPodAutoscaler',
          'Namespace',
          'PodDisruptionBudget',
          'Role',
          'RoleBinding',
          'Secret',
          'Service',
          'ServiceAccount',
          'StatefulSet',
        ],
        'nodes, gateways, RBAC, configuration, identities, probes and budgets',
      )
      // The namespace first: everything else lives in it.
      for (const object of [...kinds('Namespace'), ...objects.filter((o) => o.kind !== 'Namespace')]) {
        const applied = await env.admin.apply(object, 'nexus-test-deploy')
        t.equal(applied.metadata.uid !== undefined, true, `${object.kind} ${object.metadata.name} applied`)
      }
    },
  )

  t.test(
    'the node and gateway pod templates pass PodSecurity restricted in the enforcing namespace',
    async (t) => {
      for (const owner of [...kinds('StatefulSet'), ...kinds('Deployment')] as PodTemplateOwner[]) {
        const name = `${owner.metadata.name}-admission-probe`
        const pod = await env.admin.create(PODS, NAMESPACE, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, labels: owner.spec.template.metadata.labels },
          spec: owner.spec.template.spec,
        })
        t.equal(pod.metadata.name, name, `a pod of ${owner.kind} ${owner.metadata.name} is admitted`)
        await env.admin.delete(PODS, NAMESPACE, name)
      }
    },
  )

  const actor = new ClusterActor(env.admin, [NAMESPACE])
  await actor.start()
  t.teardown(() => actor.stop())

  /** A node authenticated as the k8s/ ServiceAccount, with its Role's rights and no more. */
  const nodeAsServiceAccount = async (nodeName: string, serverId: string) => {
    const token = await env.cluster.serviceAccountToken(NAMESPACE, 'nexus-node')
    const runtime = env.runtime(NAMESPACE, nodeName, {
      kubeconfig: env.cluster.kubeconfig(token, 'nexus-node'),
    })
    return new NexusNode({ servers: [{ id: serverId, warmPool: 0 }], runtime })
  }

  t.test(
    'a node authenticated as the k8s/ ServiceAccount runs its servers with the Role as written',
    async (t) => {
      const node = await nodeAsServiceAccount('nexus-node-0', 'everything')
      t.teardown(() => node.stop())
      await node.start()
      const runtime = node.runtime as KubernetesRuntime
      await waitFor(() => runtime.status()[0]?.ready === true, runtime, 'status', 30_000, 'a ready pod')
      const deployments = await env.admin.list(DEPLOYMENTS, NAMESPACE, 'nexus.mcp/node=nexus-node-0')
      const managers = (
        deployments.items[0]!.metadata.managedFields as { manager: string; operation: string }[]
      ).map((f) => `${f.manager}/${f.operation}`)
      t.same(managers, ['nexus-node/Apply'], 'applied by the node, server-side, under its own field manager')
      const session = new RawSession(await runtime.open('everything'))
      await session.initialize()
      t.equal(
        await session.echo('as the ServiceAccount'),
        'Echo: as the ServiceAccount',
        'and serves sessions',
      )
      await session.session.close()
    },
  )

  const role = kinds('Role')[0]! as KubeObject & {
    rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[]
  }
  const SUBJECT_ACCESS_REVIEWS = { apiVersion: 'authorization.k8s.io/v1', plural: 'subjectaccessreviews' }
  /** Whether the node's ServiceAccount may `verb` on `resource`, as the API server's authorizer says now. */
  const allowed = async (verb: string, resource: string) => {
    const group = role.rules.find((r) => r.resources.includes(resource))!.apiGroups[0]!
    const review = await env.admin.create<KubeObject & { status: { allowed: boolean } }>(
      SUBJECT_ACCESS_REVIEWS,
      '',
      {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        // A review is not stored: it must carry no metadata at all.
        metadata: {} as KubeObject['metadata'],
        spec: {
          user: `system:serviceaccount:${NAMESPACE}:nexus-node`,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`],
          resourceAttributes: { namespace: NAMESPACE, verb, group, resource },
        },
      },
    )
    return review.status.allowed
  }
  /**
   * Applies the Role with one verb removed (restoring it at teardown), and waits until the authorizer uses it:
   * RBAC reaches the authorizer through an informer, a moment after the write, with no event a client sees.
   */
  const removeVerb = async (t: Test, resource: string, verb: string) => {
    const weakened = {
      ...role,
      rules: role.rules.map((rule) =>
        rule.resources.includes(resource) ? { ...rule, verbs: rule.verbs.filter((v) => v !== verb) } : rule,
      ),
    }
    await env.admin.apply(weakened, 'nexus-test-deploy')
    t.teardown(async () => {
      await env.admin.apply(role, 'nexus-test-deploy')
      await until(() => allowed(verb, resource), `${verb} on ${resource} to be allowed again`)
    })
    await until(async () => !(await allowed(verb, resource)), `${verb} on ${resource} to be refused`)
  }

  for (const verb of ['create', 'patch'])
    t.test(
      `with "${verb}" on Deployments removed from the Role, the node fails to start and says which verb`,
      async (t) => {
        await removeVerb(t, 'deployments', verb)
        const node = await nodeAsServiceAccount('nexus-node-1', 'memory')
        await t.rejects(
          node.start(),
          {
            code: 'CLUSTER_FORBIDDEN',
            message: new RegExp(`the node's Role lacks the verb "${verb}" on "deployments\\.apps"`),
          },
          'the refusal names the verb and the resource',
        )
      },
    )

  t.test(
    'with "watch" on EndpointSlices removed, /readyz says the node cannot watch them, and why',
    async (t) => {
      await removeVerb(t, 'endpointslices', 'watch')
      const node = await nodeAsServiceAccount('nexus-node-1', 'memory')
      t.teardown(() => node.stop())
      await node.start()
      const runtime = node.runtime as KubernetesRuntime
      await waitFor(
        () => runtime.notReadyBecause() !== undefined,
        runtime.endpointWatch,
        'problem',
        15_000,
        'the watch to be refused',
      )
      t.match(runtime.notReadyBecause(), /lacks the verb "watch" on "endpointslices\.discovery\.k8s\.io"/)
    },
  )
}
