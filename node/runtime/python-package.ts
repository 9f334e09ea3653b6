import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { NexusError } from '../../protocol/errors.ts'
import { type Manifest, manifestPackage } from '../../protocol/manifest.ts'

const run = promisify(execFile)

/** A PyPI server installed for a node: where, and how to start its console script. */
export interface InstalledPython {
  python: string
  target: string
  module: string
  func: string
}

/** Distribution names compare case-insensitively, with `-`, `_` and `.` alike (PEP 503). */
export function normalizeDistName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-')
}

/** The Python that runs servers: `python3` on PATH, by its real path (the sandbox binds its installation). */
export async function pythonExecutable(): Promise<string> {
  try {
    const { stdout } = await run('python3', ['-c', 'import sys; print(sys.executable)'])
    return realpathSync(stdout.trim())
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `PyPI servers need python3 on PATH: ${(err as Error).message}`)
  }
}

/** The console scripts of the distribution `name` installed in `target`, from its entry points. */
export function consoleScripts(target: string, name: string): Map<string, { module: string; func: string }> {
  const wanted = normalizeDistName(name)
  const scripts = new Map<string, { module: string; func: string }>()
  for (const entry of readdirSync(target)) {
    if (!entry.endsWith('.dist-info')) continue
    const metadata = readFileSync(join(target, entry, 'METADATA'), 'utf8')
    const declared = /^Name:\s*(.+)$/m.exec(metadata)?.[1]?.trim()
    if (declared === undefined || normalizeDistName(declared) !== wanted) continue
    const file = join(target, entry, 'entry_points.txt')
    if (!existsSync(file)) continue
    let section = ''
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const header = /^\[(.+)\]$/.exec(line.trim())
      if (header) section = header[1]!
      const script = /^\s*([^=\s]+)\s*=\s*([\w.]+):([\w.]+)/.exec(line)
      if (section === 'console_scripts' && script)
        scripts.set(script[1]!, { module: script[2]!, func: script[3]! })
    }
  }
  return scripts
}

/** The console script a manifest names (`bin`), or the distribution's only one. */
export function chooseScript(
  scripts: Map<string, { module: string; func: string }>,
  name: string,
  bin: string | undefined,
): { module: string; func: string } {
  if (bin !== undefined) {
    const chosen = scripts.get(bin)
    if (chosen === undefined)
      throw new NexusError(
        'INVALID_CONFIG',
        `${name} has no console script ${bin} (it has ${[...scripts.keys()].join(', ') || 'none'})`,
      )
    return chosen
  }
  if (scripts.size !== 1)
    throw new NexusError(
      'INVALID_CONFIG',
      `${name} has ${scripts.size} console scripts (${[...scripts.keys()].join(', ')}); the manifest must name one in bin`,
    )
  return [...scripts.values()][0]!
}

/**
 * Installs a PyPI manifest's locked tree for this node, once: pip with `--require-hashes` and `--no-deps`
 * installs exactly the distributions the signed lock names, each checked against its sha256, into a folder
 * of the node's own (`~/.cache/mcp-nexus/python/<id>-<version>-<lock digest>`, or under
 * `NEXUS_PYTHON_CACHE`). A distribution whose hash differs fails the install, and the server is refused.
 */
export async function ensurePythonPackage(manifest: Manifest): Promise<InstalledPython> {
  const ref = manifestPackage(manifest)
  if (ref.kind !== 'pypi') throw new NexusError('INVALID_CONFIG', `${manifest.id} is not a PyPI package`)
  const lock = `${(manifest.pythonLock ?? []).join('\n')}\n`
  const digest = createHash('sha256').update(lock).digest('hex').slice(0, 16)
  const cache = process.env.NEXUS_PYTHON_CACHE ?? join(homedir(), '.cache', 'mcp-nexus', 'python')
  const target = join(cache, `${manifest.id}-${manifest.version}-${digest}`)
  const python = await pythonExecutable()
  if (!existsSync(join(target, '.installed'))) {
    mkdirSync(cache, { recursive: true })
    const staging = `${target}.staging-${process.pid}`
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(staging, { recursive: true })
    const lockfile = join(staging, '.lock.txt')
    writeFileSync(lockfile, lock)
    try {
      await run(
        python,
        [
          '-m',
          'pip',
          'install',
          '--quiet',
          '--no-deps',
          '--require-hashes',
          '--no-compile',
          '--disable-pip-version-check',
          '--target',
          staging,
          '-r',
          lockfile,
        ],
        { maxBuffer: 16 << 20, timeout: 600_000 },
      )
    } catch (err) {
      rmSync(staging, { recursive: true, force: true })
      const stderr = (err as { stderr?: string }).stderr ?? (err as Error).message
      const tampered = /THESE PACKAGES DO NOT MATCH THE HASHES/.test(stderr)
      throw new NexusError(
        tampered ? 'PACKAGE_TAMPERED' : 'INVALID_CONFIG',
        `${manifest.id}@${manifest.version}: pip could not install its locked tree: ${stderr.trim().split('\n').slice(-4).join(' ')}`,
      )
    }
    writeFileSync(join(staging, '.installed'), new Date().toISOString())
    rmSync(target, { recursive: true, force: true })
    renameSync(staging, target)
  }
  const script = chooseScript(consoleScripts(target, ref.name), ref.name, manifest.bin)
  return { python, target, ...script }
}
