import { once } from 'node:events'
import t from 'tap'
import type { NexusNode } from '../node/nexus-node.ts'
import { ProcessRuntime } from '../node/runtime/process-runtime.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, recordProgress, SAMPLED_TEXT, textOf } from './support/clients.ts'
import { fixtureHttpServerConfig, fixtureServerConfig, startDirectFixture } from './support/fixture-server.ts'

function runtimeOf(node: NexusNode): ProcessRuntime {
  if (!(node.runtime instanceof ProcessRuntime)) throw new Error('expected the process runtime')
  return node.runtime
}

const statusOf = (node: NexusNode, serverId: string) => {
  const status = node.runtime.status().find((s) => s.id === serverId)
  if (status === undefined) throw new Error(`${serverId} is not hosted`)
  return status
}

t.test('streamable-HTTP upstream: server-everything started by the node on a port of its own', async (t) => {
  const network = await startNetwork({
    servers: [
      {
        id: 'everything-http',
        transport: 'streamable-http',
        package: '@modelcontextprotocol/server-everything',
        args: ['streamableHttp'],
      },
    ],
  })
  t.teardown(network.stop)
  const node = network.nodes[0]!
  t.equal(statusOf(node, 'everything-http').pids.length, 1, 'one server process serves every session')

  const { client, transport } = await connectStreamable(network.gateway.serverUrl('everything-http'))
  t.teardown(() => client.close())
  const { tools } = await client.listTools()
  t.ok(tools.some((tool) => tool.name === 'echo'))
  t.equal(
    textOf(await client.callTool({ name: 'echo', arguments: { message: 'over HTTP upstream' } })),
    'Echo: over HTTP upstream',
  )
  const sampled = await client.callTool({
    name: 'trigger-sampling-request',
    arguments: { prompt: 'say hi', maxTokens: 10 },
  })
  t.match(textOf(sampled), SAMPLED_TEXT, 'a server-to-client request travels back over the HTTP upstream')
  const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} })
  t.match(textOf(elicited), 'Ada Lovelace')
  const seen = recordProgress(client)
  await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
    undefined,
    { onprogress: () => {} },
  )
  t.same(seen, [1, 2, 3], 'progress notifications arrive in order')

  t.equal(statusOf(node, 'everything-http').activeSessions, 1)
  const closed = once(node, 'session-closed')
  await transport.terminateSession()
  await closed
  t.equal(statusOf(node, 'everything-http').activeSessions, 0, 'DELETE ends the upstream session')
})

t.test('streamable-HTTP upstream: an existing server reached by URL', async (t) => {
  const direct = await startDirectFixture()
  t.teardown(direct.stop)
  const network = await startNetwork({
    servers: [{ id: 'external', transport: 'streamable-http', url: direct.url }],
  })
  t.teardown(network.stop)
  t.same(statusOf(network.nodes[0]!, 'external').pids, [], 'the node starts no process for a URL')
  const { client } = await connectStreamable(network.gateway.serverUrl('external'))
  t.teardown(() => client.close())
  t.match(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), /simple text/i)
})

t.test('streamable-HTTP upstream: a server process that dies is restarted; its sessions end', async (t) => {
  const network = await startNetwork({
    servers: [fixtureHttpServerConfig('fixture-http')],
  })
  t.teardown(network.stop)
  const node = network.nodes[0]!
  const runtime = runtimeOf(node)
  const { client } = await connectStreamable(network.gateway.serverUrl('fixture-http'))
  t.teardown(() => client.close())
  await client.callTool({ name: 'test_simple_text', arguments: {} })

  const [pid] = statusOf(node, 'fixture-http').pids
  const exited = once(runtime, 'process-exited')
  const restarted = once(runtime, 'process-started')
  process.kill(pid!, 'SIGKILL')
  const [exit] = await exited
  t.match(exit, { serverId: 'fixture-http', description: /SIGKILL/ })
  t.ok(exit.retryInMs > 0, `a process that died young is restarted after a back-off (${exit.retryInMs} ms)`)
  await t.rejects(
    client.callTool({ name: 'test_simple_text', arguments: {} }),
    { code: 404 },
    'the session on the dead process has ended: the client is told to start a new one',
  )

  const [started] = await restarted
  t.not(started.pid, pid, 'a new process')
  t.equal(statusOf(node, 'fixture-http').restarts, 1)
  await network.waitForServers(['fixture-http'])
  const { client: again } = await connectStreamable(network.gateway.serverUrl('fixture-http'))
  t.teardown(() => again.close())
  t.match(textOf(await again.callTool({ name: 'test_simple_text', arguments: {} })), /simple text/i)
})

t.test(
  'stdio warm pool: dead pooled processes are replaced, with growing back-off while they keep dying',
  async (t) => {
    const network = await startNetwork({ servers: [{ ...fixtureServerConfig('pooled'), warmPool: 2 }] })
    t.teardown(network.stop)
    const node = network.nodes[0]!
    const runtime = runtimeOf(node)
    t.equal(statusOf(node, 'pooled').pids.length, 2, 'the pool holds two pre-started processes')

    const delays: number[] = []
    for (let i = 0; i < 3; i++) {
      const [victim] = statusOf(node, 'pooled').pids
      const exited = once(runtime, 'process-exited')
      const replaced = once(runtime, 'process-started')
      process.kill(victim!, 'SIGKILL')
      const [exit] = await exited
      delays.push(exit.retryInMs)
      const [started] = await replaced
      t.not(started.pid, victim)
      t.equal(statusOf(node, 'pooled').idleInstances, 2, `pool full again after crash ${i + 1}`)
    }
    t.ok(delays[0]! > 0 && delays[1]! > delays[0]! && delays[2]! > delays[1]!, `back-off grows: ${delays}`)
    t.equal(statusOf(node, 'pooled').restarts, 3)

    const { client } = await connectStreamable(network.gateway.serverUrl('pooled'))
    t.teardown(() => client.close())
    t.match(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), /simple text/i)
    t.equal(statusOf(node, 'pooled').activeSessions, 1, 'the session took a process from the pool')
  },
)
