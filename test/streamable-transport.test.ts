import t from 'tap'
import { startNetwork } from '../testing/network.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import {
  initializeRaw,
  initializeRequest,
  openRaw,
  parseSse,
  readEventsUntil,
  sessionHeaders,
} from './support/raw-sse.ts'

/**
 * The gateway's own streamable HTTP transport for legacy-era sessions (`StreamableSessionTransport`), spoken to
 * in plain HTTP: what it refuses and how, and how its event streams begin, carry and end. The SDK clients' view
 * of it is in `streamable-http.test.ts` and the official suite in `conformance.test.ts`.
 */
const network = await startNetwork({ nodes: 1, servers: [fixtureServerConfig()] })
t.teardown(network.stop)
const endpoint = network.gateway.serverUrl('conformance')
const JSON_AND_SSE = 'application/json, text/event-stream'

const post = (sessionId: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(endpoint, {
    method: 'POST',
    headers: { ...sessionHeaders(sessionId, 'application/json'), ...headers },
    body: JSON.stringify(body),
  })
const ping = (id: number | string) => ({ jsonrpc: '2.0', id, method: 'ping' })
const callSimpleText = (id: number) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name: 'test_simple_text', arguments: {} },
})

t.test('an initialize refused for its headers opens no session', async (t) => {
  const notAccepting = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(initializeRequest()),
  })
  t.equal(notAccepting.status, 406)
  t.match(await notAccepting.json(), { error: { code: -32000, message: /must accept both/ } })
  t.equal(notAccepting.headers.get('mcp-session-id'), null)
  const notJson = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', accept: JSON_AND_SSE },
    body: JSON.stringify(initializeRequest()),
  })
  t.equal(notJson.status, 415)
  t.match(await notJson.json(), { error: { message: /Content-Type must be application\/json/ } })
  const withCharset = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'Application/JSON; charset=utf-8', accept: JSON_AND_SSE },
    body: JSON.stringify(initializeRequest()),
  })
  t.equal(withCharset.status, 200, 'a JSON media type with parameters is JSON')
  t.ok(withCharset.headers.get('mcp-session-id'))
  await withCharset.text()
})

t.test(
  'messages that are not what MCP lets an agent send are refused, and the session goes on',
  async (t) => {
    const sessionId = await initializeRaw(endpoint)
    for (const [why, body] of [
      ['a member JSON-RPC does not define', { ...ping(2), extra: true }],
      ['params that are not an object', { jsonrpc: '2.0', id: 3, method: 'tools/list', params: [1] }],
      ['a fractional id', ping(4.5)],
      ['an empty batch', []],
    ] as const) {
      const refused = await post(sessionId, body)
      t.equal(refused.status, 400, why)
      t.match(await refused.json(), { error: { code: -32700, message: /Invalid JSON-RPC message/ } }, why)
    }
    const tooMany = await post(
      sessionId,
      Array.from({ length: 101 }, (_, i) => ping(i + 10)),
    )
    t.equal(tooMany.status, 400)
    t.match(await tooMany.json(), { error: { code: -32600, message: /Batch must not exceed 100/ } })
    const again = await post(sessionId, initializeRequest())
    t.equal(again.status, 400)
    t.match(await again.json(), { error: { code: -32600, message: /already initialized/ } })
    const fine = await post(sessionId, ping(6))
    t.equal(fine.status, 200, 'the session still answers')
    t.match(JSON.parse(parseSse(await fine.text()).events.at(-1)!.data), { id: 6, result: {} })
  },
)

t.test('a batch of requests is answered on one stream, which ends with the last answer', async (t) => {
  const sessionId = await initializeRaw(endpoint)
  const response = await post(sessionId, [ping('a'), callSimpleText(7), ping('b')])
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/event-stream')
  t.equal(response.headers.get('mcp-session-id'), sessionId)
  const { events, rest } = parseSse(await response.text())
  t.equal(rest, '', 'the stream ended after whole events')
  t.equal(events[0]!.data, '', 'a priming event first (protocol 2025-11-25)')
  t.ok(events[0]!.id, 'with an id to resume after')
  const ids = events.slice(1).map((e) => JSON.parse(e.data).id)
  t.same(ids.toSorted(), [7, 'a', 'b'].toSorted(), 'every request answered once')
  const notifications = await post(sessionId, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' })
  t.equal(notifications.status, 202, 'messages without requests are accepted with nothing to say')
})

t.test('an older client gets no priming event, which it could not read', async (t) => {
  const init = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: JSON_AND_SSE },
    body: JSON.stringify({
      ...initializeRequest(),
      params: { ...initializeRequest().params, protocolVersion: '2025-06-18' },
    }),
  })
  const { events } = parseSse(await init.text())
  t.equal(events.length, 1, 'the answer alone')
  t.match(JSON.parse(events[0]!.data), { id: 1, result: { protocolVersion: '2025-06-18' } })
})

