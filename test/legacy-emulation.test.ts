import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import {
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js'
import t from 'tap'
import { startNetwork } from '../testing/network.ts'
import { connectLegacySse, connectStreamable, recordProgress, textOf, waitUntil } from './support/clients.ts'
import { modernFixtureConfig } from './support/fixture-server.ts'
import { connectModern } from './support/modern-clients.ts'
import { withTimeout } from './support/wait.ts'

// The reverse era bridge: a server of the modern era alone (the SDK v2 fixture with legacy requests refused)
// reached by legacy agents — SDK v1 clients over streamable HTTP and legacy SSE — through the gateway. The
// node plays each legacy session itself, sending every request to the server as a 2026-07-28 request. Two
// nodes host the server, so a session outlives the process it was using.

const network = await startNetwork({
  nodes: 2,
  servers: [
    modernFixtureConfig('modern-only', { modernOnly: true }),
    modernFixtureConfig('declared-modern', { eras: ['modern'] }),
    modernFixtureConfig('both-eras'),
  ],
})
t.teardown(network.stop)
const url = (id: string) => network.gateway.serverUrl(id)
const SIMPLE_TEXT = 'This is a simple text response for testing.'

t.test('a node learns at start that the server speaks only the modern era', async (t) => {
  for (const node of network.nodes) {
    const status = node.runtime.status()
    t.same(status.find((s) => s.id === 'modern-only')?.eras, ['modern'], 'probed: legacy refused')
    t.same(status.find((s) => s.id === 'declared-modern')?.eras, ['modern'], 'declared in the configuration')
    t.same(status.find((s) => s.id === 'both-eras')?.eras, ['legacy', 'modern'], 'probed: both answered')
  }
})

t.test('a legacy client initializes, lists and calls on a modern-only server', async (t) => {
  const { client } = await connectStreamable(url('modern-only'))
  t.teardown(() => client.close())
  t.match(client.getServerVersion(), { name: 'nexus-modern-fixture' }, 'serverInfo from server/discover')
  t.match(client.getServerCapabilities(), { tools: {}, resources: { subscribe: true } })
  const tools = await client.listTools()
  t.ok(
    tools.tools.some((tool) => tool.name === 'test_simple_text'),
    'tools/list',
  )
  t.notOk('resultType' in tools, 'the modern result fields are not shown to a legacy client')
  t.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), SIMPLE_TEXT)
  const read = await client.readResource({ uri: 'test://static-text' })
  t.match(read.contents[0], { text: 'This is the content of the static text resource.' })
  const prompt = await client.getPrompt({ name: 'test_simple_prompt' })
  t.match(prompt.messages[0], { role: 'user' })
  await client.ping()
  const failed = await client.callTool({ name: 'test_error_handling', arguments: {} })
  t.equal(failed.isError, true, 'a tool error is passed on as one')
})

t.test('progress reaches the legacy client during the call', async (t) => {
  const { client } = await connectStreamable(url('modern-only'))
  t.teardown(() => client.close())
  const seen = recordProgress(client)
  const result = await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
    onprogress: () => {},
  })
  t.equal(textOf(result), 'Progress complete')
  t.same(seen, [0, 50, 100])
})

t.test(
  "a server's input_required becomes an elicitation request to the legacy client, and resumes",
  async (t) => {
    const { client } = await connectStreamable(url('modern-only'))
    t.teardown(() => client.close())
    const result = await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} })
    t.equal(textOf(result), 'Hello, Ada Lovelace', "the client's answer went back with the server's state")
  },
)

