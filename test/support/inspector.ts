import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
/** The MCP Inspector the compatibility matrix was measured with. */
export const INSPECTOR_VERSION = '2.12.0'

/**
 * The MCP Inspector's command, installed once per machine and version under `~/.cache/mcp-nexus/` (its web UI
 * pulls in much that the project does not need, so it is not a dependency). Installed without scripts.
 */
export async function inspectorBin(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = join(homedir(), '.cache', 'mcp-nexus', `inspector-${INSPECTOR_VERSION}`)
  const bin = join(dir, 'node_modules', '.bin', 'mcp-inspector')
  if (existsSync(bin)) return bin
  const staging = `${dir}.staging-${process.pid}`
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { recursive: true })
  writeFileSync(join(staging, 'package.json'), JSON.stringify({ name: 'inspector-cache', private: true }))
  await run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--ignore-scripts',
      `@modelcontextprotocol/inspector@${INSPECTOR_VERSION}`,
    ],
    { cwd: staging, env, maxBuffer: 64 << 20, timeout: 600_000 },
  )
  rmSync(dir, { recursive: true, force: true })
  renameSync(staging, dir)
  return bin
}
