import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * Builds `kube-harness` (a real etcd and kube-apiserver from their Go modules, see `harness/main.go`) once per
 * machine: the binary is cached under the Kubernetes version and a hash of the harness sources, so a warm
 * machine pays nothing and a changed harness is rebuilt. The first build takes minutes; it prints progress.
 */

const HARNESS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'harness')

/** The Kubernetes version the harness builds (from its go.mod). */
export function kubernetesVersion(): string {
  const mod = readFileSync(join(HARNESS_DIR, 'go.mod'), 'utf8')
  const match = /k8s\.io\/kubernetes (v[0-9.]+)/.exec(mod)
  if (match === null) throw new Error('test/kube/harness/go.mod does not require k8s.io/kubernetes')
  return match[1]!
}

function cacheRoot(): string {
  return (
    process.env.NEXUS_KUBE_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'mcp-nexus', 'kube-harness')
  )
}

/** Where the binary of this harness version lives (whether or not it is built yet). */
export function harnessPath(): string {
  const sources = ['go.mod', 'go.sum', 'main.go']
    .map((file) => (existsSync(join(HARNESS_DIR, file)) ? readFileSync(join(HARNESS_DIR, file)) : ''))
    .join('\0')
  const digest = createHash('sha256').update(sources).digest('hex').slice(0, 12)
  return join(cacheRoot(), `${kubernetesVersion()}-${digest}`, 'kube-harness')
}

/** Why the Kubernetes tests cannot run here (no Go toolchain), or undefined when they can. */
export function goMissing(): string | undefined {
  const go = spawnSync('go', ['version'], { encoding: 'utf8' })
  if (go.error !== undefined || go.status !== 0)
    return 'Go is not installed (the Kubernetes tests build a real kube-apiserver and etcd with it)'
  return undefined
}

/** Builds the harness unless this version is cached; resolves with the binary's path. */
export async function ensureHarness(
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<string> {
  const target = harnessPath()
  if (existsSync(target)) return target
  const missing = goMissing()
  if (missing !== undefined) throw new Error(missing)
  mkdirSync(dirname(target), { recursive: true })
  const partial = `${target}.partial-${process.pid}`
  log(
    `building kube-apiserver ${kubernetesVersion()} and etcd from Go modules into ${dirname(target)} (once per machine; several minutes)`,
  )
  const started = Date.now()
  await new Promise<void>((resolve, reject) => {
    // -v names each package as it is compiled: the progress a first build shows.
    const build = spawn('go', ['build', '-v', '-trimpath', '-ldflags', '-s -w', '-o', partial, '.'], {
      cwd: HARNESS_DIR,
      stdio: ['ignore', 'inherit', 'pipe'],
      env: { ...process.env, GOFLAGS: '-mod=mod' },
    })
    let packages = 0
    let tail = ''
    build.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString()
      tail = (tail + text).slice(-4_000)
      for (const line of text.split('\n')) {
        if (line.trim() === '' || line.startsWith('go: downloading')) continue
        packages++
        if (packages % 200 === 0)
          log(`  … ${packages} packages compiled (${Math.round((Date.now() - started) / 1000)} s)`)
      }
    })
    build.on('error', reject)
    build.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`go build failed (${code}):\n${tail}`)),
    )
  })
  renameSync(partial, target)
  log(`built ${target} in ${Math.round((Date.now() - started) / 1000)} s`)
  return target
}
