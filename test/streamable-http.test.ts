import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js'
import t from 'tap'
import { demoServers } from '../node/demo-servers.ts'
import { startNetwork } from '../testing/network.ts'
import {
  connectStreamable,
  firstResourceUpdate,
  recordProgress,
  SAMPLED_TEXT,
  textOf,
} from './support/clients.ts'

const root = mkdtempSync(join(tmpdir(), 'nexus-fs-test-'))
const network = await startNetwork({
  nodes: 2,
  servers: demoServers({ filesystemRoot: root }),
  gateway: { sessions: { sseRetryMs: 50 } },
})
t.teardown(network.stop)
const url = (id: string) => network.gateway.serverUrl(id)

t.test('everything: list and call tools', async (t) => {
  const { client } = await connectStreamable(url('everything'))
  t.teardown(() => client.close())
  const { tools } = await client.listTools()
  t.ok(
    tools.some((tool) => tool.name === 'echo'),
    'lists echo',
  )
  t.equal(
    textOf(await client.callTool({ name: 'echo', arguments: { message: 'through the network' } })),
    'Echo: through the network',
  )
  t.match(textOf(await client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } })), /42/)
})

t.test('memory: entities written in one call are read in the next', async (t) => {
  const { client } = await connectStreamable(url('memory'))
  t.teardown(() => client.close())
  await client.callTool({
    name: 'create_entities',
    arguments: {
      entities: [{ name: 'Nexus', entityType: 'project', observations: ['routes MCP over libp2p'] }],
    },
  })
  t.match(textOf(await client.callTool({ name: 'read_graph', arguments: {} })), /routes MCP over libp2p/)
})

t.test('filesystem: writes inside its root, refuses outside it', async (t) => {
  const { client } = await connectStreamable(url('filesystem'))
  t.teardown(() => client.close())
  const file = join(root, 'hello.txt')
  await client.callTool({
    name: 'write_file',
    arguments: { path: file, content: 'written through the gateway' },
  })
  t.equal(readFileSync(file, 'utf8'), 'written through the gateway', 'the file is on disk')
  t.match(
    textOf(await client.callTool({ name: 'read_text_file', arguments: { path: file } })),
    'written through the gateway',
  )
  const outside = await client.callTool({ name: 'read_text_file', arguments: { path: '/etc/hostname' } })
  t.equal(outside.isError, true, 'a path outside the root is refused by the server')
})

t.test('sequential-thinking: a thought is recorded', async (t) => {
  const { client } = await connectStreamable(url('sequential-thinking'))
  t.teardown(() => client.close())
  const result = await client.callTool({
    name: 'sequentialthinking',
    arguments: {
      thought: 'First, route the session.',
      thoughtNumber: 1,
      totalThoughts: 2,
      nextThoughtNeeded: true,
    },
  })
  t.match(textOf(result), /"thoughtNumber": ?1/)
})

t.test('sampling round trip: the server asks the client to sample mid-call', async (t) => {
  const { client } = await connectStreamable(url('everything'))
  t.teardown(() => client.close())
  const result = await client.callTool({
    name: 'trigger-sampling-request',
    arguments: { prompt: 'say hi', maxTokens: 10 },
  })
  t.match(textOf(result), SAMPLED_TEXT)
})

t.test('elicitation round trip: the server asks the user mid-call', async (t) => {
  const { client } = await connectStreamable(url('everything'))
  t.teardown(() => client.close())
  const result = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} })
  t.match(textOf(result), 'Ada Lovelace')
})

t.test('progress notifications reach the caller', async (t) => {
  const { client } = await connectStreamable(url('everything'))
  t.teardown(() => client.close())
  const seen = recordProgress(client)
  const result = await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 0.5, steps: 5 } },
    undefined,
    { onprogress: () => {} },
  )
  t.same(seen, [1, 2, 3, 4, 5])
  t.match(textOf(result), /completed/)
})

t.test('resource subscription: updates arrive for the subscribed resource', async (t) => {
  const { client } = await connectStreamable(url('everything'))
  t.teardown(() => client.close())
  const uri = 'demo://resource/static/document/architecture.md'
  const updated = await firstResourceUpdate(client, uri, 'toggle-subscriber-updates')
  t.equal(updated, uri)
})

t.test('cancellation: an aborted call ends at once and the session goes on', async (t) => {
  const { client } = await connectStreamable(url('everything'))
  t.teardown(() => client.close())
  const controller = new AbortController()
  const call = client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
    undefined,
    { signal: controller.signal, onprogress: () => controller.abort('enough') },
  )
  await t.rejects(call, /enough|abort/i)
  t.equal(
    textOf(await client.callTool({ name: 'echo', arguments: { message: 'still here' } })),
    'Echo: still here',
  )
})

t.test('resumption: a dropped response stream resumes with Last-Event-ID and loses nothing', async (t) => {
  let dropped = false
  // Breaks the first tool-call response stream after two progress events, as a flaky network would.
  const flakyFetch: FetchLike = async (input, init) => {
    const response = await fetch(input, init)
    const isToolCall = typeof init?.body === 'string' && init.body.includes('"tools/call"')
    if (dropped || !isToolCall || response.body === null) return response
    dropped = true
    let events = 0
    const reader = response.body.getReader()
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { value, done } = await reader.read()
        if (done) return controller.close()
        controller.enqueue(value)
        events += new TextDecoder().decode(value).split('notifications/progress').length - 1
        if (events >= 2) {
          await reader.cancel()
          controller.error(new TypeError('network connection lost'))
        }
      },
    })
    return new Response(body, { status: response.status, headers: response.headers })
  }
  const { client } = await connectStreamable(url('everything'), { fetch: flakyFetch })
  t.teardown(() => client.close())
  const seen = recordProgress(client)
  const result = await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 5 } },
    undefined,
    { onprogress: () => {}, timeout: 20_000 },
  )
  t.ok(dropped, 'the stream was dropped mid-call')
  t.same(seen, [1, 2, 3, 4, 5], 'every progress event arrived once, in order')
  t.match(textOf(result), /completed/)
})

t.test('DELETE ends the session and frees its server process on the node', async (t) => {
  const { client, transport } = await connectStreamable(url('memory'))
  await client.listTools()
  const sessionId = transport.sessionId!
  const session = network.gateway.sessions.get(sessionId)
  t.ok(session, 'the gateway holds the session')
  const node = network.nodes.find((n) => n.peerId === session!.nodePeerId)!
  t.ok(node.sessions.has(sessionId), 'the node holds it too')
  const closedOnNode = new Promise((resolve) =>
    node.on('session-closed', (s) => s.id === sessionId && resolve(s)),
  )
  await transport.terminateSession()
  await closedOnNode
  t.notOk(node.sessions.has(sessionId), 'the node released it')
  t.notOk(network.gateway.sessions.has(sessionId), 'the gateway released it')
  await client.close()
})
