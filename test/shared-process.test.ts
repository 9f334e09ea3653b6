import pino from 'pino'
import t, { type Test } from 'tap'
import { SharedProcess } from '../node/runtime/shared-stdio/shared-process.ts'
import { HELD_BYTES_HIGH_WATER, SharedSession } from '../node/runtime/shared-stdio/shared-session.ts'
import type { StdioProcess } from '../node/runtime/stdio-process.ts'

/**
 * The multiplexer of a shared stdio process, against a process this test plays: it records what the node writes
 * to the server and writes back what a server would. The real server behind real gateways and SDK clients is in
 * `shared-stdio.test.ts`; here every rewriting rule is checked message by message.
 */
type Json = Record<string, any>

class ScriptedServer {
  readonly written: Json[] = []
  onMessage: ((message: Uint8Array) => void) | undefined
  outputPaused = false
  exited = false
  readonly child = { pid: 4242 }
  readonly startedAt = Date.now()

  send(message: Uint8Array): boolean {
    this.written.push(JSON.parse(Buffer.from(message).toString()))
    return true
  }

  drained(): Promise<void> {
    return Promise.resolve()
  }

  setOutputPaused(paused: boolean): void {
    this.outputPaused = paused
  }

  write(message: Json | string): void {
    this.onMessage!(Buffer.from(typeof message === 'string' ? message : JSON.stringify(message)))
  }

  /** What the node wrote since the last call. */
  take(): Json[] {
    return this.written.splice(0)
  }
}

const encode = (message: Json) => Buffer.from(JSON.stringify(message))

/** A shared process whose server answered initialize, and sessions that record what reaches them. */
function setUp(t: Test) {
  const server = new ScriptedServer()
  const shared = new SharedProcess(server as unknown as StdioProcess, pino({ level: 'silent' }), '1.0.0')
  const [initialize] = server.take()
  t.match(initialize, { method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {} } })
  server.write({
    jsonrpc: '2.0',
    id: initialize!.id,
    result: {
      protocolVersion: '2025-11-25',
      capabilities: { tools: {} },
      serverInfo: { name: 's', version: '1' },
    },
  })
  t.match(server.take(), [{ method: 'notifications/initialized' }], 'the node finishes the handshake itself')
  const session = (name: string) => {
    const received: Json[] = []
    const ended: string[] = []
    const s = new SharedSession(shared, () => {})
    s.onMessage = (bytes) => received.push({ ...JSON.parse(Buffer.from(bytes).toString()), to: name })
    s.onEnd = (_code, reason) => ended.push(reason)
    return { s, received, ended }
  }
  return { server, shared, session }
}