t.test('input the client cannot give, or refuses, fails the call with the reason', async (t) => {
  const bare = new Client({ name: 'no-elicitation', version: '1.0.0' }, { capabilities: {} })
  await bare.connect(new StreamableHTTPClientTransport(new URL(url('modern-only'))))
  t.teardown(() => bare.close())
  await t.rejects(
    bare.callTool({ name: 'test_input_required_result_elicitation', arguments: {} }),
    /did not declare|elicitation/,
    'a server asking what the client cannot answer',
  )
  const refusing = new Client({ name: 'refusing', version: '1.0.0' }, { capabilities: { elicitation: {} } })
  const { ElicitRequestSchema } = await import('@modelcontextprotocol/sdk/types.js')
  refusing.setRequestHandler(ElicitRequestSchema, async () => {
    throw new Error('the person walked away')
  })
  await refusing.connect(new StreamableHTTPClientTransport(new URL(url('modern-only'))))
  t.teardown(() => refusing.close())
  await t.rejects(
    refusing.callTool({ name: 'test_input_required_result_elicitation', arguments: {} }),
    /refused the server's request: .*walked away/,
  )
  t.equal(
    textOf(await refusing.callTool({ name: 'test_simple_text', arguments: {} })),
    SIMPLE_TEXT,
    'the session goes on',
  )
})

t.test('logging/setLevel becomes the per-request log level', async (t) => {
  const { client } = await connectStreamable(url('modern-only'))
  t.teardown(() => client.close())
  const logged: unknown[] = []
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    logged.push(n.params.data)
  })
  t.equal(
    textOf(await client.callTool({ name: 'test_tool_with_logging', arguments: {} })),
    'log level: undefined',
  )
  t.same(logged, [], 'no level set: no log messages')
  await client.setLoggingLevel('info')
  t.equal(textOf(await client.callTool({ name: 'test_tool_with_logging', arguments: {} })), 'log level: info')
  t.same(logged, ['started, logged at info', 'running, logged at info', 'completed, logged at info'])
})

t.test('subscriptions and list changes reach the legacy client over the listen stream', async (t) => {
  const { client } = await connectStreamable(url('modern-only'))
  t.teardown(() => client.close())
  const updated: string[] = []
  let listChanged = 0
  const events = Promise.withResolvers<void>()
  const check = () => {
    if (updated.includes('test://static-text') && listChanged > 0) events.resolve()
  }
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    updated.push(n.params.uri)
    check()
  })
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    listChanged++
    check()
  })
  // The subscription is answered once the server acknowledged the stream that carries it.
  await client.subscribeResource({ uri: 'test://static-text' })
  await client.callTool({ name: 'test_publish_changes', arguments: { uri: 'test://static-text' } })
  await withTimeout(events.promise, 10_000, 'a resource update and a tools list change')
  t.ok(updated.includes('test://static-text'))
  t.ok(listChanged > 0)
  await client.unsubscribeResource({ uri: 'test://static-text' })
})

t.test('a legacy SSE client and a v2 client in auto mode are served too', async (t) => {
  const { client } = await connectLegacySse(network.gateway.sseUrl('modern-only'))
  t.teardown(() => client.close())
  t.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), SIMPLE_TEXT)
  const modern = await connectModern(url('modern-only'), 'auto')
  t.teardown(() => modern.close())
  t.equal(modern.getProtocolEra(), 'modern')
  t.equal(textOf(await modern.callTool({ name: 'test_simple_text', arguments: {} })), SIMPLE_TEXT)
})

t.test(
  'a server process that dies ends its emulated sessions, and the gateway fails them over',
  async (t) => {
    const { client } = await connectStreamable(url('declared-modern'))
    t.teardown(() => client.close())
    t.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), SIMPLE_TEXT)
    const serving = network.nodes.find(
      (node) => (node.runtime.status().find((s) => s.id === 'declared-modern')?.activeSessions ?? 0) > 0,
    )
    t.ok(serving, 'one node holds the session')
    const [pid] = serving!.runtime.status().find((s) => s.id === 'declared-modern')!.pids
    process.kill(pid!, 'SIGKILL')
    await waitUntil(
      10_000,
      'the session to end on the node',
      (check) => {
        const timer = setInterval(() => check(undefined), 25)
        t.teardown(() => clearInterval(timer))
      },
      () => serving!.runtime.status().find((s) => s.id === 'declared-modern')?.activeSessions === 0,
    )
    t.equal(
      textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })),
      SIMPLE_TEXT,
      'the next call is answered on a session the gateway opened again',
    )
  },
)
