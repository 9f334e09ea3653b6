import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import t from 'tap'
import { parseGatewayConfig } from '../gateway/config.ts'
import { GatewayErrorCode } from '../gateway/jsonrpc.ts'
import { parseNodeConfig } from '../node/config.ts'
import { NexusNode } from '../node/nexus-node.ts'
import { applyEnvOverrides } from '../protocol/config-env.ts'
import { newPeerKeyText } from '../protocol/peer-identity.ts'
import { connectStreamable, startSlowCall } from './support/clients.ts'
import { failoverServerConfig } from './support/fixture-server.ts'
import { withTimeout } from './support/wait.ts'

t.test('environment variables override configuration fields, nested and typed', async (t) => {
  const config = { http: { host: '127.0.0.1', port: 8080 }, auth: { anonymous: false } }
  const env = {
    NEXUS_GATEWAY_HTTP__PORT: '9000',
    NEXUS_GATEWAY_AUTH__API_KEYS: '/etc/nexus/keys.json',
    NEXUS_GATEWAY_BOOTSTRAP: '["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW"]',
    NEXUS_GATEWAY_LIMITS__SESSIONS_PER_PRINCIPAL: '8',
    NEXUS_LOG_LEVEL: 'debug',
    NEXUS_NODE_MAX_SESSIONS: '12',
  }
  t.same(applyEnvOverrides(config, 'NEXUS_GATEWAY_', env), {
    http: { host: '127.0.0.1', port: 9000 },
    auth: { anonymous: false, apiKeys: '/etc/nexus/keys.json' },
    bootstrap: ['/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW'],
    limits: { sessionsPerPrincipal: 8 },
  })
  t.same(config.http.port, 8080, 'the input is not changed')
  t.throws(
    () => applyEnvOverrides(config, 'NEXUS_GATEWAY_', { NEXUS_GATEWAY_HTTP__: '1' }),
    /malformed variable name/,
  )
  t.throws(
    () => applyEnvOverrides(config, 'NEXUS_GATEWAY_', { NEXUS_GATEWAY_HTTP__PORT__X: '1' }),
    /NEXUS_GATEWAY_HTTP__PORT__X: http\.port\.x does not name a nested field/,
  )
})

/** Runs `nexus-gateway` as operators do, and waits for it to say where it serves (or to exit). */
function gatewayProcess(args: string[], env: Record<string, string>) {
  const child = spawn(
    process.execPath,
    [join(import.meta.dirname, '..', 'cli', 'nexus-gateway.ts'), ...args],
    {
      env: { ...process.env, NEXUS_LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  const serving = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      const match = /serving MCP at (http:\/\/\S+)\/mcp/.exec(stdout)
      if (match) resolve(match[1]!)
    })
    child.once('exit', (code) =>
      reject(Object.assign(new Error(`exited with ${code}: ${stderr}`), { code, stderr })),
    )
  })
  return { child, serving, output: () => ({ stdout, stderr }) }
}

t.test('a gateway process: YAML plus environment; SIGTERM stops it cleanly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-config-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, 'transport: tcp\nhttp:\n  port: 1\nauth:\n  anonymous: false\n')
  const gateway = gatewayProcess(['--config', file], {
    NEXUS_GATEWAY_HTTP__PORT: '0',
    NEXUS_GATEWAY_AUTH__ANONYMOUS: 'true',
  })
  const url = await gateway.serving
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'the environment overrode the file (port 0, anonymous)')
  t.equal((await fetch(`${url}/healthz`)).status, 200)
  const exited = once(gateway.child, 'exit')
  gateway.child.kill('SIGTERM')
  const [code] = await exited
  t.equal(code, 0, 'SIGTERM: a clean exit')
  t.match(gateway.output().stderr, /SIGTERM: shutting down/)

  const invalid = gatewayProcess(['--config', file], { NEXUS_GATEWAY_HTTP__PORT: '"eighty"' })
  await t.rejects(invalid.serving, { code: 1, stderr: /invalid gateway configuration[\s\S]*http\.port/ })
})