t.test('each session is initialized from the one handshake, under its own request id', async (t) => {
  const { server, session } = setUp(t)
  const a = session('a')
  const b = session('b')
  a.s.send(encode({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18' } }))
  b.s.send(encode({ jsonrpc: '2.0', id: 'x', method: 'initialize', params: {} }))
  a.s.send(encode({ jsonrpc: '2.0', method: 'notifications/initialized' }))
  await new Promise(setImmediate)
  t.match(a.received, [{ id: 0, result: { serverInfo: { name: 's' }, protocolVersion: '2025-11-25' } }])
  t.match(b.received, [{ id: 'x', result: { serverInfo: { name: 's' } } }])
  t.same(server.take(), [], 'the server sees no second initialize, nor the sessions’ initialized')
})

t.test('colliding request ids and progress tokens reach the session they belong to', async (t) => {
  const { server, session } = setUp(t)
  const a = session('a')
  const b = session('b')
  const call = (token: string) => ({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'work', arguments: {}, _meta: { progressToken: token } },
  })
  a.s.send(encode(call('t')))
  b.s.send(encode(call('t')))
  const [toServerA, toServerB] = server.take()
  t.not(toServerA!.id, toServerB!.id, 'the server sees two ids')
  t.not(toServerA!.params._meta.progressToken, toServerB!.params._meta.progressToken, 'and two tokens')
  t.equal(toServerA!.params.name, 'work', 'the rest of the request is as sent')
  server.write({
    jsonrpc: '2.0',
    method: 'notifications/progress',
    params: { progressToken: toServerB!.params._meta.progressToken, progress: 1 },
  })
  server.write({ jsonrpc: '2.0', id: toServerA!.id, result: { content: [] } })
  server.write({ jsonrpc: '2.0', id: toServerB!.id, result: { content: [{ type: 'text', text: 'b' }] } })
  t.match(a.received, [{ id: 1, result: { content: [] } }])
  t.match(b.received, [
    { method: 'notifications/progress', params: { progressToken: 't', progress: 1 } },
    { id: 1, result: { content: [{ text: 'b' }] } },
  ])
  server.write({
    jsonrpc: '2.0',
    method: 'notifications/progress',
    params: { progressToken: toServerB!.params._meta.progressToken, progress: 2 },
  })
  server.write({ jsonrpc: '2.0', id: toServerB!.id, result: {} })
  t.equal(b.received.length, 2, 'progress and answers after the answer go nowhere')
})

t.test(
  'cancellation: a session cancels its own request; an ended session cancels what it had in flight',
  async (t) => {
    const { server, session } = setUp(t)
    const a = session('a')
    const b = session('b')
    a.s.send(encode({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'slow' } }))
    b.s.send(encode({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'slow' } }))
    const [forA, forB] = server.take()
    b.s.send(
      encode({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 5, reason: 'user' } }),
    )
    t.match(server.take(), [
      { method: 'notifications/cancelled', params: { requestId: forB!.id, reason: 'user' } },
    ])
    b.s.send(encode({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 99 } }))
    t.same(server.take(), [], 'cancelling a request the session does not have is dropped')
    await a.s.close()
    t.match(server.take(), [{ method: 'notifications/cancelled', params: { requestId: forA!.id } }])
    server.write({ jsonrpc: '2.0', id: forA!.id, result: {} })
    t.same(a.received, [], 'a closed session receives nothing')
  },
)

