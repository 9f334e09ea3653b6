import t from 'tap'
import { demoServers } from '../node/demo-servers.ts'
import { startNetwork } from '../testing/network.ts'
import { connectLegacySse, recordProgress, SAMPLED_TEXT, textOf } from './support/clients.ts'

const network = await startNetwork({
  nodes: 1,
  servers: demoServers().filter((s) => s.id === 'everything' || s.id === 'memory'),
})
t.teardown(network.stop)

t.test('legacy HTTP+SSE: list and call tools on each server', async (t) => {
  for (const id of ['everything', 'memory']) {
    const { client } = await connectLegacySse(network.gateway.sseUrl(id))
    const { tools } = await client.listTools()
    t.ok(tools.length > 0, `${id} lists ${tools.length} tools`)
    await client.close()
  }
  const { client } = await connectLegacySse(network.gateway.sseUrl('everything'))
  t.teardown(() => client.close())
  t.equal(
    textOf(await client.callTool({ name: 'echo', arguments: { message: 'old transport' } })),
    'Echo: old transport',
  )
})

t.test('legacy HTTP+SSE: sampling, elicitation and progress', async (t) => {
  const { client } = await connectLegacySse(network.gateway.sseUrl('everything'))
  t.teardown(() => client.close())
  t.match(
    textOf(await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi' } })),
    SAMPLED_TEXT,
  )
  t.match(
    textOf(await client.callTool({ name: 'trigger-elicitation-request', arguments: {} })),
    'Ada Lovelace',
  )
  const seen = recordProgress(client)
  await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
    undefined,
    {
      onprogress: () => {},
    },
  )
  t.same(seen, [1, 2, 3])
})

t.test('legacy HTTP+SSE: closing the event stream ends the session on the node', async (t) => {
  const before = new Set(network.gateway.sessions.keys())
  const { client } = await connectLegacySse(network.gateway.sseUrl('memory'))
  await client.listTools()
  const sessionId = [...network.gateway.sessions.keys()].find((id) => !before.has(id))!
  const node = network.nodes[0]!
  t.ok(node.sessions.has(sessionId), 'the node holds the session')
  const closed = new Promise((resolve) => node.on('session-closed', (s) => s.id === sessionId && resolve(s)))
  await client.close()
  await closed
  t.notOk(node.sessions.has(sessionId), 'the node released it')
})

t.test('legacy HTTP+SSE: posting to an unknown session is a 404', async (t) => {
  const response = await fetch(`${network.gateway.url}/messages?sessionId=nope`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  })
  t.equal(response.status, 404)
  t.match(await response.json(), { error: { message: /Session not found/ } })
})
