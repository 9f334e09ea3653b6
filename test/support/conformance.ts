import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface ScenarioResult {
  scenario: string
  passed: boolean
  failures: string[]
}

const require = createRequire(import.meta.url)
const conformanceCli = join(
  require.resolve('@modelcontextprotocol/conformance/package.json'),
  '..',
  'dist',
  'index.js',
)

/**
 * Runs the official conformance suite's active server scenarios against a URL and reads the checks it saved.
 * A scenario passes when none of its checks is a FAILURE (warnings are the suite's SHOULDs).
 */
export async function runConformance(url: string): Promise<ScenarioResult[]> {
  const outputDir = mkdtempSync(join(tmpdir(), 'nexus-conformance-'))
  try {
    const child = spawn(process.execPath, [conformanceCli, 'server', '--url', url, '-o', outputDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000)
    })
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    const results = readdirSync(outputDir).map((dir) => {
      const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T.*$/, '')
      const checks = JSON.parse(readFileSync(join(outputDir, dir, 'checks.json'), 'utf8')) as {
        id: string
        status: string
        errorMessage?: string
      }[]
      const failures = checks
        .filter((c) => c.status === 'FAILURE')
        .map((c) => `${c.id}: ${c.errorMessage ?? ''}`)
      return { scenario, passed: failures.length === 0, failures }
    })
    if (results.length === 0) throw new Error(`conformance suite ran no scenario (exit ${code}): ${stderr}`)
    return results.sort((a, b) => a.scenario.localeCompare(b.scenario))
  } finally {
    rmSync(outputDir, { recursive: true, force: true })
  }
}
