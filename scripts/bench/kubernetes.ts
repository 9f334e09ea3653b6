import { readFileSync } from 'node:fs'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { NexusGateway } from '../../gateway/nexus-gateway.ts'
import { NexusNode } from '../../node/nexus-node.ts'
import { KubeApi, type KubeRequestRecord } from '../../node/runtime/kubernetes/kube-api.ts'
import { KubernetesRuntime } from '../../node/runtime/kubernetes/kubernetes-runtime.ts'
import { createLogger } from '../../protocol/logger.ts'
import { ClusterActor } from '../../test/kube/cluster-actor.ts'
import { kubeUnavailable } from '../../test/kube/kube-available.ts'
import { KubeCluster } from '../../test/kube/kube-cluster.ts'
import { createRestrictedNamespace, testImage } from '../../test/kube/kube-environment.ts'
import { waitFor } from '../../test/support/wait.ts'
import { distribution, round } from './stats.ts'

const SERVERS = Number(process.env.BENCH_KUBE_SERVERS ?? 100)
const RESTARTS = Number(process.env.BENCH_KUBE_RESTARTS ?? 5)
const OUTAGE_MS = Number(process.env.BENCH_KUBE_OUTAGE_MS ?? 10_000)
const NAMESPACE = 'bench'

/** CPU seconds a process has used, from /proc (Linux). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return Number.NaN
  }
}
const ownCpuSeconds = () => {
  const usage = process.cpuUsage()
  return (usage.user + usage.system) / 1e6
}
const NODE_NAME = 'bench-node'

/**
 * The Kubernetes runtime against a real kube-apiserver (the test harness), with the cluster actor playing
 * kubelet and controllers. Its pods are simulated (EndpointSlices published, no process started), so the
 * figures are the control path's own: node → API server → (controller) → EndpointSlice watch → announcement →
 * gateway. A real cluster adds its scheduling, image pulls and container starts to "ready".
 *
 * - `allocation`: a node's share goes from nothing to `SERVERS` servers at once; per server, the time to its
 *   objects applied, its endpoints seen ready, and the gateway seeing it announced (p50/p99).
 * - `steadyState`: API requests while nothing changes: an idle minute-long window, and re-applying the same
 *   share as an epoch that changed nothing would (goal: zero writes).
 * - `watchRecovery`: the API server killed, kept away `OUTAGE_MS`, and restarted, `RESTARTS` times; time from
 *   starting it again to it serving and to the node's EndpointSlice watch being current, and the whole outage.
 */