t.test('SIGTERM with calls running: each gets its answer or an error, and the process exits 0', async (t) => {
  const node = new NexusNode({
    transport: 'tcp',
    servers: [failoverServerConfig()],
    trust: { allowUnverified: true },
  })
  await node.start()
  t.teardown(() => node.stop())
  const gateway = gatewayProcess(['--bootstrap', node.multiaddrs[0]!.toString()], {
    NEXUS_GATEWAY_HTTP__PORT: '0',
    NEXUS_GATEWAY_TRUST__ALLOW_UNVERIFIED: 'true',
    NEXUS_GATEWAY_AUTH__ANONYMOUS: 'true',
    NEXUS_GATEWAY_SHUTDOWN_TIMEOUT_MS: '2000',
  })
  const url = await gateway.serving
  // Another process: its view of the network shows only through its HTTP API, so the test asks it.
  t.ok(await waitForServerList(url, 'failover'), 'the gateway process routes to the node')
  const { client } = await connectStreamable(`${url}/mcp/failover`)
  const { client: other } = await connectStreamable(`${url}/mcp/failover`)
  const quick = startSlowCall(client, 'slow_read', 500)
  const long = startSlowCall(client, 'slow_write', 30_000)
  const elsewhere = startSlowCall(other, 'slow_read', 30_000)
  await withTimeout(
    Promise.all([quick.running, long.running, elsewhere.running]),
    15_000,
    'the three calls to start',
  )
  const exited = once(gateway.child, 'exit')
  gateway.child.kill('SIGTERM')
  const [quickResult, longResult, elsewhereResult] = await withTimeout(
    Promise.all([quick.outcome, long.outcome, elsewhere.outcome]),
    15_000,
    'every call to get an answer',
  )
  t.match(
    quickResult,
    { ok: true, value: { content: [{ text: /slow_read done/ }] } },
    'a call that ends in time is answered',
  )
  for (const [name, result] of Object.entries({ long: longResult, elsewhere: elsewhereResult })) {
    t.ok(!result.ok && result.error instanceof McpError, `${name}: an error reaches the client`)
    t.match((result as { error: McpError }).error, {
      code: GatewayErrorCode.SessionClosed,
      message: /the gateway shut down before the server answered/,
    })
  }
  const [code] = await withTimeout(exited, 15_000, 'the gateway process to exit')
  t.equal(code, 0, 'a clean exit')
  await Promise.all([client.close(), other.close()])
})

/** Asks a gateway process for its servers, every 100 ms, until it lists `serverId`; false after 20 s. */
async function waitForServerList(url: string, serverId: string): Promise<boolean> {
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    const listed = (await (await fetch(`${url}/servers`)).json()) as { servers?: { id: string }[] }
    if (listed.servers?.some((s) => s.id === serverId)) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

t.test('a node with an identity file keeps its peer id across restarts; a bad file is named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-identity-'))
  const file = join(dir, 'node-0')
  writeFileSync(file, `${await newPeerKeyText()}\n`)
  const peerIds: string[] = []
  for (let run = 0; run < 2; run++) {
    const node = new NexusNode({ transport: 'memory', identityFile: file })
    await node.start()
    peerIds.push(node.peerId)
    await node.stop()
  }
  t.equal(peerIds[0], peerIds[1], 'the same peer id both times')
  writeFileSync(file, 'not a key\n')
  await t.rejects(new NexusNode({ transport: 'memory', identityFile: file }).start(), {
    code: 'INVALID_CONFIG',
    message: new RegExp(`the identity file ${file} does not hold a peer key`),
  })
  await t.rejects(new NexusNode({ transport: 'memory', identityFile: join(dir, 'missing') }).start(), {
    code: 'INVALID_CONFIG',
    message: /cannot read the identity file .*missing/,
  })
})

t.test(
  'the Kubernetes runtime settings are strict, and an unloadable kubeconfig is named at start',
  async (t) => {
    t.throws(
      () => new NexusNode({ runtime: { kind: 'kubernetes', namespace: 'x', nameSpace: 'y' } as never }),
      /invalid node configuration:[\s\S]*nameSpace/,
      'a misspelt field is refused',
    )
    t.throws(
      () => new NexusNode({ runtime: { kind: 'kubernetes', namespace: 'Not_A_Namespace' } }),
      /invalid node configuration:[\s\S]*runtime\.namespace/,
      'a namespace that is not a DNS label is refused',
    )
    const node = new NexusNode({
      transport: 'memory',
      runtime: { kind: 'kubernetes', namespace: 'x', kubeconfig: '/nonexistent/kubeconfig' },
    })
    await t.rejects(node.start(), {
      code: 'INVALID_CONFIG',
      message: /cannot load the Kubernetes configuration/,
    })
  },
)

t.test(
  'connection trimming: defaults, off with false, and contradictory or misspelt marks refused',
  async (t) => {
    t.same(
      parseNodeConfig({}).connectionTrim,
      { highWater: 48, lowWater: 24, idleMs: 60_000 },
      'on by default',
    )
    t.equal(
      parseGatewayConfig({ connectionTrim: false }).connectionTrim,
      false,
      'false keeps every connection',
    )
    t.same(parseGatewayConfig({ connectionTrim: { highWater: 200 } }).connectionTrim, {
      highWater: 200,
      lowWater: 24,
      idleMs: 60_000,
    })
    t.throws(
      () => parseNodeConfig({ connectionTrim: { highWater: 10, lowWater: 20 } }),
      /invalid node configuration:[\s\S]*lowWater must not be above highWater[\s\S]*connectionTrim\.lowWater/,
    )
    t.throws(
      () => parseGatewayConfig({ connectionTrim: { highwater: 10 } }),
      /invalid gateway configuration:[\s\S]*highwater[\s\S]*connectionTrim/,
      'a misspelt field is refused',
    )
  },
)
