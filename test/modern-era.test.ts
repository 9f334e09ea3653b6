import t from 'tap'
import { demoServers } from '../node/demo-servers.ts'
import type { NexusNode } from '../node/nexus-node.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { failoverServerConfig, modernFixtureConfig } from './support/fixture-server.ts'
import { connectModern, MODERN_SAMPLED_TEXT } from './support/modern-clients.ts'
import { withTimeout } from './support/wait.ts'

// Revision 2026-07-28 through the gateway: real SDK v2 clients (pinned, and in `auto` mode) against the four
// reference servers, which speak only the legacy era — every request reaches them through the nodes' era
// bridge. Two nodes host every server, so requests are spread and follow-ups must find their node.

const network = await startNetwork({ nodes: 2, servers: demoServers({ warmPool: 0 }) })
t.teardown(network.stop)
const { gateway } = network
const url = (id: string) => gateway.serverUrl(id)

const MODERN_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': '2026-07-28',
}
const meta = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'nexus-raw-test', version: '1.0.0' },
}

/** One raw modern POST: for the checks the SDK client would never fail. */
async function post(serverId: string, body: unknown, headers: Record<string, string>) {
  const response = await fetch(url(serverId), { method: 'POST', headers, body: JSON.stringify(body) })
  return {
    status: response.status,
    // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC answer the test probes field by field
    body: (await response.json().catch(() => undefined)) as Record<string, any>,
  }
}

t.test('pinned and auto v2 clients use every reference server through the bridge', async (t) => {
  for (const mode of ['pinned', 'auto'] as const) {
    const everything = await connectModern(url('everything'), mode)
    t.teardown(() => everything.close())
    t.equal(everything.getProtocolEra(), 'modern', `${mode}: the client lands on the modern era`)
    t.match(
      everything.getServerVersion(),
      { name: 'mcp-servers/everything' },
      'server/discover names the server',
    )
    t.equal(
      textOf(await everything.callTool({ name: 'echo', arguments: { message: mode } })),
      `Echo: ${mode}`,
    )

    const memory = await connectModern(url('memory'), mode)
    t.teardown(() => memory.close())
    await memory.callTool({
      name: 'create_entities',
      arguments: { entities: [{ name: `entity-${mode}`, entityType: 'test', observations: ['modern'] }] },
    })
    t.match(
      textOf(await memory.callTool({ name: 'read_graph', arguments: {} })),
      `entity-${mode}`,
      'memory: write then read',
    )

    const filesystem = await connectModern(url('filesystem'), mode)
    t.teardown(() => filesystem.close())
    t.match(
      textOf(await filesystem.callTool({ name: 'list_allowed_directories', arguments: {} })),
      /nexus-demo-/,
    )

    const thinking = await connectModern(url('sequential-thinking'), mode)
    t.teardown(() => thinking.close())
    const thought = await thinking.callTool({
      name: 'sequentialthinking',
      arguments: { thought: 'modern', thoughtNumber: 1, totalThoughts: 1, nextThoughtNeeded: false },
    })
    t.match(textOf(thought), /thoughtNumber/, 'sequential-thinking records a thought')
  }
})

t.test('server/discover, list results and every answer are in the 2026-07-28 shape', async (t) => {
  const discover = await post(
    'everything',
    { jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: meta } },
    { ...MODERN_HEADERS, 'mcp-method': 'server/discover' },
  )
  t.equal(discover.status, 200)
  t.match(discover.body.result, {
    resultType: 'complete',
    supportedVersions: ['2026-07-28'],
    capabilities: { tools: {} },
    ttlMs: Number,
    cacheScope: 'private',
    _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'mcp-servers/everything' } },
  })
  const list = await post(
    'everything',
    { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: meta } },
    { ...MODERN_HEADERS, 'mcp-method': 'tools/list' },
  )
  t.match(list.body.result, { resultType: 'complete', ttlMs: 0, cacheScope: 'private', tools: Array })
})

t.test(
  'sampling and elicitation during a call become input_required rounds, on whichever node',
  async (t) => {
    const client = await connectModern(url('everything'))
    t.teardown(() => client.close())
    const nodesUsed = new Set<string>()
    for (const node of network.nodes) node.on('modern-request', () => nodesUsed.add(node.peerId))
    for (let round = 0; round < 4; round++) {
      const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi' } })
      t.match(textOf(sampled), MODERN_SAMPLED_TEXT, `round ${round}: the sampling answer reached the server`)
      const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} })
      t.match(textOf(elicited), /Ada Lovelace/, `round ${round}: the elicitation answer reached the server`)
    }
    t.equal(nodesUsed.size, 2, 'requests were spread over both nodes, and every follow-up found its own')
  },
)

t.test('a requestState this network did not issue is refused, naming why', async (t) => {
  const answer = await post(
    'everything',
    {
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: { name: 'echo', arguments: { message: 'x' }, requestState: 'forged', _meta: meta },
    },
    { ...MODERN_HEADERS, 'mcp-method': 'tools/call', 'mcp-name': 'echo' },
  )
  t.match(answer.body.error, { code: -32602, message: /requestState is unknown/ })
})

