import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'

export const FIXTURE_PATH = join(import.meta.dirname, '..', 'fixtures', 'conformance-server.ts')

/** The conformance fixture as a node hosts it: a stdio server run by this Node.js. */
export const fixtureServerConfig = (id = 'conformance') => ({
  id,
  transport: 'stdio' as const,
  command: process.execPath,
  args: [FIXTURE_PATH],
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
})

/** Starts the fixture on its own, over streamable HTTP on a free loopback port: the direct baseline. */
export async function startDirectFixture(): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [FIXTURE_PATH, '--http', '0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
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
