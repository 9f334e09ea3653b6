import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import t from 'tap'
import { createApiKey, revokeApiKey } from '../gateway/api-keys.ts'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable } from './support/clients.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { captureLogs } from './support/log-capture.ts'
import { initializeRequest } from './support/raw-sse.ts'

const keysFile = join(mkdtempSync(join(tmpdir(), 'nexus-auth-')), 'keys.json')
const alice = createApiKey(keysFile, 'alice', ['server:conformance'])
const bob = createApiKey(keysFile, 'bob', ['server:conformance/test_simple_text'])
const carol = createApiKey(keysFile, 'carol', ['server:other'])
const dave = createApiKey(keysFile, 'dave', ['server:*'])

const ISSUER = 'https://issuer.example'
const AUDIENCE = 'nexus-gateway'
const { publicKey, privateKey } = await generateKeyPair('ES256')
const jwk = { ...(await exportJWK(publicKey)), kid: 'test-key', alg: 'ES256' }
const token = (claims: { sub?: string; scope?: string; aud?: string; exp?: number }) =>
  new SignJWT({ scope: claims.scope })
    .setProtectedHeader({ alg: 'ES256', kid: 'test-key' })
    .setIssuer(ISSUER)
    .setAudience(claims.aud ?? AUDIENCE)
    .setSubject(claims.sub ?? 'erin')
    .setIssuedAt()
    .setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 600)
    .sign(privateKey)

