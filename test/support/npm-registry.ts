import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { tarballIntegrity } from '../../trust/package-files.ts'

/** A package to publish: its package.json fields and its files. */
export interface FixturePackage {
  name: string
  version: string
  files: Record<string, string>
  dependencies?: Record<string, string>
  scripts?: Record<string, string>
  bin?: string
  license?: string
  /** Serve a tarball other than the one the registry's integrity names (a tampered package). */
  tamper?: boolean
}

/** An advisory the registry reports for a package (what npm's bulk advisory endpoint answers). */
export interface FixtureAdvisory {
  title: string
  severity: 'low' | 'moderate' | 'high' | 'critical'
  vulnerable_versions: string
  url: string
}

/**
 * A real npm registry for tests, on loopback: packuments, tarballs (built with `tar` from the given files, in
 * npm's `package/` layout) and the bulk advisory endpoint `npm audit` reads. npm installs from it as from
 * registry.npmjs.org; it plays the public registry, which tests must not publish to.
 */
export async function startNpmRegistry(
  packages: FixturePackage[],
  advisories: Record<string, FixtureAdvisory[]> = {},
): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-registry-'))
  const tarballs = new Map<string, Buffer>()
  const packuments = new Map<
    string,
    { name: string; versions: Record<string, unknown>; 'dist-tags': Record<string, string> }
  >()
  let base = ''
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://registry')
    if (req.method === 'POST' && url.pathname === '/-/npm/v1/security/advisories/bulk') {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const asked = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, string[]>
        const found = Object.fromEntries(
          Object.keys(asked)
            .filter((n) => advisories[n])
            .map((n) => [n, advisories[n]]),
        )
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(found))
      })
      return
    }
    if (url.pathname.startsWith('/-/tarballs/')) {
      const tarball = tarballs.get(decodeURIComponent(url.pathname.slice('/-/tarballs/'.length)))
      if (tarball === undefined) return res.writeHead(404).end()
      return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(tarball)
    }
    const packument = packuments.get(decodeURIComponent(url.pathname.slice(1)))
    if (packument === undefined)
      return res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"Not found"}')
    const body = JSON.stringify(packument).replaceAll('__BASE__', base)
    res.writeHead(200, { 'content-type': 'application/json' }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  for (const pkg of packages) {
    const root = join(dir, `${pkg.name.replace('/', '+')}-${pkg.version}`)
    const packageDir = join(root, 'package')
    mkdirSync(packageDir, { recursive: true })
    const manifest = {
      name: pkg.name,
      version: pkg.version,
      type: 'module',
      license: pkg.license ?? 'MIT',
      ...(pkg.bin === undefined ? {} : { bin: pkg.bin }),
      ...(pkg.dependencies === undefined ? {} : { dependencies: pkg.dependencies }),
      ...(pkg.scripts === undefined ? {} : { scripts: pkg.scripts }),
    }
    writeFileSync(join(packageDir, 'package.json'), JSON.stringify(manifest, null, 2))
    for (const [file, text] of Object.entries(pkg.files)) {
      mkdirSync(join(packageDir, file, '..'), { recursive: true })
      writeFileSync(join(packageDir, file), text)
    }
    const file = `${pkg.name.replace('/', '+')}-${pkg.version}.tgz`
    execFileSync('tar', ['-czf', join(root, file), '-C', root, 'package'])
    const tarball = readFileSync(join(root, file))
    const integrity = tarballIntegrity(tarball)
    if (pkg.tamper) {
      writeFileSync(join(packageDir, 'injected.js'), 'process.env.PWNED = "1"\n')
      execFileSync('tar', ['-czf', join(root, file), '-C', root, 'package'])
    }
    tarballs.set(file, readFileSync(join(root, file)))
    const packument = packuments.get(pkg.name) ?? { name: pkg.name, versions: {}, 'dist-tags': {} }
    packument.versions[pkg.version] = {
      ...manifest,
      dist: { tarball: `__BASE__/-/tarballs/${encodeURIComponent(file)}`, integrity },
    }
    packument['dist-tags'].latest = pkg.version
    packuments.set(pkg.name, packument)
  }
  return {
    url: base,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  }
}
