import t from 'tap'
import { hashId, weight } from '../allocator/rendezvous.ts'
import type { Assignment } from '../allocator/types.ts'
import { demoServers } from '../node/demo-servers.ts'
import type { NexusNode } from '../node/nexus-node.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable } from './support/clients.ts'
import { waitFor } from './support/wait.ts'

const SERVERS = ['everything', 'memory', 'filesystem', 'sequential-thinking']
// Small replicas, so that six sessions are "high demand": 2 sessions per replica at 70% → 3 replicas from 3
// sessions on. (Each session is a real server process: the test stays light beside the others.)
const policy = { sessionsPerReplica: 2, minReplicas: 2, idleReplicas: 1 }

const network = await startNetwork({
  nodes: [0, 1, 2].map((i) => ({
    servers: demoServers({ warmPool: 0 }),
    labels: { operator: `operator-${i}` },
  })),
  node: {
    // A settle delay of 1 s: on a busy 2-core machine, gossip can take longer than a few hundred ms.
    allocation: { enabled: true, epochMs: 2_000, settleMs: 1_000, joinDelayMs: 2_000, policy },
    announceIntervalMs: 500,
  },
  gateway: { demandIntervalMs: 250 },
  readyTimeoutMs: 30_000,
})
t.teardown(network.stop)
const { gateway } = network

/** Every node's assignment hash, by epoch. */
const hashes = new Map<number, Map<string, string>>()
for (const node of network.nodes)
  node.on('assignment', (a: Assignment) => {
    const byNode = hashes.get(a.epoch) ?? new Map<string, string>()
    byNode.set(node.peerId, a.hash)
    hashes.set(a.epoch, byNode)
  })
const hostCount = (serverId: string) => gateway.view.hostsOf(serverId).length
const hosting = (node: NexusNode, serverId: string) => node.runtime.has(serverId)

t.test(
  'with no static list, every whitelisted server gets hosted, and all nodes agree on each epoch',
  async (t) => {
    for (const id of SERVERS) t.ok(hostCount(id) >= 1, `${id} is hosted somewhere`)
    await waitFor(
      () => [...hashes.values()].filter((byNode) => byNode.size === 3).length >= 3,
      network.nodes[0]!,
      'assignment',
      30_000,
      'three epochs computed by all three nodes',
    )
    const complete = [...hashes].filter(([, byNode]) => byNode.size === 3)
    for (const [epoch, byNode] of complete)
      t.equal(new Set(byNode.values()).size, 1, `epoch ${epoch}: the same assignment hash on every node`)
    for (const node of network.nodes) t.equal(node.allocation!.divergences, 0, 'no node saw a peer disagree')
    const announced = gateway.view.hostsOf('everything')[0]!
    t.ok(announced.load, 'nodes announce their load as before')
  },
)

t.test(
  'demand rises: more replicas on more nodes; it falls: a replica is handed over, no session cut',
  async (t) => {
    t.equal(hostCount('everything'), 1, 'an idle server has one replica')
    const clients = await Promise.all(
      Array.from({ length: 6 }, () => connectStreamable(gateway.serverUrl('everything'))),
    )
    t.teardown(() => Promise.all(clients.map(({ client }) => client.close())))
    await waitFor(
      () => hostCount('everything') === 3,
      gateway.view,
      'change',
      20_000,
      'three replicas of everything',
    )
    t.equal(network.nodes.filter((n) => hosting(n, 'everything')).length, 3, 'every node runs it')
    // Open sessions until the replicas hold some, then keep two sessions and end the rest. Two sessions need
    // two replicas: the allocator drops the node that ranks lowest for `everything` (rendezvous weight; the
    // operators are all distinct), so one kept session is on that node and must be handed over. Hosts are
    // chosen by power of two choices, which is random: sessions are opened until both nodes have one.
    const nodeOf = (sessionId: string | undefined) =>
      network.nodes.find((n) => sessionId !== undefined && n.sessions.has(sessionId))
    const rank = (n: NexusNode) => weight(hashId('everything'), hashId(n.peerId))
    const [dropped, stays] = [...network.nodes].sort((a, b) => rank(a) - rank(b))
    const all = [...clients]
    const onNode = (node: NexusNode | undefined) => all.find((c) => nodeOf(c.transport.sessionId) === node)
    while (all.length < 30 && (onNode(dropped) === undefined || onNode(stays) === undefined))
      all.push(await connectStreamable(gateway.serverUrl('everything')))
    const kept = [onNode(dropped), onNode(stays)]
    t.ok(
      kept.every((c) => c !== undefined),
      'a session on the node that will be dropped, and one on another',
    )
    // Ending a session (DELETE) is what lowers the gateway's demand report.
    const end = async ({ client, transport }: (typeof all)[number]) => {
      await transport.terminateSession()
      await client.close()
    }
    await Promise.all(all.filter((c) => !kept.includes(c)).map(end))
    t.teardown(() => Promise.all(kept.map((c) => c!.client.close())))
    await waitFor(() => hostCount('everything') === 2, gateway.view, 'change', 20_000, 'two replicas again')
    await waitFor(
      () => !hosting(dropped!, 'everything'),
      gateway.view,
      'change',
      20_000,
      'the lowest-ranked node stopped it',
    )
    for (const [i, c] of kept.entries()) {
      const result = await c!.client.callTool({ name: 'echo', arguments: { message: `still ${i}` } })
      t.match(result, { content: [{ text: new RegExp(`still ${i}`) }] }, `session ${i} goes on`)
    }
  },
)

t.test('a node leaves: its servers are re-placed on the others, its sessions move there', async (t) => {
  // A server only one node runs: its session has nowhere to go until the allocator re-places the server.
  const single = SERVERS.find((id) => network.nodes.filter((n) => hosting(n, id)).length === 1)!
  const leaving = network.nodes.find((n) => hosting(n, single))!
  const carried = SERVERS.filter((id) => hosting(leaving, id))
  const { client } = await connectStreamable(gateway.serverUrl(single))
  t.teardown(() => client.close())
  const tools = (await client.listTools()).tools
  await leaving.stop()
  const rest = network.nodes.filter((n) => n !== leaving)
  await waitFor(
    () => SERVERS.every((id) => rest.some((n) => hosting(n, id)) && hostCount(id) >= 1),
    gateway.view,
    'change',
    20_000,
    'every server hosted by the remaining nodes',
  )
  t.pass(`${carried.join(', ')} moved off the leaving node`)
  t.same(
    (await client.listTools()).tools.map((tool) => tool.name),
    tools.map((tool) => tool.name),
    `the session on ${single} went on, on another node`,
  )
})