// Every line, down to debug: none may carry a key or a token.
const logs = captureLogs('debug')
const network = await startNetwork({
  nodes: 1,
  servers: [fixtureServerConfig()],
  logger: logs.logger,
  gateway: {
    auth: { apiKeys: keysFile, jwt: { issuer: ISSUER, audience: AUDIENCE, jwks: { keys: [jwk] } } },
  },
})
t.teardown(network.stop)
const { gateway } = network
const url = gateway.serverUrl('conformance')
const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` })

const initialize = initializeRequest()
const post = (headers: Record<string, string> = {}, body: unknown = initialize) =>
  fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: JSON.stringify(body),
  })

t.test('no token: 401 with the challenge that leads clients to the resource metadata', async (t) => {
  const response = await post()
  t.equal(response.status, 401)
  const challenge = response.headers.get('www-authenticate')!
  t.match(
    challenge,
    /^Bearer resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource"$/,
  )
  t.match(await response.json(), { error: { message: /Unauthorized: authentication required/ } })
  const metadata = await (await fetch(`${gateway.url}/.well-known/oauth-protected-resource`)).json()
  t.match(metadata, {
    resource: gateway.url,
    authorization_servers: [ISSUER],
    bearer_methods_supported: ['header'],
  })
  t.ok(metadata.scopes_supported.includes('server:conformance'))
})

t.test('bad, expired, foreign-audience and revoked tokens: 401 invalid_token, with the reason', async (t) => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['malformed API key', bearer('nxk_nonsense'), /malformed API key/],
    ['unknown API key', bearer(`nxk_${'0'.repeat(16)}_${'A'.repeat(43)}`), /unknown API key/],
    ['not a JWT', bearer('abc.def.ghi'), /invalid token/],
    ['expired JWT', bearer(await token({ exp: Math.floor(Date.now() / 1000) - 3600 })), /token expired/],
    ['wrong audience', bearer(await token({ aud: 'someone-else' })), /aud claim is not accepted/],
    ['not Bearer', { authorization: 'Basic YWxpY2U6c2VjcmV0' }, /Bearer/],
  ]
  revokeApiKey(keysFile, dave.record.id)
  cases.push(['revoked API key', bearer(dave.key), /revoked API key/])
  for (const [what, headers, reason] of cases) {
    const response = await post(headers)
    t.equal(response.status, 401, what)
    const challenge = response.headers.get('www-authenticate') ?? ''
    t.match(challenge, /error="invalid_token"/, `${what}: invalid_token`)
    t.match(challenge, reason, `${what}: says why`)
  }
})

t.test('a key without the server in its scopes: 403 insufficient_scope', async (t) => {
  const response = await post(bearer(carol.key))
  t.equal(response.status, 403)
  t.match(response.headers.get('www-authenticate'), /error="insufficient_scope", scope="server:conformance"/)
})

t.test('the principal reaches the node; the token does not', async (t) => {
  const { client, transport } = await connectStreamable(url, { headers: bearer(alice.key) })
  t.teardown(() => client.close())
  t.ok((await client.listTools()).tools.length > 5, 'alice sees every tool')
  const session = network.nodes[0]!.sessions.get(transport.sessionId!)!
  t.equal(session.principal, 'key:alice')

  // Bob's token with Alice's session id: as good as an unknown session.
  const hijack = await post(
    { ...bearer(bob.key), 'mcp-session-id': transport.sessionId! },
    {
      jsonrpc: '2.0',
      id: 9,
      method: 'tools/list',
    },
  )
  t.equal(hijack.status, 404, "another principal cannot use alice's session")
})

t.test('a tool outside the scopes is hidden from tools/list and refused', async (t) => {
  const { client } = await connectStreamable(url, { headers: bearer(bob.key) })
  t.teardown(() => client.close())
  t.same(
    (await client.listTools()).tools.map((tool) => tool.name),
    ['test_simple_text'],
  )
  t.match(await client.callTool({ name: 'test_simple_text', arguments: {} }), { content: [{ type: 'text' }] })
  await t.rejects(client.callTool({ name: 'test_error_handling', arguments: {} }), {
    code: -32013,
    message: /tool test_error_handling of server conformance is not permitted to key:bob/,
  })
})

t.test('a JWT from the configured issuer works, with its scopes', async (t) => {
  const { client, transport } = await connectStreamable(url, {
    headers: bearer(await token({ sub: 'erin', scope: 'openid server:conformance' })),
  })
  t.teardown(() => client.close())
  t.ok((await client.listTools()).tools.length > 5)
  t.equal(network.nodes[0]!.sessions.get(transport.sessionId!)!.principal, 'jwt:erin')
  const narrow = await post(bearer(await token({ sub: 'frank', scope: 'server:else' })))
  t.equal(narrow.status, 403)
})

t.test('a gateway with no way to authenticate and no anonymous mode refuses to start', async (t) => {
  t.throws(() => new NexusGateway({ transport: 'memory' }), /auth: configure apiKeys or jwt/)
})

t.test('keys are created, listed and revoked with the nexus CLI; only their hash is stored', async (t) => {
  const nexus = (...args: string[]) =>
    execFileSync(process.execPath, [join(import.meta.dirname, '..', 'cli', 'nexus.ts'), 'keys', ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  const key = nexus(
    'create',
    '--keys-file',
    keysFile,
    '--principal',
    'grace',
    '--scope',
    'server:conformance',
  ).trim()
  t.match(key, /^nxk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
  // The secret is base64url and may itself contain '_': take everything after the id.
  const [, id, secret] = /^nxk_([0-9a-f]{16})_(.+)$/.exec(key) ?? []
  t.notOk(readFileSync(keysFile, 'utf8').includes(secret!), 'the secret is not in the file')
  t.match(nexus('list', '--keys-file', keysFile), new RegExp(`${id} {2}grace {2}server:conformance`))
  const { client } = await connectStreamable(url, { headers: bearer(key) })
  await client.close()
  nexus('revoke', id!, '--keys-file', keysFile)
  const refused = await post(bearer(key))
  t.equal(refused.status, 401, 'a revoked key is refused at once, without a restart')
})

t.test(
  'rate limits: 429 with Retry-After for the principal over its limit, nothing else disturbed',
  async (t) => {
    const limited = await startNetwork({
      nodes: 1,
      servers: [fixtureServerConfig()],
      gateway: {
        auth: { apiKeys: keysFile },
        limits: { requestsPerSecond: 1, burst: 4, sessionsPerPrincipal: 1 },
      },
    })
    t.teardown(limited.stop)
    const limitedUrl = limited.gateway.serverUrl('conformance')
    const heavy = createApiKey(keysFile, 'heavy', ['server:*'])
    const light = createApiKey(keysFile, 'light', ['server:*'])
    const { client, transport } = await connectStreamable(limitedUrl, { headers: bearer(heavy.key) })
    t.teardown(() => client.close())
    const second = await fetch(limitedUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...bearer(heavy.key),
      },
      body: JSON.stringify(initialize),
    })
    t.equal(second.status, 429, 'a second session is over the per-principal session limit')
    t.match(await second.json(), { error: { message: /key:heavy already holds 1 sessions/ } })
    // Ten requests at once against a bucket of at most four: most are over the rate, whatever the timing.
    const burst = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        fetch(limitedUrl, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-protocol-version': '2025-11-25',
            'mcp-session-id': transport.sessionId!,
            ...bearer(heavy.key),
          },
          body: JSON.stringify({ jsonrpc: '2.0', id: 100 + i, method: 'tools/list' }),
        }),
      ),
    )
    const refused = burst.filter((r) => r.status === 429)
    t.ok(refused.length >= 5, `${refused.length} of 10 requests over the rate got 429`)
    t.match(refused[0]!.headers.get('retry-after'), /^\d+$/, 'with Retry-After in seconds')
    t.match(await refused[0]!.json(), { error: { message: /more than 1 requests\/s/ } })
    const { client: other } = await connectStreamable(limitedUrl, { headers: bearer(light.key) })
    t.teardown(() => other.close())
    t.ok((await other.listTools()).tools.length > 0, 'another principal is not affected')
  },
)

t.test('no key, secret or token appears in any log line, even at debug level', async (t) => {
  const jwt = await token({ scope: 'server:conformance' })
  const { client } = await connectStreamable(url, { headers: bearer(jwt) })
  await client.callTool({ name: 'test_simple_text', arguments: {} })
  await client.close()
  const { client: keyed } = await connectStreamable(url, { headers: bearer(alice.key) })
  await keyed.listTools()
  await keyed.close()
  t.ok(logs.lines.length > 10, `${logs.lines.length} lines logged`)
  const text = logs.lines.map((l) => JSON.stringify(l)).join('\n')
  const secrets = { alice: alice.key, bob: bob.key, carol: carol.key, dave: dave.key, jwt }
  for (const [name, secret] of Object.entries(secrets))
    t.notOk(text.includes(secret), `${name}'s credential is not logged`)
  t.ok(text.includes('key:alice'), 'principals are logged, by name')
})
