import { join } from 'node:path'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import t from 'tap'
import { GatewayErrorCode } from '../gateway/jsonrpc.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'

t.test('a node that dies mid-call: the caller gets a JSON-RPC error, not a hang', async (t) => {
  // No other node will come: the session looks for one for 300 ms (failover.takeoverTimeoutMs), then ends.
  const network = await startNetwork({
    nodes: 1,
    servers: [fixtureServerConfig()],
    gateway: { failover: { takeoverTimeoutMs: 300 } },
  })
  t.teardown(network.stop)
  const { client } = await connectStreamable(network.gateway.serverUrl('conformance'))
  t.teardown(() => client.close())
  let crashed = false
  const call = client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
    onprogress: () => {
      if (crashed) return
      crashed = true
      void network.nodes[0]!.crash()
    },
  })
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(crashed, 'the node crashed while the call ran')
  t.type(err, McpError)
  t.equal((err as McpError).code, GatewayErrorCode.NodeFailed)
  t.match((err as McpError).message, /may or may not have been executed/)
  const waited = await client.listTools().then(
    () => 'answered',
    (e: Error) => e.message,
  )
  t.match(waited, /failed|Session not found|404/, 'a request while no host came is answered with an error')
  const after = await client.listTools().then(
    () => 'answered',
    (e: Error) => e.message,
  )
  t.match(after, /Session not found|404/, 'the session is over: the client is told to start a new one')
})

t.test('a server process that exits mid-call: the caller learns why', async (t) => {
  const network = await startNetwork({
    nodes: 1,
    servers: [
      {
        id: 'crashing',
        transport: 'stdio',
        command: process.execPath,
        args: [join(import.meta.dirname, 'fixtures', 'crashing-server.ts')],
      },
    ],
  })
  t.teardown(network.stop)
  const { client } = await connectStreamable(network.gateway.serverUrl('crashing'))
  t.teardown(() => client.close())
  const err = await client.callTool({ name: 'crash', arguments: {} }).then(
    () => undefined,
    (e: unknown) => e as McpError,
  )
  t.equal(err?.code, GatewayErrorCode.NodeFailed)
  t.match(err?.message, /server process exited with code 3/)
  t.equal(network.nodes[0]!.sessions.size, 0, 'the node released the session')
})

t.test('no node hosts the server any more: initialize fails with a clear error', async (t) => {
  const network = await startNetwork({ nodes: 1, servers: [fixtureServerConfig()] })
  t.teardown(network.stop)
  // The gateway still believes the node is there (its announcement has not expired), but it is gone.
  await network.nodes[0]!.crash()
  const err = await connectStreamable(network.gateway.serverUrl('conformance')).then(
    () => undefined,
    (e: Error) => e,
  )
  t.match(err?.message, /no node could open a session for server conformance/)
})

t.test('an idle session is closed and its server instance freed', async (t) => {
  const network = await startNetwork({
    nodes: 1,
    servers: [fixtureServerConfig()],
    gateway: { sessions: { idleTimeoutMs: 300 } },
  })
  t.teardown(network.stop)
  const { client, transport } = await connectStreamable(network.gateway.serverUrl('conformance'))
  t.teardown(() => client.close())
  const sessionId = transport.sessionId!
  const node = network.nodes[0]!
  t.ok(node.sessions.has(sessionId))
  await new Promise((resolve) => node.on('session-closed', (s) => s.id === sessionId && resolve(s)))
  t.notOk(network.gateway.sessions.has(sessionId), 'the gateway dropped it')
})