t.test('subscriptions are counted per URI; updates go to the subscribers', async (t) => {
  const { server, session } = setUp(t)
  const a = session('a')
  const b = session('b')
  const c = session('c')
  const subscribe = (id: number, method = 'resources/subscribe') =>
    encode({ jsonrpc: '2.0', id, method, params: { uri: 'file:///x' } })
  a.s.send(subscribe(1))
  const [first] = server.take()
  t.match(first, { method: 'resources/subscribe', params: { uri: 'file:///x' } })
  server.write({ jsonrpc: '2.0', id: first!.id, result: {} })
  b.s.send(subscribe(2))
  t.same(server.take(), [], 'the second subscriber is answered by the node')
  t.match(b.received, [{ id: 2, result: {} }])
  server.write({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'file:///x' } })
  t.match(a.received.at(-1), { method: 'notifications/resources/updated' })
  t.match(b.received.at(-1), { method: 'notifications/resources/updated' })
  t.same(c.received, [], 'not to a session that did not subscribe')
  a.s.send(subscribe(3, 'resources/unsubscribe'))
  t.same(server.take(), [], 'b still follows the URI: the process stays subscribed')
  t.match(a.received.at(-1), { id: 3, result: {} })
  await b.s.close()
  t.match(
    server.take(),
    [{ method: 'resources/unsubscribe', params: { uri: 'file:///x' } }],
    'the last one left: unsubscribed',
  )
  server.write({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' })
  t.match(c.received, [{ method: 'notifications/tools/list_changed' }], 'list changes go to every session')
  t.match(a.received.at(-1), { method: 'notifications/tools/list_changed' })
})

t.test(
  'what the server asks: ping here, a request to the one session in flight, refused when ambiguous',
  async (t) => {
    const { server, session } = setUp(t)
    const a = session('a')
    const b = session('b')
    server.write({ jsonrpc: '2.0', id: 'p', method: 'ping' })
    t.same(server.take(), [{ jsonrpc: '2.0', id: 'p', result: {} }])
    a.s.send(encode({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ask' } }))
    server.take()
    server.write({ jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: {} })
    t.match(
      a.received,
      [{ id: 's1', method: 'sampling/createMessage' }],
      'the only session with a request in flight is asked',
    )
    b.s.send(encode({ jsonrpc: '2.0', id: 's1', result: { forged: true } }))
    t.same(server.take(), [], 'an answer from a session that was not asked is dropped')
    a.s.send(encode({ jsonrpc: '2.0', id: 's1', result: { content: { type: 'text', text: 'ok' } } }))
    t.match(server.take(), [{ id: 's1', result: { content: { text: 'ok' } } }])
    b.s.send(encode({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'ask' } }))
    server.take()
    server.write({ jsonrpc: '2.0', id: 's2', method: 'elicitation/create', params: {} })
    t.match(server.take(), [
      { id: 's2', error: { code: -32603, message: /cannot ask a client .*2 sessions/ } },
    ])
  },
)

t.test('lines that are not JSON-RPC are dropped, from either side', async (t) => {
  const { server, session } = setUp(t)
  const a = session('a')
  server.write('not json')
  server.write({ jsonrpc: '1.0', method: 'x' })
  t.same(a.received, [])
  t.equal(a.s.send(Buffer.from('{oops')), true)
  t.same(server.take(), [])
})

t.test('a server that refuses initialize, or exits first, fails the sessions waiting on it', async (t) => {
  const refusing = new ScriptedServer()
  const shared = new SharedProcess(refusing as unknown as StdioProcess, pino({ level: 'silent' }), '1.0.0')
  const [initialize] = refusing.take()
  const session = new SharedSession(shared, () => {})
  const received: Json[] = []
  session.onMessage = (bytes) => received.push(JSON.parse(Buffer.from(bytes).toString()))
  session.send(encode({ jsonrpc: '2.0', id: 0, method: 'initialize', params: {} }))
  refusing.write({ jsonrpc: '2.0', id: initialize!.id, error: { code: -32602, message: 'no' } })
  await t.rejects(shared.ready(), { code: 'UPSTREAM_UNAVAILABLE', message: /refused initialize/ })
  await new Promise(setImmediate)
  t.match(received, [{ id: 0, error: { code: -32603, message: /refused initialize/ } }])

  const dying = new ScriptedServer()
  const early = new SharedProcess(dying as unknown as StdioProcess, pino({ level: 'silent' }), '1.0.0')
  const ended: string[] = []
  const onIt = new SharedSession(early, () => {})
  onIt.onEnd = (code, reason) => ended.push(`${code}: ${reason}`)
  early.exited('exited with code 1')
  await t.rejects(early.ready(), { message: /exited with code 1 before it initialized/ })
  t.same(ended, ['UPSTREAM_EXITED: the server process exited with code 1'])
})

t.test('a paused session holds its output; past the high-water mark the process pauses', async (t) => {
  const { server, session } = setUp(t)
  const a = session('a')
  const b = session('b')
  a.s.setOutputPaused(true)
  const big = 'x'.repeat(256 * 1024)
  for (let i = 0; i < 3; i++)
    server.write({ jsonrpc: '2.0', method: 'notifications/message', params: { data: big, i } })
  t.equal(a.received.length, 0, 'held while paused')
  t.equal(b.received.length, 3, 'other sessions still get theirs')
  t.equal(server.outputPaused, false, 'under the mark the process keeps going')
  for (let i = 3; i < 5; i++)
    server.write({ jsonrpc: '2.0', method: 'notifications/message', params: { data: big, i } })
  t.ok(5 * big.length > HELD_BYTES_HIGH_WATER)
  t.equal(server.outputPaused, true, 'past the mark the process is paused')
  a.s.setOutputPaused(false)
  t.equal(server.outputPaused, false, 'and resumes with the session')
  t.same(
    a.received.map((m) => m.params.i),
    [0, 1, 2, 3, 4],
    'everything held arrives, in order',
  )
})
