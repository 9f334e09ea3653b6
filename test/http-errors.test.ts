import { request } from 'node:http'
import t from 'tap'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { initializeRequest } from './support/raw-sse.ts'

const MAX_BODY = 64 * 1024
const network = await startNetwork({
  nodes: 1,
  servers: [fixtureServerConfig()],
  gateway: { http: { maxBodyBytes: MAX_BODY } },
})
t.teardown(network.stop)
const endpoint = network.gateway.serverUrl('conformance')
const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }
const initialize = initializeRequest()

t.test('malformed JSON gets a JSON-RPC parse error', async (t) => {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers,
    body: '{"jsonrpc": "2.0", "id": 1, "method": ',
  })
  t.equal(response.status, 400)
  t.match(await response.json(), {
    jsonrpc: '2.0',
    id: null,
    error: { code: -32700, message: /Parse error/ },
  })
})

t.test('a JSON body that is not JSON-RPC is refused', async (t) => {
  const { client, transport } = await connectStreamable(endpoint)
  t.teardown(() => client.close())
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ hello: 'world' }),
  })
  t.equal(response.status, 400)
  t.match(await response.json(), { error: { code: -32700 } })
})

t.test('an unknown server id is a 404 that names it', async (t) => {
  const response = await fetch(network.gateway.serverUrl('no-such-server'), {
    method: 'POST',
    headers,
    body: JSON.stringify(initialize),
  })
  t.equal(response.status, 404)
  t.match(await response.json(), { error: { message: /Unknown server no-such-server/ } })
})

t.test('a request without a session id is a 400; an unknown session id is a 404', async (t) => {
  const ping = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' })
  const missing = await fetch(endpoint, { method: 'POST', headers, body: ping })
  t.equal(missing.status, 400)
  t.match(await missing.json(), { error: { message: /Mcp-Session-Id header is required/ } })
  const get = await fetch(endpoint, { method: 'GET', headers: { accept: 'text/event-stream' } })
  t.equal(get.status, 400)
  await get.body?.cancel()
  const unknown = await fetch(endpoint, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': 'f00' },
    body: ping,
  })
  t.equal(unknown.status, 404)
  t.match(await unknown.json(), { error: { code: -32001, message: /Session not found/ } })
})

t.test('a body over the limit is a 413, and the session it was meant for carries on', async (t) => {
  const { client, transport } = await connectStreamable(endpoint)
  t.teardown(() => client.close())
  const big = JSON.stringify({
    jsonrpc: '2.0',
    id: 9,
    method: 'tools/call',
    params: { name: 'x', arguments: { pad: 'x'.repeat(MAX_BODY) } },
  })
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { ...headers, 'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-11-25' },
    body: big,
  })
  t.equal(response.status, 413)
  t.match(await response.json(), { error: { message: new RegExp(`exceeds the limit of ${MAX_BODY} bytes`) } })
  const { tools } = await client.listTools()
  t.ok(tools.length > 0, 'the session still answers')
})

t.test('a foreign Origin or Host is a 403 (DNS rebinding protection)', async (t) => {
  const origin = await fetch(endpoint, {
    method: 'POST',
    headers: { ...headers, origin: 'https://evil.example' },
    body: JSON.stringify(initialize),
  })
  t.equal(origin.status, 403)
  t.match(await origin.json(), { error: { message: /Origin https:\/\/evil.example is not allowed/ } })
  // fetch will not send a Host of our choosing; a raw request can, as a rebinding attacker's browser would.
  const hostStatus = await new Promise<number | undefined>((resolve, reject) => {
    const req = request(
      endpoint,
      { method: 'POST', headers: { ...headers, host: 'evil.example' } },
      (res) => {
        res.resume()
        resolve(res.statusCode)
      },
    )
    req.once('error', reject)
    req.end(JSON.stringify(initialize))
  })
  t.equal(hostStatus, 403)
  const local = await fetch(endpoint, {
    method: 'POST',
    headers: { ...headers, origin: 'http://localhost:3000' },
    body: JSON.stringify(initialize),
  })
  t.equal(local.status, 200, 'a loopback origin is let through')
  await local.body?.cancel()
})

t.test('unknown paths and methods get clear errors', async (t) => {
  const path = await fetch(`${network.gateway.url}/nowhere`)
  t.equal(path.status, 404)
  t.match(await path.json(), {
    error: { message: /MCP endpoints are \/mcp, \/mcp\/v\/<name>, \/mcp\/<server-id>/ },
  })
  const method = await fetch(endpoint, { method: 'PUT', headers, body: '{}' })
  t.equal(method.status, 405)
  t.equal(method.headers.get('allow'), 'GET, POST, DELETE')
  await method.body?.cancel()
})

t.test(
  'CORS: an allowed origin is echoed with the headers a browser client needs; a foreign one gets none',
  async (t) => {
    const allowed = 'http://localhost:5173'
    const preflight = await fetch(endpoint, {
      method: 'OPTIONS',
      headers: {
        origin: allowed,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'mcp-session-id',
      },
    })
    t.equal(preflight.status, 204)
    t.equal(preflight.headers.get('access-control-allow-origin'), allowed)
    t.match(preflight.headers.get('access-control-allow-headers'), /mcp-session-id/)
    t.match(preflight.headers.get('access-control-allow-methods'), /POST/)
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: { ...headers, origin: allowed },
      body: JSON.stringify(initialize),
    })
    t.equal(response.status, 200)
    t.equal(response.headers.get('access-control-allow-origin'), allowed)
    t.match(response.headers.get('access-control-expose-headers'), /mcp-session-id/)
    await response.body?.cancel()
    const foreign = await fetch(endpoint, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    })
    t.equal(foreign.status, 403)
    t.equal(foreign.headers.get('access-control-allow-origin'), null, 'nothing is opened to it')
  },
)
