import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { applyEnvOverrides } from '../protocol/config-env.ts'

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
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'gateway', 'cli.ts'), ...args], {
    env: { ...process.env, NEXUS_LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
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
