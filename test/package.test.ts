import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

// The project as users get it: `npm pack` (whose prepack step compiles to dist/), the tarball installed into a
// fresh folder, the commands run from node_modules/.bin, and a consumer's own test file that starts a whole
// network through `mcp-nexus/testing` and calls a server through its gateway — all outside this checkout, so
// nothing resolves back to the sources.

const execute = promisify(execFile)
/**
 * Runs a command as a user would, outside the test runner: tap's process tracking puts its loader hooks back into
 * every child's NODE_OPTIONS, so a shell drops them before it runs the command.
 */
const run = (command: string, args: string[], options: Parameters<typeof execute>[2]) =>
  execute('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$0" "$@"', command, ...args], options)
const root = join(import.meta.dirname, '..')
const scratch = mkdtempSync(join(tmpdir(), 'nexus-package-'))
// The commands' `#!/usr/bin/env node` must find a Node.js new enough (this one), as a user's PATH would; and
// nothing of the test runner's loader hooks (NODE_OPTIONS) may reach what runs outside it.
const outside = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !/^(?:NODE_OPTIONS$|TAP|_TAPJS)/.test(name)),
)
const env = { ...outside, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` }

t.test('packed, installed elsewhere, its commands run and its testing helper starts a network', async (t) => {
  const packed = await run('npm', ['pack', '--pack-destination', scratch, '--silent'], {
    cwd: root,
    env,
    maxBuffer: 64 << 20,
    timeout: 300_000,
  })
  const tarball = readdirSync(scratch).find((f) => f.endsWith('.tgz'))
  t.ok(tarball, `npm pack made ${String(packed.stdout).trim().split('\n').at(-1)}`)
  const consumer = join(scratch, 'consumer')
  mkdirSync(consumer)
  writeFileSync(
    join(consumer, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  )
  await run(
    'npm',
    ['install', join(scratch, tarball!), '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts'],
    { cwd: consumer, env, maxBuffer: 64 << 20, timeout: 600_000 },
  )
  const bin = (name: string) => join(consumer, 'node_modules', '.bin', name)
  for (const [command, usage] of [
    ['nexus', /Usage: nexus <command>/],
    ['nexus-node', /Usage: nexus-node/],
    ['nexus-gateway', /Usage: nexus-gateway/],
    ['nexus-pod-host', /Usage: nexus-pod-host/],
  ] as const) {
    const { stdout } = await run(bin(command), ['--help'], { env, cwd: consumer })
    t.match(stdout, usage, `${command} --help`)
  }
  writeFileSync(
    join(consumer, 'network.test.js'),
    `import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { startNetwork } from 'mcp-nexus/testing'

const network = await startNetwork({
  servers: [{ id: 'everything', transport: 'stdio', package: '@modelcontextprotocol/server-everything' }],
})
try {
  const client = new Client({ name: 'consumer', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(network.gateway.serverUrl('everything'))))
  const result = await client.callTool({ name: 'echo', arguments: { message: 'from a consumer' } })
  console.log(JSON.stringify(result.content))
  await client.close()
} finally {
  await network.stop()
}
`,
  )
  const { stdout } = await run(process.execPath, ['network.test.js'], {
    cwd: consumer,
    env: { ...env, NEXUS_LOG_LEVEL: 'warn' },
    timeout: 120_000,
  })
  t.match(stdout, /from a consumer/, 'the consumer called a server through its own network')
})
