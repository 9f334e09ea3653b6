import { request } from 'node:http'
import t, { type Test } from 'tap'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { captureLogs } from './support/log-capture.ts'
import { rawHttp } from './support/raw-http.ts'
import {
  initializeRaw,
  initializeRequest,
  openRaw,
  readEventsUntil,
  sessionHeaders,
} from './support/raw-sse.ts'
import { waitFor } from './support/wait.ts'

// Each case here is input an attacker sent to a gateway and two nodes started with the CLIs (issue 19): it took
// the gateway down, left work behind that nothing released, or answered with internals. A canary session
// calls a tool after each one: nothing an attacker sends may disturb another agent's session.

const MAX_BODY = 64 * 1024
const logs = captureLogs('debug')
const network = await startNetwork({
  nodes: 1,
  servers: [fixtureServerConfig()],
  gateway: { http: { maxBodyBytes: MAX_BODY } },
  node: { ops: { port: 0 } },
  logger: logs.logger,
})
t.teardown(network.stop)
const { gateway } = network
const node = network.nodes[0]!
const endpoint = gateway.serverUrl('conformance')
const jsonHeaders = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }
const canary = await connectStreamable(endpoint, { name: 'canary' })
t.teardown(() => canary.client.close())

async function canaryStillWorks(t: Test): Promise<void> {
  const result = await canary.client.callTool({ name: 'test_simple_text', arguments: {} })
  t.match(textOf(result), /simple text/i, 'the canary session still gets its answers')
}

/** `{"a":{"a":…1…}}`, `levels` deep: what made JSON.stringify throw inside the gateway. */
function nested(levels: number): string {
  return `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`
}

/** The keys of `map` that were not in `before`. */
function newKeys(map: Map<string, unknown>, before: Set<string>): string[] {
  return [...map.keys()].filter((key) => !before.has(key))
}

function deepInitialize(levels: number): string {
  const init = JSON.stringify(initializeRequest('deep'))
  return `${init.slice(0, -2)},"x":${nested(levels)}}}`
}

t.test('an initialize nested 10,000 levels deep is a 400 that says so; the gateway lives on', async (t) => {
  const sessionsBefore = gateway.sessions.size
  for (const levels of [129, 4_500, 10_000]) {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: jsonHeaders,
      body: deepInitialize(levels),
    })
    t.equal(response.status, 400, `${levels} levels: 400`)
    t.same(
      await response.json(),
      {
        jsonrpc: '2.0',
        id: 1,
        error: { code: -32600, message: 'Invalid Request: the JSON nests deeper than 128 levels' },
      },
      'the error names the limit and answers the request by its id',
    )
  }
  t.equal(gateway.sessions.size, sessionsBefore, 'no session was opened')
  const shallow = await fetch(endpoint, { method: 'POST', headers: jsonHeaders, body: deepInitialize(100) })
  t.equal(shallow.status, 200, '100 levels are still accepted')
  await shallow.body?.cancel()
  await canaryStillWorks(t)
})

t.test('the same depth on a legacy SSE session is refused too, and the session carries on', async (t) => {
  const stream = await openRaw(gateway.sseUrl('conformance'), {
    method: 'GET',
    headers: { accept: 'text/event-stream' },
  })
  t.teardown(() => stream.destroy())
  const [endpointEvent] = (await readEventsUntil(stream, (e) => e.data.startsWith('/messages'))).slice(-1)
  const messagesUrl = new URL(endpointEvent!.data, gateway.url).toString()
  const deep = await fetch(messagesUrl, {
    method: 'POST',
    headers: jsonHeaders,
    body: deepInitialize(10_000),
  })
  t.equal(deep.status, 400)
  t.match(await deep.json(), { error: { message: /nests deeper than 128 levels/ } })
  const notRpc = await fetch(messagesUrl, {
    method: 'POST',
    headers: jsonHeaders,
    body: JSON.stringify({ hello: 'secret-looking input' }),
  })
  t.equal(notRpc.status, 400)
  t.equal(notRpc.headers.get('content-type'), 'application/json', 'the refusal is JSON, not the body echoed')
  const text = await notRpc.text()
  t.notMatch(text, /secret-looking input/, 'the posted body is not echoed back')
  t.match(JSON.parse(text), { error: { code: -32600, message: /not a JSON-RPC 2.0 message/ } })
  const ok = await fetch(messagesUrl, {
    method: 'POST',
    headers: jsonHeaders,
    body: JSON.stringify(initializeRequest()),
  })
  t.equal(ok.status, 202, 'a proper message on the same session is still accepted')
  await ok.body?.cancel()
  await canaryStillWorks(t)
})

