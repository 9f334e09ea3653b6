import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js'
import t from 'tap'
import { createApiKey } from '../gateway/api-keys.ts'
import { parseGatewayConfig } from '../gateway/config.ts'
import { demoServers } from '../node/demo-servers.ts'
import { NexusNode } from '../node/nexus-node.ts'
import { startNetwork } from '../testing/network.ts'
import {
  connectStreamable,
  firstResourceUpdate,
  newClient,
  recordProgress,
  SAMPLED_TEXT,
  textOf,
} from './support/clients.ts'
import { connectModern, MODERN_SAMPLED_TEXT } from './support/modern-clients.ts'
import { waitFor } from './support/wait.ts'

// The unified endpoint: `/mcp` is one MCP server for the four reference servers at once (on two nodes),
// reached by SDK clients. Names are namespaced and calls routed to each server's own session; progress,
// sampling, elicitation, subscriptions and completions travel through it; a server whose host goes drops out
// of the lists (with list_changed) and comes back with a new host; virtual servers show a renamed subset to
// whom they are for; and scopes hide the tools a key may not use.

const keysFile = join(mkdtempSync(join(tmpdir(), 'nexus-unified-')), 'keys.json')
const echoOnly = createApiKey(keysFile, 'echo-only', ['server:everything/echo', 'team:research']).key
const everyone = createApiKey(keysFile, 'everyone', ['server:*']).key
const researcher = createApiKey(keysFile, 'researcher', ['server:*', 'team:research']).key
const [everything, memory, filesystem, thinking] = demoServers({ warmPool: 1 }) as [
  ReturnType<typeof demoServers>[0],
  ReturnType<typeof demoServers>[0],
  ReturnType<typeof demoServers>[0],
  ReturnType<typeof demoServers>[0],
]
const network = await startNetwork({
  nodes: [{ servers: [everything, filesystem, thinking] }, { servers: [memory] }],
  gateway: {
    auth: { apiKeys: keysFile },
    failover: { takeoverTimeoutMs: 1_000 },
    virtualServers: {
      research: {
        servers: ['everything', 'memory'],
        tools: ['everything/echo', 'memory/*'],
        rename: { 'everything/echo': 'say' },
        descriptions: { 'everything/echo': 'Says it back.' },
        scopes: ['team:research'],
      },
    },
  },
  readyTimeoutMs: 30_000,
})
t.teardown(network.stop)
/** The node that takes memory over once its first host is gone; the later tests use it too. */
let replacement: NexusNode | undefined
t.teardown(() => replacement?.stop())
const base = new URL(network.gateway.serverUrl('x')).origin
/** A bare `initialize` POST, to see how the gateway answers before any session exists. */
const initializeAt = (path: string, key: string) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
    }),
  })
const connect = (key: string, path = '/mcp') =>
  connectStreamable(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } })

t.test('one endpoint lists and calls the four servers, namespaced, across two nodes', async (t) => {
  const { client } = await connect(everyone)
  t.teardown(() => client.close())
  const { tools } = await client.listTools()
  const names = tools.map((tool) => tool.name)
  for (const name of [
    'everything__echo',
    'memory__create_entities',
    'filesystem__read_text_file',
    'sequential-thinking__sequentialthinking',
  ])
    t.ok(names.includes(name), `${name} is listed`)
  t.equal(new Set(names).size, names.length, 'no two tools share a name')
  const echoed = await client.callTool({ name: 'everything__echo', arguments: { message: 'one endpoint' } })
  t.match(textOf(echoed), /one endpoint/)
  const entities = await client.callTool({
    name: 'memory__create_entities',
    arguments: { entities: [{ name: 'Ada', entityType: 'person', observations: ['unified'] }] },
  })
  t.match(textOf(entities), /Ada/, 'a call on the other node')
  const unknown = await client.callTool({ name: 'nobody__echo', arguments: {} }).catch((err: Error) => err)
  t.match(unknown, { code: -32602, message: /tool nobody__echo is not offered here/ })

  const { prompts } = await client.listPrompts()
  t.ok(
    prompts.some((p) => p.name === 'everything__simple-prompt'),
    'prompts are namespaced too',
  )
  const prompt = await client.getPrompt({ name: 'everything__simple-prompt' })
  t.ok(prompt.messages.length > 0)
  const { resources } = await client.listResources()
  const doc = resources.find(
    (r) => r.uri === 'nexus:everything:demo://resource/static/document/architecture.md',
  )
  t.ok(doc, 'resources are named nexus:<server>:<uri>')
  const read = await client.readResource({ uri: doc!.uri })
  t.equal(read.contents[0]!.uri, doc!.uri, 'what is read carries the namespaced uri')
  const { resourceTemplates } = await client.listResourceTemplates()
  t.ok(
    resourceTemplates.every((r) => r.uriTemplate.startsWith('nexus:')),
    'templates keep their variables, namespaced',
  )
  const completion = await client.complete({
    ref: { type: 'ref/prompt', name: 'everything__completable-prompt' },
    argument: { name: 'department', value: 'En' },
  })
  t.ok(completion.completion.values.length > 0, 'completions are routed by the prompt name')
})

