import { once } from 'node:events'
import pino from 'pino'
import t from 'tap'
import { StdioServerConfigSchema } from '../node/config.ts'
import { ProcessRuntime } from '../node/runtime/process-runtime.ts'
import type { UpstreamSession } from '../node/runtime/upstream.ts'
import { failoverServerConfig } from './support/fixture-server.ts'
import { withTimeout } from './support/wait.ts'

// A new version of a server on the process runtime: sessions on the old one go on, calls in flight finish,
// new sessions get the new version, and the old version stops once its last session ends. (The fixture is
// the same program under two version numbers; what matters is which process serves which session.)

const logger = pino({ level: 'silent' })
const version = (v: string) =>
  StdioServerConfigSchema.parse({ ...failoverServerConfig(), version: v, warmPool: 1 })

/** A raw JSON-RPC client on an upstream session: requests by id, answers as they come. */
function client(session: UpstreamSession) {
  const waiting = new Map<number, (m: Record<string, unknown>) => void>()
  session.onMessage = (bytes) => {
    const message = JSON.parse(Buffer.from(bytes).toString()) as Record<string, unknown>
    waiting.get(message.id as number)?.(message)
  }
  let next = 1
  return (method: string, params: object) => {
    const id = next++
    const answer = new Promise<Record<string, unknown>>((resolve) => waiting.set(id, resolve))
    session.send(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, method, params })))
    return withTimeout(answer, 20_000, `${method} answered`)
  }
}

const INIT = {
  protocolVersion: '2025-11-25',
  capabilities: {},
  clientInfo: { name: 'drain-test', version: '1' },
}

t.test('a new version starts beside the old one, which drains without cutting a call', async (t) => {
  const runtime = new ProcessRuntime(logger)
  t.teardown(() => runtime.stop())
  await runtime.ensure([{ config: version('1.0.0'), manifestHash: 'v1' }])
  const old = await runtime.open('failover')
  const call = client(old)
  await call('initialize', INIT)
  const oldPid = runtime.status()[0]!.pids
  const inFlight = call('tools/call', { name: 'slow_read', arguments: { ms: 1_500 } })

  await runtime.ensure([{ config: version('2.0.0'), manifestHash: 'v2' }])
  t.equal(runtime.status()[0]!.version, '2.0.0', 'the runtime now offers the new version')
  const fresh = await runtime.open('failover')
  const freshCall = client(fresh)
  await freshCall('initialize', INIT)
  t.match(
    await inFlight,
    { result: { content: [{ type: 'text' }] } },
    'the call in flight on the old version finished',
  )
  t.match(
    await call('tools/call', { name: 'slow_read', arguments: { ms: 10 } }),
    { result: {} },
    'and the old session goes on',
  )
  t.notSame(runtime.status()[0]!.pids, oldPid, 'new sessions run on new processes')

  const drained = once(runtime, 'version-drained')
  await old.close()
  const [event] = await withTimeout(drained, 10_000, 'the old version to stop')
  t.same(
    event,
    { serverId: 'failover', version: '1.0.0' },
    'the old version stopped once its last session ended',
  )
  t.match(await freshCall('tools/call', { name: 'slow_read', arguments: { ms: 10 } }), { result: {} })
  await fresh.close()
})

t.test('a server no longer wanted stops at once', async (t) => {
  const runtime = new ProcessRuntime(logger)
  t.teardown(() => runtime.stop())
  await runtime.ensure([{ config: version('1.0.0'), manifestHash: 'v1' }])
  await runtime.ensure([])
  t.same(runtime.status(), [])
  t.notOk(runtime.has('failover'))
})