t.test('on a live session a too-deep request is refused and leaves nothing in flight', async (t) => {
  const sessionId = await initializeRaw(endpoint)
  const session = gateway.sessions.get(sessionId)!
  const body = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_simple_text","arguments":${nested(5_000)}}}`
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: sessionHeaders(sessionId, 'application/json'),
    body,
  })
  t.equal(response.status, 400)
  t.match(await response.json(), { id: 7, error: { code: -32600 } })
  t.equal(session.inFlightCount, 0, 'the refused request is not waiting for an answer')
  // Other sessions (the canary's, an earlier test's) may have a request of their own still waiting: the budget
  // must hold exactly theirs, not the refused one.
  const waiting = [...gateway.sessions.values()].reduce((sum, s) => sum + s.inFlightCount, 0)
  t.equal(gateway.inFlightBudget.total, waiting, 'nor counted against anyone')
  const nodeSessionsBefore = node.sessions.size
  const deleted = await fetch(endpoint, { method: 'DELETE', headers: sessionHeaders(sessionId) })
  t.equal(deleted.status, 200)
  await waitFor(
    () => node.sessions.size < nodeSessionsBefore,
    node,
    'session-closed',
    10_000,
    'its node session ended',
  )
  await canaryStillWorks(t)
})

t.test('initialize sent as a notification opens no session and no server process', async (t) => {
  // Sessions of earlier tests may still be closing, so the test looks for a new session id, not a count.
  const gatewaySessionsBefore = new Set(gateway.sessions.keys())
  const nodeSessionsBefore = new Set(node.sessions.keys())
  const { id: _id, ...notification } = initializeRequest('no-id')
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: jsonHeaders,
    body: JSON.stringify(notification),
  })
  t.equal(response.status, 400)
  t.equal(response.headers.get('mcp-session-id'), null)
  t.match(await response.json(), {
    error: { code: -32600, message: /initialize must be a request, with an id/ },
  })
  t.same(newKeys(gateway.sessions, gatewaySessionsBefore), [], 'no gateway session')
  t.same(newKeys(node.sessions, nodeSessionsBefore), [], 'no node session')
})

t.test('a body over the limit reaches fetch clients as a 413, every time', async (t) => {
  // fetch sends its whole body before it reads the answer: a connection closed under it is a broken pipe.
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'ping',
    params: { pad: 'x'.repeat(4 * 1024 * 1024) },
  })
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: sessionHeaders(canary.transport.sessionId!, 'application/json'),
      body,
    })
    statuses.push(response.status)
    await response.body?.cancel()
  }
  t.same(statuses, Array(20).fill(413), '20 of 20 got the 413')
  await t.rejects(
    canary.client.callTool({ name: 'test_simple_text', arguments: { pad: 'x'.repeat(1024 * 1024) } }),
    /413|exceeds the limit/,
    'an SDK client gets the refusal, not a broken pipe',
  )
  await canaryStillWorks(t)
})

t.test('request targets and Last-Event-IDs from an attacker get 4xx that say what was wrong', async (t) => {
  const errorsBefore = logs.lines.filter((l) => (l.level as number) >= 50).length
  for (const target of ['http://[', '//a:b@', '//[::1', '/%zz']) {
    const response = await rawHttp(gateway.url, `GET ${target} HTTP/1.1\r\nhost: 127.0.0.1`)
    t.ok(response.status >= 400 && response.status < 500, `${target}: ${response.status}`)
    t.notMatch(response.body, /Error|TypeError|at \//, `${target}: no exception text in the answer`)
  }
  const sessionId = canary.transport.sessionId!
  for (const lastEventId of ['garbage', `x|${'9'.repeat(40)}`, '|1', 'é'.repeat(300)]) {
    const response = await fetch(endpoint, {
      method: 'GET',
      headers: { ...sessionHeaders(sessionId), accept: 'text/event-stream', 'last-event-id': lastEventId },
    })
    t.equal(response.status, 400, `Last-Event-ID ${lastEventId.slice(0, 20)}: 400`)
    t.match(await response.json(), { error: { message: /Last-Event-ID is not an event id/ } })
  }
  const errorsAfter = logs.lines.filter((l) => (l.level as number) >= 50).length
  t.equal(errorsAfter, errorsBefore, 'nothing of this was an error inside the gateway')
  t.notOk(
    logs.lines.some((l) => JSON.stringify(l).includes('Maximum call stack')),
    'no stack overflow anywhere in the log',
  )
  await canaryStillWorks(t)
})

t.test('operations endpoints and the server list refuse a foreign Host (DNS rebinding)', async (t) => {
  const targets = [
    ...['/metrics', '/servers', '/healthz', '/readyz'].map((path) => `${gateway.url}${path}`),
    ...['/metrics', '/healthz'].map((path) => `${node.opsUrl}${path}`),
  ]
  for (const url of targets) {
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(url, { headers: { host: 'evil.example' } }, (res) => {
        res.resume()
        resolve(res.statusCode)
      })
      req.once('error', reject)
      req.end()
    })
    t.equal(status, 403, `${url} with Host evil.example: 403`)
    const local = await fetch(url)
    t.not(local.status, 403, `${url} on a loopback Host is served`)
    await local.body?.cancel()
  }
})

t.test('what was refused is counted by boundary', async (t) => {
  const metrics = await (await fetch(`${gateway.url}/metrics`)).text()
  const refused = /nexus_gateway_refused_inputs_total\{boundary="agent"\} (\d+)/.exec(metrics)
  t.ok(refused !== null && Number(refused[1]) > 0, `agent inputs refused: ${refused?.[1]}`)
})
