import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { NexusError } from '../../protocol/errors.ts'

interface PackageJson {
  name?: string
  version?: string
  bin?: string | Record<string, string>
}

export interface ResolvedPackage {
  dir: string
  version: string
  /** Absolute path of the executable script. */
  binPath: string
}

/** Finds the directory of an installed npm package, even when its `exports` hide `package.json`. */
export function findPackageDir(name: string, searchFrom: string[]): string | undefined {
  for (const from of searchFrom) {
    const require = createRequire(join(from, 'noop.js'))
    for (const base of require.resolve.paths(name) ?? []) {
      const dir = join(base, name)
      if (existsSync(join(dir, 'package.json'))) return dir
    }
  }
  return undefined
}

/** Where packages are looked up: the working directory's node_modules, then this project's. */
export function defaultSearchPaths(): string[] {
  return [process.cwd(), join(dirname(new URL(import.meta.url).pathname), '..', '..')]
}

/** Resolves the executable of an installed npm package (its `bin`), as `npx` would but without the network. */
export function resolvePackageBin(name: string, bin?: string, searchFrom?: string[]): ResolvedPackage {
  const dir = findPackageDir(name, searchFrom ?? defaultSearchPaths())
  if (dir === undefined) {
    throw new NexusError('INVALID_CONFIG', `npm package ${name} is not installed (run npm install ${name})`)
  }
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson
  let relative: string | undefined
  if (typeof pkg.bin === 'string') relative = pkg.bin
  else if (pkg.bin !== undefined) {
    const entries = Object.entries(pkg.bin)
    relative = bin !== undefined ? pkg.bin[bin] : entries[0]?.[1]
  }
  if (relative === undefined) {
    throw new NexusError(
      'INVALID_CONFIG',
      `npm package ${name} has no executable${bin ? ` named ${bin}` : ''}`,
    )
  }
  return { dir, version: pkg.version ?? '0.0.0', binPath: join(dir, relative) }
}