t.test('progress of a modern call streams as SSE before its answer', async (t) => {
  const client = await connectModern(url('everything'))
  t.teardown(() => client.close())
  const progress: number[] = []
  const result = await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 0.6, steps: 3 } },
    { onprogress: (p: { progress: number }) => progress.push(p.progress) },
  )
  t.match(textOf(result), /completed/i)
  t.ok(progress.length >= 2, `progress events arrived (${progress.join(', ')})`)
})

t.test(
  'headers that do not match the body, and unknown versions, are refused as the revision says',
  async (t) => {
    const call = {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'echo', arguments: {}, _meta: meta },
    }
    const cases: [string, Record<string, string>, unknown, number, RegExp][] = [
      [
        'no Mcp-Method',
        { ...MODERN_HEADERS, 'mcp-name': 'echo' },
        call,
        -32020,
        /Mcp-Method header is missing/,
      ],
      [
        'another method in Mcp-Method',
        { ...MODERN_HEADERS, 'mcp-method': 'tools/list', 'mcp-name': 'echo' },
        call,
        -32020,
        /Mcp-Method header value 'tools\/list' does not match body value 'tools\/call'/,
      ],
      [
        'another name in Mcp-Name',
        { ...MODERN_HEADERS, 'mcp-method': 'tools/call', 'mcp-name': 'get-env' },
        call,
        -32020,
        /Mcp-Name header value 'get-env' does not match body value 'echo'/,
      ],
      [
        'a Base64 Mcp-Name that decodes to another name',
        {
          ...MODERN_HEADERS,
          'mcp-method': 'tools/call',
          'mcp-name': `=?base64?${Buffer.from('ech0').toString('base64')}?=`,
        },
        call,
        -32020,
        /'ech0' does not match body value 'echo'/,
      ],
      [
        'a body without the protocol version',
        { ...MODERN_HEADERS, 'mcp-method': 'tools/list' },
        { jsonrpc: '2.0', id: 8, method: 'tools/list', params: {} },
        -32602,
        /_meta must carry io\.modelcontextprotocol\/protocolVersion/,
      ],
      [
        'a version the network does not speak',
        { ...MODERN_HEADERS, 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' },
        { jsonrpc: '2.0', id: 9, method: 'tools/list', params: { _meta: meta } },
        -32022,
        /Unsupported protocol version 2099-01-01/,
      ],
    ]
    for (const [what, headers, body, code, message] of cases) {
      const answer = await post('everything', body, headers)
      t.equal(answer.status, 400, `${what}: 400`)
      t.match(answer.body?.error, { code, message }, `${what}: ${code}`)
    }
    const encoded = await post('everything', call, {
      ...MODERN_HEADERS,
      'mcp-method': 'tools/call',
      'mcp-name': `=?base64?${Buffer.from('echo').toString('base64')}?=`,
    })
    t.equal(encoded.status, 200, 'a Base64 Mcp-Name that decodes to the body value is accepted')
    const unsupported = await post(
      'everything',
      { jsonrpc: '2.0', id: 9, method: 'tools/list', params: { _meta: meta } },
      { ...MODERN_HEADERS, 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' },
    )
    t.match(
      unsupported.body.error.data,
      { supported: ['2026-07-28'], requested: '2099-01-01' },
      'the supported versions are listed',
    )
    const get = await fetch(url('everything'), { headers: { 'mcp-protocol-version': '2026-07-28' } })
    t.equal(get.status, 405, 'GET has no meaning in 2026-07-28: 405')
  },
)

t.test('legacy clients on the same URLs are served as before, beside modern ones', async (t) => {
  const legacy = await connectStreamable(url('everything'))
  t.teardown(() => legacy.client.close())
  const modern = await connectModern(url('everything'))
  t.teardown(() => modern.close())
  t.equal(textOf(await legacy.client.callTool({ name: 'echo', arguments: { message: 'old' } })), 'Echo: old')
  t.equal(textOf(await modern.callTool({ name: 'echo', arguments: { message: 'new' } })), 'Echo: new')
})

t.test(
  'a node killed under modern load: safe requests go on elsewhere, an unsafe call in flight gets -32010',
  async (t) => {
    const extra = await startNetwork({ nodes: 2, servers: [failoverServerConfig()] })
    t.teardown(extra.stop)
    const client = await connectModern(extra.gateway.serverUrl('failover'))
    t.teardown(() => client.close())
    await client.listTools()
    // An unsafe call (its tool is neither read-only nor idempotent) that runs long, and the node it landed on.
    let victim: NexusNode | undefined
    for (const node of extra.nodes) node.once('modern-request', () => (victim ??= node))
    const settle = (call: Promise<unknown>) =>
      call.then(
        (value) => ({ ok: true as const, text: textOf(value) }),
        (err: { code?: number; message?: string }) => ({
          ok: false as const,
          code: err.code,
          message: err.message,
        }),
      )
    const running = Promise.withResolvers<void>()
    const unsafe = settle(
      client.callTool(
        { name: 'slow_write', arguments: { ms: 30_000 } },
        { onprogress: () => running.resolve() },
      ),
    )
    await withTimeout(running.promise, 10_000, 'the unsafe call to start')
    const safe = settle(client.callTool({ name: 'slow_read', arguments: { ms: 1_500 } }))
    let lists = 0
    const listFailures: unknown[] = []
    let listing = true
    const load = (async () => {
      while (listing) {
        await client.listTools().then(
          () => lists++,
          (err) => listFailures.push(err),
        )
      }
    })()
    await victim!.crash()
    const outcome = await withTimeout(unsafe, 20_000, 'the unsafe call to fail')
    t.match(
      outcome,
      { ok: false, code: -32010, message: /may or may not have run/ },
      'the unsafe call fails with the defined error',
    )
    t.match(
      await withTimeout(safe, 20_000, 'the safe call'),
      { ok: true, text: /slow_read done/ },
      'the safe call is answered',
    )
    listing = false
    await load
    t.same(listFailures, [], `no tools/list failed (${lists} during the failure)`)
  },
)

t.test(
  'subscriptions/listen: the filter is acknowledged, and the stream outlives the node serving it',
  async (t) => {
    const extra = await startNetwork({ nodes: 2, servers: [failoverServerConfig()] })
    t.teardown(extra.stop)
    const client = await connectModern(extra.gateway.serverUrl('failover'))
    t.teardown(() => client.close())
    const changed = Promise.withResolvers<void>()
    client.setNotificationHandler('notifications/tools/list_changed', async () => changed.resolve())
    let listenerNode: NexusNode | undefined
    for (const node of extra.nodes) node.once('modern-request', () => (listenerNode ??= node))
    const subscription = await client.listen({ toolsListChanged: true, promptsListChanged: true })
    t.same(
      subscription.honoredFilter,
      { toolsListChanged: true },
      'only what the server can tell is honoured',
    )
    await listenerNode!.crash()
    await withTimeout(changed.promise, 20_000, 'the re-subscribed stream to report a possible change')
    t.pass('re-subscribed on the other node; the client hears that its list may have changed meanwhile')
    t.equal(
      textOf(await client.callTool({ name: 'whoami', arguments: {} })).startsWith('pid'),
      true,
      'and goes on',
    )
    await subscription.close()
  },
)

t.test(
  'a server that speaks 2026-07-28 itself gets modern requests as they are: its own input keys and state',
  async (t) => {
    const extra = await startNetwork({ nodes: 2, servers: [modernFixtureConfig()] })
    t.teardown(extra.stop)
    const call = (id: number, extraParams: object = {}) =>
      fetch(extra.gateway.serverUrl('modern'), {
        method: 'POST',
        headers: {
          ...MODERN_HEADERS,
          'mcp-method': 'tools/call',
          'mcp-name': 'test_input_required_result_elicitation',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: {
            name: 'test_input_required_result_elicitation',
            arguments: {},
            _meta: { ...meta, 'io.modelcontextprotocol/clientCapabilities': { elicitation: {} } },
            ...extraParams,
          },
        }),
        // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC answer the test probes field by field
      }).then((r) => r.json() as Promise<Record<string, any>>)
    const first = await call(1)
    t.match(
      first.result,
      { resultType: 'input_required', inputRequests: { user_name: { method: 'elicitation/create' } } },
      "the key is the server's own",
    )
    const second = await call(2, {
      inputResponses: { user_name: { action: 'accept', content: { name: 'Ada' } } },
      ...(first.result.requestState === undefined ? {} : { requestState: first.result.requestState }),
    })
    t.match(second.result, { content: [{ text: 'Hello, Ada' }] }, 'the follow-up completes on any host')
    t.notMatch(
      String(first.result.requestState ?? ''),
      /^nexus1\./,
      "the state is the server's, not a bridge's",
    )
    const client = await connectModern(extra.gateway.serverUrl('modern'))
    t.teardown(() => client.close())
    t.equal(
      textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })),
      'This is a simple text response for testing.',
      'an SDK v2 client is served natively too',
    )
  },
)

t.test(
  'a legacy server asking for a capability the client did not declare: -32021 with what is required',
  async (t) => {
    const extra = await startNetwork({ nodes: 1, servers: [failoverServerConfig()] })
    t.teardown(extra.stop)
    const response = await fetch(extra.gateway.serverUrl('failover'), {
      method: 'POST',
      headers: { ...MODERN_HEADERS, 'mcp-method': 'tools/call', 'mcp-name': 'ask_model' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 11,
        method: 'tools/call',
        params: { name: 'ask_model', arguments: {}, _meta: meta },
      }),
    })
    t.equal(response.status, 400, 'HTTP 400, as the revision gives this error')
    t.match(await response.json(), {
      id: 11,
      error: { code: -32021, data: { requiredCapabilities: { sampling: {} } } },
    })
    const declared = await connectModern(extra.gateway.serverUrl('failover'))
    t.teardown(() => declared.close())
    t.match(
      textOf(await declared.callTool({ name: 'ask_model', arguments: {} })),
      MODERN_SAMPLED_TEXT,
      'a client that declared sampling gets its answer to the server through an input_required round',
    )
  },
)