t.test('the GET stream: text/event-stream only, one at a time', async (t) => {
  const sessionId = await initializeRaw(endpoint)
  const json = await fetch(endpoint, {
    method: 'GET',
    headers: { ...sessionHeaders(sessionId), accept: 'application/json' },
  })
  t.equal(json.status, 406)
  t.match(await json.json(), { error: { message: /must accept text\/event-stream/ } })
  const first = await openRaw(endpoint, { method: 'GET', headers: sessionHeaders(sessionId) })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['content-type'], 'text/event-stream', 'headers arrive before any event')
  const second = await fetch(endpoint, { method: 'GET', headers: sessionHeaders(sessionId) })
  t.equal(second.status, 409)
  t.match(await second.json(), { error: { message: /Only one SSE stream/ } })
  first.destroy()
})

t.test('a stream lost before its answer resumes with the answer, then ends', async (t) => {
  const sessionId = await initializeRaw(endpoint)
  const call = await openRaw(endpoint, {
    method: 'POST',
    headers: sessionHeaders(sessionId, 'application/json'),
    body: JSON.stringify(callSimpleText(8)),
  })
  const [priming] = await readEventsUntil(call, (event) => event.data === '')
  call.destroy()
  const resumed = await fetch(endpoint, {
    method: 'GET',
    headers: { ...sessionHeaders(sessionId), 'last-event-id': priming!.id! },
  })
  t.equal(resumed.status, 200)
  const { events, rest } = parseSse(await resumed.text())
  t.equal(rest, '', 'the resumed stream ended: its request has its answer')
  t.equal(events.length, 1)
  t.match(JSON.parse(events[0]!.data), { id: 8, result: { content: [{ type: 'text' }] } })
})

t.test('a resume takes over a stream the gateway still holds, which then ends', async (t) => {
  const init = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: JSON_AND_SSE },
    body: JSON.stringify({
      ...initializeRequest(),
      params: { ...initializeRequest().params, capabilities: { sampling: {} } },
    }),
  })
  await init.text()
  const sessionId = init.headers.get('mcp-session-id')!
  await post(sessionId, { jsonrpc: '2.0', method: 'notifications/initialized' })
  const call = await openRaw(endpoint, {
    method: 'POST',
    headers: sessionHeaders(sessionId, 'application/json'),
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/call',
      params: { name: 'test_sampling', arguments: { prompt: 'hold' } },
    }),
  })
  // The server asks the agent to sample, on the call's stream, and waits: the stream stays open.
  const [priming] = await readEventsUntil(call, (event) => event.data === '')
  const first = await readEventsUntil(call, (event) => event.data.includes('sampling/createMessage'))
  const oldEnded = new Promise<void>((resolve) => {
    call.once('end', resolve)
    call.once('close', resolve)
    call.resume()
  })
  const resumed = await openRaw(endpoint, {
    method: 'GET',
    headers: { ...sessionHeaders(sessionId), 'last-event-id': priming!.id! },
  })
  t.equal(resumed.statusCode, 200, 'the resume is served')
  await oldEnded
  t.pass('the connection it replaced was ended')
  const replayed = await readEventsUntil(resumed, (event) => event.data.includes('sampling/createMessage'))
  t.equal(replayed.at(-1)!.id, first.at(-1)!.id, 'the missed request is replayed with its event id')
  const sampling = JSON.parse(replayed.at(-1)!.data)
  const answered = await post(sessionId, {
    jsonrpc: '2.0',
    id: sampling.id,
    result: { role: 'assistant', content: { type: 'text', text: 'sampled' }, model: 'm' },
  })
  t.equal(answered.status, 202)
  const result = await readEventsUntil(resumed, (event) => event.data.includes('"id":9'))
  t.match(JSON.parse(result.at(-1)!.data), {
    id: 9,
    result: { content: [{ text: 'LLM response: sampled' }] },
  })
})

t.test('DELETE ends the session; its id is unknown afterwards', async (t) => {
  const sessionId = await initializeRaw(endpoint)
  const ended = await fetch(endpoint, { method: 'DELETE', headers: sessionHeaders(sessionId) })
  t.equal(ended.status, 200)
  const after = await post(sessionId, ping(10))
  t.equal(after.status, 404)
  t.match(await after.json(), { error: { code: -32001 } })
})
