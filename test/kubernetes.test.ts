import t from 'tap'
import { HttpServerConfigSchema, StdioServerConfigSchema } from '../node/config.ts'
import { demoServers } from '../node/demo-servers.ts'
import type { ServerRefusal } from '../node/hosted-servers.ts'
import { NexusNode } from '../node/nexus-node.ts'
import {
  DEPLOYMENTS,
  type KubeObject,
  type KubeRequestRecord,
  NETWORK_POLICIES,
  SERVICES,
} from '../node/runtime/kubernetes/kube-api.ts'
import type { KubernetesRuntime } from '../node/runtime/kubernetes/kubernetes-runtime.ts'
import { managedSelector, podTemplate, workloadName } from '../node/runtime/kubernetes/workload.ts'
import { workloadSpec } from '../node/runtime/kubernetes/workload-spec.ts'
import { resolvePackageBin } from '../node/runtime/package-bin.ts'
import type { RuntimeServer } from '../node/runtime/runtime.ts'
import { startNetwork } from '../testing/network.ts'
import { PODS } from './kube/cluster-actor.ts'
import { startKubeEnvironment, TEST_IMAGES, testImage } from './kube/kube-environment.ts'
import { kubeSuite } from './kube/kube-suite.ts'
import { RawSession } from './kube/raw-session.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { parsePrometheus } from './support/prometheus.ts'
import { waitFor, withTimeout } from './support/wait.ts'

