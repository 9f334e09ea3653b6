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
const cliOf = (pkg: string) => join(require.resolve(`${pkg}/package.json`), '..', 'dist', 'index.js')
/** The suite's 0.1 line (the 2025-11-25 scenarios) and its 0.2 line, which holds the 2026-07-28 requirements. */
const SUITES = {
  '2025-11-25': { cli: cliOf('@modelcontextprotocol/conformance'), args: [] as string[] },
  '2026-07-28': {
    cli: cliOf('@modelcontextprotocol/conformance-2026'),
    args: ['--requirements', '2026-07-28'],
  },
}

/**
 * Runs the official conformance suite's active server scenarios against a URL and reads the checks it saved.
 * A scenario passes when none of its checks is a FAILURE (warnings are the suite's SHOULDs).
 */
export async function runConformance(
  url: string,
  revision: keyof typeof SUITES = '2025-11-25',
): Promise<ScenarioResult[]> {
  const outputDir = mkdtempSync(join(tmpdir(), 'nexus-conformance-'))
  const suite = SUITES[revision]
  try {
    const child = spawn(
      process.execPath,
      [suite.cli, 'server', '--url', url, ...suite.args, '-o', outputDir],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
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
