import { McpError } from '@modelcontextprotocol/sdk/types.js'
import t from 'tap'
import { StartAdmission } from '../node/runtime/start-admission.ts'
import { isNexusError } from '../protocol/errors.ts'
import { NexusRpcCode } from '../protocol/rpc-codes.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'

// Overload degrades, never collapses: a node starts a bounded number of server processes at once, queues the
// next sessions for a while, and refuses the rest with NODE_BUSY and a time to retry after — which the agent
// gets as -32016 with `data.retryAfterMs` — instead of starting every process of a burst together.

t.test('start slots: granted in order, queued with a deadline, refused when the queue is full', async (t) => {
  const admission = new StartAdmission({ maxStarting: 2, maxQueued: 2, queueTimeoutMs: 300 })
  const first = await admission.acquire()
  await admission.acquire()
  const third = admission.acquire()
  const fourth = admission.acquire()
  t.match(admission.counts, { starting: 2, queued: 2 })
  const fifth = await admission.acquire().catch((err: Error) => err)
  t.ok(isNexusError(fifth, 'NODE_BUSY'), 'a full queue is refused at once')
  t.match((fifth as Error).message, /2 sessions already wait for one of 2 start slots\); retry after \d+ ms/)
  t.ok(((fifth as { retryAfterMs?: number }).retryAfterMs ?? 0) > 0, 'with a time to retry after')
  first()
  first()
  const releaseThird = await third
  t.match(admission.counts, { starting: 2, queued: 1 }, 'a release (counted once) lets the next in')
  const timedOut = await fourth.catch((err: Error) => err)
  t.ok(isNexusError(timedOut, 'NODE_BUSY'), 'a wait past the deadline is refused')
  t.match((timedOut as Error).message, /no start slot came free within 300 ms/)
  releaseThird()
  t.match(admission.counts, { admitted: 3, refusedFull: 1, refusedTimeout: 1, queued: 0, starting: 1 })
})

t.test(
  'a burst of new sessions on a stdio server: some admitted, the rest told to retry, none failed otherwise',
  async (t) => {
    const network = await startNetwork({
      nodes: [
        {
          servers: [{ ...fixtureServerConfig(), warmPool: 0 }],
          admission: { maxStarting: 1, maxQueued: 1, queueTimeoutMs: 4_000 },
        },
      ],
    })
    t.teardown(network.stop)
    const url = network.gateway.serverUrl('conformance')
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, () =>
        connectStreamable(url).then(
          async ({ client }) => {
            const answer = textOf(await client.callTool({ name: 'test_simple_text', arguments: {} }))
            await client.close()
            return { ok: true as const, answer }
          },
          (err: unknown) => ({ ok: false as const, err }),
        ),
      ),
    )
    const admitted = outcomes.filter((o) => o.ok)
    const refused = outcomes.filter((o) => !o.ok)
    t.ok(admitted.length >= 2, `${admitted.length} of 8 admitted (one starting, one queued, then the next)`)
    t.ok(refused.length >= 1, `${refused.length} of 8 told to retry`)
    for (const o of admitted) t.match(o.answer, /This is a simple text response/)
    for (const o of refused) {
      t.ok(o.err instanceof McpError, 'an MCP error, not a broken transport')
      t.match(o.err, { code: NexusRpcCode.Busy, message: /busy starting servers; retry after \d+ ms/ })
      t.ok(((o.err as McpError).data as { retryAfterMs?: number }).retryAfterMs! > 0, 'data.retryAfterMs')
    }
    t.match(
      await network.nodes[0]!.metrics.registry.metrics(),
      /nexus_node_sessions_refused_total\{code="NODE_BUSY"\} [1-9]/,
      'refusals are counted by code',
    )
    const { client } = await connectStreamable(url)
    t.teardown(() => client.close())
    t.match(
      textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })),
      /simple text/,
      'a retry after the burst is served',
    )
  },
)