await kubeSuite('the Kubernetes suite', suite)

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
      // Nodes join one after another: the first placements move as the others count. Wait for the settled state.
      const ids = ['everything', 'filesystem', 'memory', 'sequential-thinking']
      await waitFor(
        () =>
          ids.every((id) => network.gateway.view.hostsOf(id).length === 1) &&
          network.nodes.every((n) => n.runtime.status().every((s) => s.ready)),
        network.gateway.view,
        'change',
        60_000,
        'each server announced by exactly one node, every placement ready',
      )
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
        ids,
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

  const ready = (runtime: KubernetesRuntime, id: string) =>
    waitFor(
      () => runtime.status().some((s) => s.id === id && s.ready),
      runtime,
      'status',
      30_000,
      `${id} to have a ready pod`,
    )
  /** The reference server as an unverified `echo` of a given version and manifest hash (one hex digit, repeated). */
  const echo = (version: string, hashDigit: string): RuntimeServer => ({
    config: StdioServerConfigSchema.parse({
      id: 'echo',
      version,
      transport: 'stdio',
      package: '@modelcontextprotocol/server-everything',
      args: ['stdio'],
      warmPool: 0,
    }),
    manifestHash: `0x${hashDigit.repeat(64)}`,
  })
  /** What the node last asked the runtime to run, to ask again. */
  const recordEnsured = (runtime: KubernetesRuntime) => {
    let last: RuntimeServer[] = []
    const ensure = runtime.ensure.bind(runtime)
    runtime.ensure = (servers) => {
      last = servers
      return ensure(servers)
    }
    return () => last
  }
  const writes = (requests: KubeRequestRecord[]) =>
    requests.filter((r) => r.verb === 'patch' || r.verb === 'create')

  t.test(
    'a restarted node adopts its objects without rewriting them and deletes what is no longer assigned',
    async (t) => {
      const servers = [
        { id: 'everything', warmPool: 0 },
        { id: 'sequential-thinking', warmPool: 0 },
      ]
      const first = await env.kubernetesRuntime('team-a', 'node-adopt')
      const before = new NexusNode({ servers }, { runtime: first.runtime })
      await before.start()
      await ready(first.runtime, 'sequential-thinking')
      const kept = await managed('team-a', 'node-adopt')
      t.equal(kept.deployments.length, 2, 'two servers, two Deployments')
      await before.stop()
      t.equal(
        (await managed('team-a', 'node-adopt')).deployments.length,
        2,
        'a graceful stop keeps them (onStop: keep)',
      )

      const second = await env.kubernetesRuntime('team-a', 'node-adopt')
      const ensured = recordEnsured(second.runtime)
      const after = new NexusNode({ servers: [servers[0]!] }, { runtime: second.runtime })
      t.teardown(() => after.stop())
      await after.start()
      const now = await managed('team-a', 'node-adopt')
      t.same(now.deployments.map(serverIdOf), ['everything'], 'the server no longer listed is deleted')
      t.equal(now.services.length + now.policies.length, 2, 'with its Service and NetworkPolicy')
      const everything = kept.deployments.find((d) => serverIdOf(d) === 'everything')!
      t.equal(
        now.deployments[0]!.metadata.uid,
        everything.metadata.uid,
        'the kept Deployment is the same object',
      )
      t.equal(
        now.deployments[0]!.metadata.resourceVersion,
        everything.metadata.resourceVersion,
        'and it was not written to',
      )
      t.same(writes(second.requests), [], 'adopting costs no write')
      t.equal(
        second.requests.filter((r) => r.verb === 'delete').length,
        3,
        'three deletes: the dropped objects',
      )
      await ready(second.runtime, 'everything')
      const requestsBefore = second.requests.length
      await second.runtime.ensure(ensured())
      t.same(second.requests.slice(requestsBefore), [], 'a re-apply that changes nothing sends nothing')
    },
  )

  t.test(
    'a new version rolls out beside the old one: no session is cut, the old one goes once its sessions are done',
    async (t) => {
      const { runtime, requests } = await env.kubernetesRuntime('team-b', 'node-roll', {
        extra: { images: { echo: testImage('echo') } },
        drainTimeoutMs: 60_000,
      })
      t.teardown(() => runtime.stop())
      await runtime.ensure([echo('1.0.0', '1')])
      await ready(runtime, 'echo')
      const old = new RawSession(await runtime.open('echo'))
      await old.initialize()
      t.equal(await old.echo('before'), 'Echo: before', 'a session on version 1')

      await runtime.ensure([echo('1.0.1', '2')])
      const both = await managed('team-b', 'node-roll')
      t.same(
        both.deployments.map((d) => d.metadata.annotations?.['nexus.mcp/server-version']).sort(),
        ['1.0.0', '1.0.1'],
        'the new version gets its own Deployment beside the old one',
      )
      await waitFor(
        () => runtime.status()[0]?.version === '1.0.1' && runtime.status()[0]!.ready,
        runtime,
        'status',
        30_000,
        'version 1.0.1 to have a ready pod',
      )
      t.equal(await old.echo('during'), 'Echo: during', 'the old session goes on, on the old pod')
      const fresh = new RawSession(await runtime.open('echo'))
      await fresh.initialize()
      t.equal(await fresh.echo('new'), 'Echo: new', 'a new session is served by the new version')
      const newName = workloadName(
        { serverId: 'echo', version: '1.0.1', manifestHash: `0x${'2'.repeat(64)}` },
        'node-roll',
      )
      t.equal(
        env.actor.podsOf('team-b', { deployment: newName }).length,
        1,
        'the new version runs its own pod',
      )

      const deletesBefore = requests.filter((r) => r.verb === 'delete').length
      await old.session.close()
      await waitFor(
        () => requests.filter((r) => r.verb === 'delete').length === deletesBefore + 3,
        runtime,
        'synced',
        10_000,
        "the old version's three objects to be deleted",
      )
      const after = await managed('team-b', 'node-roll')
      t.same(
        after.deployments.map((d) => d.metadata.annotations?.['nexus.mcp/server-version']),
        ['1.0.1'],
        'once its last session ended, the old version is gone',
      )
      t.equal(await fresh.echo('still'), 'Echo: still', 'the new session is untouched')
      await fresh.session.close()
    },
  )

  t.test(
    'sessions left on a replaced version after the drain timeout are moved with NODE_DRAINING',
    async (t) => {
      const { runtime } = await env.kubernetesRuntime('team-b', 'node-drain', {
        extra: { images: { echo: testImage('echo') } },
        drainTimeoutMs: 500,
      })
      t.teardown(() => runtime.stop())
      await runtime.ensure([echo('2.0.0', '7')])
      await ready(runtime, 'echo')
      const old = new RawSession(await runtime.open('echo'))
      await old.initialize()
      await runtime.ensure([echo('2.0.1', '8')])
      const ended = await withTimeout(old.ended, 10_000, 'the old session to be moved')
      t.equal(
        ended.code,
        'NODE_DRAINING',
        'ended with NODE_DRAINING: its gateway moves it to the new version',
      )
    },
  )

  t.test('the pod template passes PodSecurity restricted; a weakened one is refused', async (t) => {
    const spec = workloadSpec(
      {
        config: StdioServerConfigSchema.parse({ id: 'probe', transport: 'stdio', command: 'true' }),
        manifestHash: `0x${'3'.repeat(64)}`,
      },
      testImage('probe'),
      '{}',
      1,
    )
    const context = { namespace: 'team-c', nodeName: 'node-psa', nodeNamespace: 'team-c', nodePodLabels: {} }
    const pod = (template: ReturnType<typeof podTemplate>, name: string) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, labels: (template.metadata as { labels: Record<string, string> }).labels },
      spec: template.spec,
    })
    const template = podTemplate(spec, context, 'psa-probe')
    const created = await env.admin.create(PODS, 'team-c', pod(template, 'psa-hardened'))
    t.equal(created.metadata.name, 'psa-hardened', 'the template as the node applies it is admitted')
    await env.admin.delete(PODS, 'team-c', 'psa-hardened')
    const weakenings: [
      string,
      (container: Record<string, unknown>, podSpec: Record<string, unknown>) => void,
    ][] = [
      [
        'privilege escalation allowed',
        (c) => ((c.securityContext as Record<string, unknown>).allowPrivilegeEscalation = true),
      ],
      [
        'a capability kept',
        (c) => ((c.securityContext as Record<string, unknown>).capabilities = { add: ['NET_RAW'] }),
      ],
      [
        'root allowed',
        (c, p) => {
          ;(c.securityContext as Record<string, unknown>).runAsNonRoot = false
          ;(p.securityContext as Record<string, unknown>).runAsNonRoot = false
        },
      ],
      [
        'no seccomp profile',
        (c, p) => {
          delete (c.securityContext as Record<string, unknown>).seccompProfile
          delete (p.securityContext as Record<string, unknown>).seccompProfile
        },
      ],
    ]
    for (const [what, weaken] of weakenings) {
      const weak = structuredClone(template)
      const podSpec = weak.spec as Record<string, unknown>
      weaken((podSpec.containers as Record<string, unknown>[])[0]!, podSpec)
      await t.rejects(
        env.admin.create(PODS, 'team-c', pod(weak, 'psa-weakened')),
        { status: 403, message: /violates PodSecurity "restricted:latest"/ },
        `${what}: refused by admission`,
      )
    }
  })

  t.test(
    'API server stopped and restarted under load: sessions keep being served, the node recovers its watch',
    async (t) => {
      const network = await startNetwork({
        nodes: [
          {
            servers: [{ id: 'everything', warmPool: 0 }],
            runtime: env.runtime('team-c', 'node-outage'),
            ops: { port: 0 },
          },
        ],
        readyTimeoutMs: 30_000,
      })
      t.teardown(network.stop)
      const node = network.nodes[0]!
      const runtime = node.runtime as KubernetesRuntime
      const { client } = await connectStreamable(network.gateway.serverUrl('everything'))
      t.teardown(() => client.close())
      let calls = 0
      const failures: unknown[] = []
      let loading = true
      const load = (async () => {
        while (loading) {
          try {
            await client.callTool({ name: 'echo', arguments: { message: `call ${calls}` } })
            calls++
          } catch (err) {
            failures.push(err)
          }
        }
      })()
      const watch = runtime.endpointWatch
      await env.cluster.stopApiServer()
      await waitFor(
        () => watch.problem !== undefined,
        watch,
        'problem',
        30_000,
        'the node to notice the outage',
      )
      const readyz = await fetch(`${node.opsUrl}/readyz`)
      t.equal(readyz.status, 503, '/readyz says the node is not fully ready…')
      t.match(await readyz.text(), /cannot watch EndpointSlices/, '…and why')
      const callsDuringOutage = calls
      const { client: newcomer } = await connectStreamable(network.gateway.serverUrl('everything'))
      t.teardown(() => newcomer.close())
      t.match(
        textOf(
          await newcomer.callTool({ name: 'echo', arguments: { message: 'while the API server is away' } }),
        ),
        /while the API server is away/,
        'a new session is served from the endpoints last seen',
      )
      const recovered = new Promise<{ afterMs: number }>((resolve) => watch.once('recovered', resolve))
      await env.cluster.startApiServer()
      await withTimeout(recovered, 30_000, 'the watch to recover')
      t.equal(runtime.notReadyBecause(), undefined, 'the node recovered its watch')
      t.equal((await fetch(`${node.opsUrl}/readyz`)).status, 200, '/readyz is 200 again')
      loading = false
      await load
      t.ok(
        calls > callsDuringOutage,
        `calls went on during the outage (${callsDuringOutage} before it was noticed, ${calls} in all)`,
      )
      t.same(failures, [], 'no call failed')
      const metrics = parsePrometheus(await (await fetch(`${node.opsUrl}/metrics`)).text())
      const kube = (labels: string) => metrics.get(`nexus_node_kube_requests_total{${labels}}`) ?? 0
      t.equal(
        kube('verb="patch",resource="deployments.apps",code="201"'),
        1,
        '/metrics counts the one apply, which created the Deployment (201)',
      )
      t.ok(
        kube('verb="list",resource="endpointslices.discovery.k8s.io",code="0"') >= 1,
        '…and the lists that found the API server unreachable',
      )
    },
  )

  t.test('an image that is a tag, or no image at all, is refused like any untrusted server', async (t) => {
    const refusals: ServerRefusal[] = []
    const node = new NexusNode({
      servers: [
        { id: 'everything', warmPool: 0 },
        { id: 'memory', warmPool: 0 },
        { id: 'sequential-thinking', warmPool: 0 },
      ],
      runtime: env.runtime('team-c', 'node-images', {
        images: {
          everything: 'registry.example/mcp-nexus/everything:latest',
          'sequential-thinking': TEST_IMAGES['sequential-thinking']!,
        },
      }),
    })
    node.on('server-refused', (r) => refusals.push(r))
    t.teardown(() => node.stop())
    await node.start()
    const byId = new Map(refusals.map((r) => [r.id, r]))
    t.equal(byId.get('everything')?.code, 'IMAGE_NOT_PINNED')
    t.match(
      byId.get('everything')?.reason,
      /not pinned by digest.*never a tag/,
      'a tag is named as the problem',
    )
    t.equal(byId.get('memory')?.code, 'IMAGE_NOT_PINNED')
    t.match(byId.get('memory')?.reason, /has no image/, 'a missing image is named as the problem')
    t.same(
      node.runtime.status().map((s) => s.id),
      ['sequential-thinking'],
      'the pinned one runs',
    )
    const { deployments } = await managed('team-c', 'node-images')
    t.same(deployments.map(serverIdOf), ['sequential-thinking'], 'nothing is applied for the refused ones')
  })

  t.test('a streamable-HTTP server is reached directly in its pod', async (t) => {
    const everything = resolvePackageBin('@modelcontextprotocol/server-everything')
    const { runtime } = await env.kubernetesRuntime('team-c', 'node-http', {
      extra: { images: { 'echo-http': testImage('echo-http') } },
    })
    t.teardown(() => runtime.stop())
    await runtime.ensure([
      {
        config: HttpServerConfigSchema.parse({
          id: 'echo-http',
          version: '1.0.0',
          transport: 'streamable-http',
          command: process.execPath,
          args: [everything.binPath, 'streamableHttp'],
        }),
        manifestHash: `0x${'4'.repeat(64)}`,
      },
    ])
    await ready(runtime, 'echo-http')
    const [pod] = env.actor.podsOf('team-c', { node: 'node-http' })
    t.ok(pod, 'its pod runs the server itself, no pod host')
    const session = new RawSession(await runtime.open('echo-http'))
    await session.initialize()
    t.equal(await session.echo('over HTTP'), 'Echo: over HTTP', 'node → pod over streamable HTTP')
    await session.session.close()
  })

  t.test("replicas follow the node's sessions, and sessions go to the least loaded pod", async (t) => {
    const { runtime } = await env.kubernetesRuntime('team-a', 'node-scale', {
      extra: { sessionsPerPod: 2, images: { echo: testImage('echo') } },
    })
    t.teardown(() => runtime.stop())
    await runtime.ensure([echo('0.0.0', '5')])
    await ready(runtime, 'echo')
    const replicas = async () =>
      (await managed('team-a', 'node-scale')).deployments[0]!.spec as { replicas: number }
    t.equal((await replicas()).replicas, 1, 'one pod while idle')
    const sessions = [new RawSession(await runtime.open('echo')), new RawSession(await runtime.open('echo'))]
    await waitFor(
      () => runtime.status()[0]!.idleInstances === 2,
      runtime,
      'status',
      30_000,
      'a second ready pod',
    )
    t.equal((await replicas()).replicas, 2, 'two sessions and room for the next: two pods')
    sessions.push(new RawSession(await runtime.open('echo')))
    for (const session of sessions) await session.initialize()
    t.equal(env.actor.podsOf('team-a', { node: 'node-scale' }).length, 2, 'the actor runs both pods')
    t.equal(runtime.status()[0]!.activeSessions, 3, 'three sessions')
    t.same(
      Object.values(runtime.sessionsByPod('echo')).sort(),
      [1, 2],
      'the two opened before the second pod share the first; the third went to the idle new pod',
    )
    for (const session of sessions) await session.session.close()
    await waitFor(
      () => runtime.status()[0]!.idleInstances === 1,
      runtime,
      'status',
      30_000,
      'back to one pod',
    )
    t.equal((await replicas()).replicas, 1, 'sessions gone: back to one pod')
  })

  t.test(
    'a server whose pods are all gone is withdrawn from the network, and announced again when one is back',
    async (t) => {
      const network = await startNetwork({
        nodes: [
          { servers: [{ id: 'memory', warmPool: 0 }], runtime: env.runtime('team-b', 'node-withdraw') },
        ],
        readyTimeoutMs: 30_000,
      })
      t.teardown(network.stop)
      const view = network.gateway.view
      t.equal(view.hostsOf('memory').length, 1, 'announced while its pod is ready')
      const [pod] = env.actor.podsOf('team-b', { node: 'node-withdraw' })
      await env.actor.crash(pod!, { replace: false })
      await waitFor(
        () => view.hostsOf('memory').length === 0,
        view,
        'change',
        15_000,
        'memory to be withdrawn',
      )
      t.pass('withdrawn once it has no ready endpoint')
      // The actor, playing the ReplicaSet controller, replaces the crashed pod.
      env.actor.release('team-b', pod!.deployment)
      await waitFor(() => view.hostsOf('memory').length === 1, view, 'change', 30_000, 'memory to be back')
      t.pass('announced again once a new pod is ready')
    },
  )

  t.test(
    'a field another manager owns is never overwritten: the conflict is reported and retried',
    async (t) => {
      const { runtime } = await env.kubernetesRuntime('team-c', 'node-conflict', {
        extra: { sessionsPerPod: 1, images: { echo: testImage('echo') } },
      })
      t.teardown(() => runtime.stop())
      await runtime.ensure([echo('0.0.0', '6')])
      await ready(runtime, 'echo')
      const deployment = (await managed('team-c', 'node-conflict')).deployments[0]!
      // An operator takes over the replica count, as an autoscaler or a `kubectl scale --server-side` would.
      await env.admin.apply(
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: deployment.metadata.name, namespace: 'team-c' },
          spec: { replicas: 3 },
        },
        'ops-team',
        true,
      )
      const session = new RawSession(await runtime.open('echo'))
      t.teardown(() => session.session.close())
      await waitFor(
        () => runtime.notReadyBecause() !== undefined,
        runtime,
        'synced',
        10_000,
        'the conflict to show',
      )
      t.match(
        runtime.notReadyBecause(),
        /conflict with "ops-team".*\.spec\.replicas/s,
        '/readyz names the manager and field',
      )
      const now = (await managed('team-c', 'node-conflict')).deployments[0]!
      t.equal((now.spec as { replicas: number }).replicas, 3, "the other manager's value stands")
      t.equal(runtime.status()[0]!.ready, true, 'what runs keeps serving')
      // The operator gives the field back: the node's next retry applies its own value.
      await env.admin.apply(
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: deployment.metadata.name, namespace: 'team-c' },
        },
        'ops-team',
      )
      await waitFor(
        () => runtime.notReadyBecause() === undefined,
        runtime,
        'synced',
        30_000,
        'a retry to succeed',
      )
      const retried = (await managed('team-c', 'node-conflict')).deployments[0]!
      t.equal((retried.spec as { replicas: number }).replicas, 2, "the retry applied the node's replicas")
    },
  )

  t.test("with onStop: delete, a graceful stop removes the node's objects", async (t) => {
    const node = new NexusNode({
      servers: [{ id: 'sequential-thinking', warmPool: 0 }],
      runtime: env.runtime('team-a', 'node-delete', { onStop: 'delete' }),
    })
    await node.start()
    t.equal((await managed('team-a', 'node-delete')).deployments.length, 1, 'applied at start')
    await node.stop()
    const left = await managed('team-a', 'node-delete')
    t.same([...left.deployments, ...left.services, ...left.policies], [], 'nothing of it is left')
  })
}