export async function benchKubernetes() {
  const unavailable = kubeUnavailable()
  if (unavailable !== undefined) return { skipped: unavailable }
  const cluster = await KubeCluster.start()
  const admin = await cluster.admin()
  await createRestrictedNamespace(admin, NAMESPACE)
  const actor = new ClusterActor(admin, [NAMESPACE], { simulatePodsAt: { port: 7800 } })
  await actor.start()
  const ids = Array.from({ length: SERVERS }, (_, i) => `bench-${String(i).padStart(3, '0')}`)
  const records: (KubeRequestRecord & { at: number })[] = []
  const config = {
    kind: 'kubernetes' as const,
    namespace: NAMESPACE,
    nodeName: NODE_NAME,
    kubeconfig: cluster.kubeconfig(),
    inCluster: false,
    nodePodLabels: { 'app.kubernetes.io/name': 'nexus-node' },
    images: Object.fromEntries(ids.map((id) => [id, testImage(id)])),
    sessionsPerPod: 16,
    minPods: 1,
    maxPods: 4,
    onStop: 'delete' as const,
    fieldManager: 'nexus-node',
  }
  const api = await KubeApi.connect(config, {
    onRequest: (r) => records.push({ ...r, at: performance.now() }),
  })
  const logger = createLogger('node')
  const runtime = new KubernetesRuntime({ api, config, logger })
  const gateway = new NexusGateway(
    { transport: 'memory', auth: { anonymous: true }, http: { port: 0 }, trust: { allowUnverified: true } },
    { privateKey: await generateKeyPair('Ed25519') },
  )
  await gateway.start()
  const servers = ids.map((id) => ({
    id,
    version: '1.0.0',
    transport: 'stdio' as const,
    command: 'true',
    warmPool: 0,
  }))
  const node = new NexusNode(
    {
      transport: 'memory',
      bootstrap: gateway.peer.getMultiaddrs().map(String),
      servers,
      trust: { allowUnverified: true },
      announceIntervalMs: 500,
    },
    { runtime },
  )
  const readyAt = new Map<string, number>()
  const announcedAt = new Map<string, number>()
  runtime.on('status', () => {
    const now = performance.now()
    for (const s of runtime.status()) if (s.ready && !readyAt.has(s.id)) readyAt.set(s.id, now)
  })
  gateway.view.on('change', () => {
    const now = performance.now()
    for (const id of ids)
      if (!announcedAt.has(id) && gateway.view.hostsOf(id).length > 0) announcedAt.set(id, now)
  })
  try {
    const cpuBefore = { apiServer: cpuSeconds(cluster.apiServerPid), bench: ownCpuSeconds() }
    const started = performance.now()
    await node.start()
    await waitFor(
      () => announcedAt.size === SERVERS,
      gateway.view,
      'change',
      300_000,
      'every server announced',
    )
    const deploymentOf = new Map(ids.map((id) => [runtime.workloadOf(id), id]))
    const appliedAt = new Map<string, number>()
    for (const r of records)
      if (r.verb === 'patch' && r.resource === 'deployments.apps' && r.name !== undefined) {
        const id = deploymentOf.get(r.name)
        if (id !== undefined && !appliedAt.has(id)) appliedAt.set(id, r.at)
      }
    const since = (times: Map<string, number>) => distribution([...times.values()].map((t) => t - started))
    const allocation = {
      servers: SERVERS,
      objects: SERVERS * 3,
      requestsToApply: records.filter((r) => r.verb === 'patch').length,
      appliedMs: since(appliedAt),
      readyMs: since(readyAt),
      announcedMs: since(announcedAt),
      // The bench process holds the node, the gateway and the actor (which plays the controllers).
      cpuSeconds: {
        apiServer: round(cpuSeconds(cluster.apiServerPid) - cpuBefore.apiServer),
        nodeGatewayAndActor: round(ownCpuSeconds() - cpuBefore.bench),
      },
    }

    const idleFrom = records.length
    const idleMs = Number(process.env.BENCH_KUBE_IDLE_MS ?? 60_000)
    await new Promise((resolve) => setTimeout(resolve, idleMs))
    const idle = records.slice(idleFrom)
    const reapplyFrom = records.length
    const share = runtime.servers()
    for (let epoch = 0; epoch < 10; epoch++) await runtime.ensure(share)
    const reapplied = records.slice(reapplyFrom)
    const steadyState = {
      idleWindowMs: idleMs,
      idleRequests: idle.length,
      idleWrites: idle.filter((r) => r.verb !== 'list' && r.verb !== 'watch' && r.verb !== 'get').length,
      unchangedEpochs: 10,
      requestsPerUnchangedEpoch: reapplied.length / 10,
      writesPerUnchangedEpoch: reapplied.filter((r) => r.verb === 'patch' || r.verb === 'delete').length / 10,
    }

    const apiServerStart: number[] = []
    const afterRestart: number[] = []
    const outage: number[] = []
    const watch = runtime.endpointWatch
    for (let i = 0; i < RESTARTS; i++) {
      const killed = performance.now()
      await cluster.stopApiServer()
      await waitFor(() => watch.problem !== undefined, watch, 'problem', 30_000, 'the outage noticed')
      const recovered = new Promise<number>((resolve) =>
        watch.once('recovered', () => resolve(performance.now())),
      )
      // The outage lasts a while, so that the watch's back-off has grown as in a real one.
      await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS))
      const restarting = performance.now()
      await cluster.startApiServer()
      apiServerStart.push(performance.now() - restarting)
      const at = await recovered
      afterRestart.push(at - restarting)
      outage.push(at - killed)
    }
    const watchRecovery = {
      restarts: RESTARTS,
      outageMs: OUTAGE_MS,
      // From starting the API server's process: until it serves (as the harness sees it), until the watch is current.
      apiServerStartMs: distribution(apiServerStart),
      recoveredAfterRestartMs: distribution(afterRestart),
      wholeOutageMs: distribution(outage),
    }
    return { allocation, steadyState, watchRecovery, note: 'pods simulated: control path only' }
  } finally {
    await gateway.stop()
    await node.stop()
    await actor.stop()
    await cluster.stop()
  }
}