t.test('progress, sampling, elicitation and subscriptions travel through the unified endpoint', async (t) => {
  const { client } = await connect(everyone)
  t.teardown(() => client.close())
  const seen = recordProgress(client)
  const long = await client.callTool(
    { name: 'everything__trigger-long-running-operation', arguments: { duration: 0.5, steps: 5 } },
    undefined,
    { onprogress: () => {} },
  )
  t.same(seen, [1, 2, 3, 4, 5], "progress arrives under the agent's own token")
  t.match(textOf(long), /completed/)
  const sampled = await client.callTool({
    name: 'everything__trigger-sampling-request',
    arguments: { prompt: 'say hi', maxTokens: 10 },
  })
  t.match(textOf(sampled), SAMPLED_TEXT, 'the server asked the agent to sample, mid-call')
  const elicited = await client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} })
  t.match(textOf(elicited), 'Ada Lovelace')
  const uri = 'nexus:everything:demo://resource/static/document/architecture.md'
  const updated = await firstResourceUpdate(client, uri, 'everything__toggle-subscriber-updates')
  t.equal(updated, uri, 'updates name the namespaced uri')
})

t.test(
  'partial failure stays partial: a server whose host goes drops out, and comes back with a host',
  async (t) => {
    const { client } = await connect(everyone)
    t.teardown(() => client.close())
    let changes = 0
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      changes++
    })
    const before = (await client.listTools()).tools.map((tool) => tool.name)
    t.ok(before.includes('memory__read_graph'))
    const memoryNode = network.nodes[1]!
    await memoryNode.stop()
    await waitFor(
      () => changes >= 1,
      network.gateway.view,
      'change',
      20_000,
      'list_changed after the host left',
    )
    const without = (await client.listTools()).tools.map((tool) => tool.name)
    t.notOk(
      without.some((name) => name.startsWith('memory__')),
      'memory dropped out of the list',
    )
    t.ok(without.includes('everything__echo'), 'the other servers stay')
    const echoed = await client.callTool({ name: 'everything__echo', arguments: { message: 'still here' } })
    t.match(textOf(echoed), /still here/)
    const gone = await client
      .callTool({ name: 'memory__read_graph', arguments: {} })
      .catch((err: Error) => err)
    // Whether the gateway has forgotten the node yet, still tries it, or its session to memory waited in vain
    // for another host (failover.takeoverTimeoutMs), the agent gets an error at once or within that time.
    t.ok(
      [-32602, -32011, -32010].includes((gone as unknown as { code: number }).code),
      'not offered (-32602), no host (-32011), or its node failed (-32010)',
    )

    replacement = new NexusNode({
      transport: 'memory',
      trust: { allowUnverified: true },
      servers: [memory],
      bootstrap: [network.nodes[0]!.multiaddrs[0]!],
    })
    await replacement.start()
    const seenBefore = changes
    await waitFor(
      () => changes > seenBefore,
      network.gateway.view,
      'change',
      20_000,
      'list_changed after a host came',
    )
    const back = (await client.listTools()).tools.map((tool) => tool.name)
    t.ok(back.includes('memory__read_graph'), 'memory is back')
    const graph = await client.callTool({ name: 'memory__read_graph', arguments: {} })
    t.match(textOf(graph), /entities/)
  },
)

t.test('a virtual server shows its subset, renamed and redescribed, to whom it is for', async (t) => {
  const { client } = await connect(echoOnly, '/mcp/v/research')
  t.teardown(() => client.close())
  const { tools } = await client.listTools()
  t.same(
    tools.map((tool) => tool.name),
    ['say'],
    'only echo (renamed): memory is in the subset, but this key may use no tool of it',
  )
  t.equal(tools[0]!.description, 'Says it back.')
  t.match(textOf(await client.callTool({ name: 'say', arguments: { message: 'virtual' } })), /virtual/)
  const outside = await client
    .callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } })
    .catch((e: Error) => e)
  t.match(outside, { code: -32602 })

  const { client: wide } = await connect(researcher, '/mcp/v/research')
  t.teardown(() => wide.close())
  const wideNames = (await wide.listTools()).tools.map((tool) => tool.name)
  t.ok(
    wideNames.includes('say') && wideNames.some((n) => n.startsWith('memory__')),
    'a key with every scope sees the whole subset',
  )
  t.notOk(wideNames.includes('everything__get-sum'), 'but nothing outside it')

  const missing = await initializeAt('/mcp/v/nowhere', everyone)
  t.equal(missing.status, 404, 'an unknown virtual server is not found')
  const notTheirs = await initializeAt('/mcp/v/research', everyone)
  t.equal(notTheirs.status, 404, 'nor is one meant for another team (scope team:research)')
})

