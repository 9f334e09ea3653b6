import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'

export const FIXTURE_PATH = join(import.meta.dirname, '..', 'fixtures', 'conformance-server.ts')

/**
 * The conformance fixture imports the gateway's event store, so its sandbox sees the project's sources
 * (read-only): a server's own files, as for an npm package its `node_modules`.
 */
const PROJECT_SOURCES = [{ path: join(import.meta.dirname, '..', '..'), mode: 'ro' as const }]

/** The conformance fixture as a node hosts it: a stdio server run by this Node.js. */
export const fixtureServerConfig = (id = 'conformance') => ({
  id,
  transport: 'stdio' as const,
  command: process.execPath,
  args: [FIXTURE_PATH],
  binds: PROJECT_SOURCES,
})

/** A server whose tools take as long as asked (`slow_read`, `slow_write`, with progress at the start). */
export const failoverServerConfig = () => ({
  id: 'failover',
  transport: 'stdio' as const,
  command: process.execPath,
  args: [join(import.meta.dirname, '..', 'fixtures', 'failover-server.ts')],
  warmPool: 1,
})

/** The conformance fixture over streamable HTTP, started by the node with its port in PORT. */
export const fixtureHttpServerConfig = (id = 'conformance-http') => ({
  id,
  transport: 'streamable-http' as const,
  command: process.execPath,
  args: [FIXTURE_PATH, '--http'],
  binds: PROJECT_SOURCES,
})

export const MODERN_FIXTURE_PATH = join(import.meta.dirname, '..', 'fixtures', 'modern-server.ts')

/**
 * Starts a fixture on its own, over streamable HTTP on a free loopback port: the direct baseline. The legacy
 * conformance fixture by default; `modern` for the SDK v2 one.
 */
export async function startDirectFixture(
  which: 'legacy' | 'modern' = 'legacy',
): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const child: ChildProcess =
    which === 'legacy'
      ? spawn(process.execPath, [FIXTURE_PATH, '--http', '0'], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(process.execPath, [MODERN_FIXTURE_PATH], {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { ...process.env, PORT: '0' },
        })
  const url = await new Promise<string>((resolve, reject) => {
    let output = ''
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /listening on (\S+)/.exec(output)
      if (match) resolve(match[1]!)
    })
    child.once('exit', (code) => reject(new Error(`fixture exited with code ${code}: ${output}`)))
  })
  return {
    url,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    },
  }
}

/** The SDK v2 fixture (revision 2026-07-28 natively, and the legacy era), started by the node on its PORT. */
/**
 * The SDK v2 fixture as a hosted server: both eras by default; `modernOnly` makes it refuse legacy requests (a
 * server of the modern era alone), `eras` declares its eras in the configuration instead of their being asked.
 */
export const modernFixtureConfig = (
  id = 'modern',
  options: { modernOnly?: boolean; eras?: ('legacy' | 'modern')[] } = {},
) => ({
  id,
  transport: 'streamable-http' as const,
  command: process.execPath,
  args: [MODERN_FIXTURE_PATH],
  env: (options.modernOnly ? { MODERN_ONLY: '1' } : {}) as Record<string, string>,
  portEnv: 'PORT',
  path: '/mcp',
  ...(options.eras === undefined ? {} : { eras: options.eras }),
})
