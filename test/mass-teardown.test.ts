import t from 'tap'
import type { ProcessRuntime } from '../node/runtime/process-runtime.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { initializeRaw, sessionHeaders } from './support/raw-sse.ts'
import { waitFor } from './support/wait.ts'

// An agent that deletes hundreds of sessions at once made the node stop hundreds of server processes at once;
// the machine saturated, the gateway's connection to the node was reset and unrelated sessions failed over.
// Teardowns are now queued, a few at a time; here 40 sessions go at once and 3 processes stop at a time.

const SESSIONS = 40
const network = await startNetwork({
  nodes: 1,
  servers: [fixtureServerConfig()],
  node: { maxConcurrentTeardowns: 3 },
})
t.teardown(network.stop)
const { gateway } = network
const node = network.nodes[0]!
const endpoint = gateway.serverUrl('conformance')

t.test(
  'deleting 40 sessions at once stops their processes 3 at a time; the canary never notices',
  async (t) => {
    const canary = await connectStreamable(endpoint, { name: 'canary' })
    t.teardown(() => canary.client.close())
    let failovers = 0
    gateway.on('failover', () => failovers++)
    const ids = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) => initializeRaw(endpoint, `mass-${i}`)),
    )
    await waitFor(
      () => node.sessions.size === SESSIONS + 1,
      node,
      'session-opened',
      20_000,
      'every session open',
    )
    const runtime = node.runtime as ProcessRuntime
    const deletions = Promise.all(
      ids.map((id) =>
        fetch(endpoint, { method: 'DELETE', headers: sessionHeaders(id) }).then((r) => r.status),
      ),
    )
    // The canary calls while the processes go.
    const calls = Promise.all(
      Array.from({ length: 5 }, () =>
        canary.client.callTool({ name: 'test_simple_text', arguments: {} }).then(textOf),
      ),
    )
    t.same(await deletions, Array(SESSIONS).fill(200), 'every deletion answered')
    for (const text of await calls) t.match(text, /simple text/i)
    await waitFor(
      () => node.sessions.size === 1,
      node,
      'session-closed',
      30_000,
      'the deleted sessions ended',
    )
    t.equal(runtime.teardowns.pending, 0, 'every teardown done once its session ended')
    t.ok(
      runtime.teardowns.peakRunning <= 3,
      `at most 3 teardowns ran at once (${runtime.teardowns.peakRunning})`,
    )
    t.ok(runtime.teardowns.peakRunning >= 2, 'they did overlap: the queue is what bounded them')
    t.equal(failovers, 0, 'no session failed over')
    const after = await canary.client.callTool({ name: 'test_simple_text', arguments: {} })
    t.match(textOf(after), /simple text/i, 'the canary session still answers')
  },
)

t.test('requests in flight are bounded per session: past the limit -32014, nothing sent', async (t) => {
  const limited = await startNetwork({
    nodes: 1,
    servers: [fixtureServerConfig()],
    gateway: { limits: { inFlightPerSession: 2, requestsPerSecond: 0, sessionsPerPrincipal: 100 } },
  })
  t.teardown(limited.stop)
  const url = limited.gateway.serverUrl('conformance')
  const { client } = await connectStreamable(url)
  t.teardown(() => client.close())
  // Three slow calls at once: the third finds two waiting.
  const outcomes = await Promise.allSettled(
    Array.from({ length: 3 }, () =>
      client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, { timeout: 20_000 }),
    ),
  )
  const refused = outcomes.filter((o) => o.status === 'rejected')
  t.equal(refused.length, 1, 'one of three refused')
  t.match(
    String((refused[0] as PromiseRejectedResult).reason),
    /-32014|Overloaded: 2 requests of this session/,
  )
  t.equal(limited.gateway.inFlightBudget.total, 0, 'all given back once answered')
})