t.test('scopes: a key sees, and may call, only the tools it may use', async (t) => {
  const { client } = await connect(echoOnly)
  t.teardown(() => client.close())
  const names = (await client.listTools()).tools.map((tool) => tool.name)
  t.same(names, ['everything__echo'])
  const refused = await client
    .callTool({ name: 'sequential-thinking__sequentialthinking', arguments: {} })
    .catch((e: Error) => e)
  t.match(refused, { code: -32602, message: /not yours to use/ })
})

t.test('the same endpoint on the legacy HTTP+SSE transport: /sse', async (t) => {
  const authorized: typeof fetch = (url, init) => {
    const headers = new Headers(init?.headers)
    headers.set('authorization', `Bearer ${everyone}`)
    return fetch(url, { ...init, headers })
  }
  const client = newClient('unified-sse')
  await client.connect(new SSEClientTransport(new URL(`${base}/sse`), { fetch: authorized }))
  t.teardown(() => client.close())
  const names = (await client.listTools()).tools.map((tool) => tool.name)
  t.ok(names.includes('everything__echo') && names.includes('memory__read_graph'), 'every server, namespaced')
  const sampled = await client.callTool({
    name: 'everything__trigger-sampling-request',
    arguments: { prompt: 'say hi', maxTokens: 10 },
  })
  t.match(textOf(sampled), SAMPLED_TEXT, 'a server-to-client request reaches an SSE agent too')
  const foreign = await fetch(`${base}/messages?sessionId=nope`, {
    method: 'POST',
    headers: { authorization: `Bearer ${everyone}`, 'content-type': 'application/json' },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  })
  t.equal(foreign.status, 404, 'an unknown session is not found')
})

t.test(
  'the 2026-07-28 era on /mcp: lists merged, calls routed, input requests resumed on their server',
  async (t) => {
    const client = await connectModern(`${base}/mcp`, 'pinned', { authorization: `Bearer ${everyone}` })
    t.teardown(() => client.close())
    const names = (await client.listTools()).tools.map((tool) => tool.name)
    for (const name of ['everything__echo', 'memory__read_graph', 'sequential-thinking__sequentialthinking'])
      t.ok(names.includes(name), `${name} is listed`)
    t.match(
      textOf(await client.callTool({ name: 'everything__echo', arguments: { message: 'modern' } })),
      /modern/,
    )
    const sampled = await client.callTool({
      name: 'everything__trigger-sampling-request',
      arguments: { prompt: 'say hi', maxTokens: 10 },
    })
    t.match(
      textOf(sampled),
      MODERN_SAMPLED_TEXT,
      'an input request answered and the call resumed on its server',
    )
    const { prompts } = await client.listPrompts()
    t.ok(prompts.some((p) => p.name === 'everything__simple-prompt'))
    const read = await client.readResource({
      uri: 'nexus:everything:demo://resource/static/document/architecture.md',
    })
    t.equal(read.contents[0]!.uri, 'nexus:everything:demo://resource/static/document/architecture.md')
    const unknown = await client.callTool({ name: 'nobody__echo', arguments: {} }).catch((err: Error) => err)
    t.match(unknown, { message: /tool nobody__echo is not offered here/ })
  },
)

t.test('tool scopes hold in the 2026-07-28 era, per server and unified', async (t) => {
  for (const url of [`${base}/mcp/everything`, `${base}/mcp`]) {
    const client = await connectModern(url, 'pinned', { authorization: `Bearer ${echoOnly}` })
    t.teardown(() => client.close())
    const echo = url.endsWith('/mcp') ? 'everything__echo' : 'echo'
    const sum = url.endsWith('/mcp') ? 'everything__get-sum' : 'get-sum'
    t.same(
      (await client.listTools()).tools.map((tool) => tool.name),
      [echo],
      `${url}: only echo listed`,
    )
    const refused = await client.callTool({ name: sum, arguments: { a: 1, b: 2 } }).catch((err: Error) => err)
    t.match(
      refused,
      { message: /tool get-sum of server everything is not permitted to key:echo-only/ },
      `${url}: get-sum refused`,
    )
  }
})

t.test(
  'bad virtual servers and separators are refused when the gateway starts, naming the problem',
  async (t) => {
    const virtual = (definition: Record<string, unknown>) => () =>
      parseGatewayConfig({ virtualServers: { team: { servers: ['everything', 'memory'], ...definition } } })
    t.throws(
      virtual({ rename: { 'everything/echo': 'same', 'memory/read_graph': 'same' } }),
      /two tools are renamed to the same name/,
    )
    t.throws(
      virtual({ tools: ['filesystem/read_text_file'] }),
      /filesystem\/read_text_file names a server the virtual server does not list/,
    )
    t.throws(virtual({ tools: ['echo'] }), /<server id>\/<tool> or <server id>\/\*/)
    t.throws(() => parseGatewayConfig({ unified: { separator: '::' } }), /tool names allow no others/)
    t.doesNotThrow(virtual({ tools: ['everything/*'] }))
  },
)
