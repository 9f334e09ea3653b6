import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import t, { type Test } from 'tap'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, SAMPLED_TEXT, textOf } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { waitFor } from './support/wait.ts'

/**
 * A stdio server declared safe to share: the real conformance fixture, three sessions per process, reached by
 * SDK clients through a gateway. The multiplexer's rules one by one are in `shared-process.test.ts`.
 */
const SERVER = { ...fixtureServerConfig('shared'), warmPool: 1, shared: { sessionsPerProcess: 3 } }
const network = await startNetwork({ nodes: 1, servers: [SERVER] })
t.teardown(network.stop)
const node = network.nodes[0]!
const status = () => node.runtime.status().find((s) => s.id === 'shared')!

/** Opens a session; closing it ends it on the node at once (DELETE), not at its idle timeout. */
async function open(t: Test): Promise<Client> {
  const { client, transport } = await connectStreamable(network.gateway.serverUrl('shared'))
  t.teardown(async () => {
    await transport.terminateSession().catch(() => {})
    await client.close()
  })
  return client
}

t.test(
  'seven sessions run on three processes, and every call gets its own answer and progress',
  async (t) => {
    const clients: Client[] = []
    for (let i = 0; i < 7; i++) clients.push(await open(t))
    t.equal(status().activeSessions, 7)
    t.equal(status().pids.length, 3, 'ceil(7 / 3) processes: two full, one with room (no spare needed)')
    // Every client's requests carry the same ids, and every call its progress token: the node keeps them apart.
    const calls = clients.map(async (client) => {
      const progress: number[] = []
      const result = await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
        onprogress: (p) => progress.push(p.progress),
      })
      return { text: textOf(result), progress }
    })
    for (const { text, progress } of await Promise.all(calls)) {
      t.equal(text, 'Tool with progress executed successfully')
      t.same(progress, [0, 50, 100], 'its own progress, once each')
    }
    const sampled = await clients[3]!.callTool({ name: 'test_sampling', arguments: { prompt: 'hi' } })
    t.equal(
      textOf(sampled),
      `LLM response: ${SAMPLED_TEXT}`,
      'a request from the server reaches the one session asking',
    )
  },
)

t.test(
  'processes beyond the warm one stop as sessions end; a crash ends only the sessions on it',
  async (t) => {
    await waitFor(
      () => status().activeSessions === 0,
      node,
      'session-closed',
      10_000,
      'earlier sessions closed',
    )
    const sessions: { client: Client; end: () => Promise<void> }[] = []
    for (let i = 0; i < 4; i++) {
      const { client, transport } = await connectStreamable(network.gateway.serverUrl('shared'))
      const end = async () => {
        await transport.terminateSession().catch(() => {})
        await client.close()
      }
      t.teardown(end)
      sessions.push({ client, end })
    }
    t.equal(status().pids.length, 2, 'four sessions: one full process and one with a session')
    await Promise.all(sessions.splice(3).map((s) => s.end()))
    await waitFor(
      () => status().activeSessions === 3,
      node,
      'session-closed',
      10_000,
      'the fourth session closed',
    )
    t.equal(status().idleInstances, 1, 'the emptied process is the warm one')
    t.equal(status().pids.length, 2)
    const [victim] = status().pids
    process.kill(victim!, 'SIGKILL')
    await waitFor(
      () => status().activeSessions === 0,
      node,
      'session-closed',
      10_000,
      'the crashed sessions ended',
    )
    const results = await Promise.allSettled(
      sessions.map((s) => s.client.callTool({ name: 'test_simple_text', arguments: {} })),
    )
    t.ok(
      results.every((r) => r.status === 'rejected'),
      'its sessions end with the process: their state is gone',
    )
    const client = await open(t)
    t.match(
      textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })),
      /simple text/i,
      'a new session is served',
    )
  },
)
