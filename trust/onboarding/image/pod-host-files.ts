import { existsSync, readFileSync } from 'node:fs'
import { dirname, extname, join, relative, resolve } from 'node:path'
import { findPackageDir } from '../../../node/runtime/package-bin.ts'
import type { FileTree } from './file-tree.ts'

/** This project's root, whose sources the pod host is made of. */
const PROJECT = resolve(import.meta.dirname, '..', '..', '..')
/** Where the pod host lives in an image, and its entrypoint. */
export const IMAGE_PROJECT = '/opt/mcp-nexus'
/** `.ts` in a checkout, `.js` in the installed package: the image carries what this copy of the project is. */
const EXT = extname(import.meta.filename)
export const POD_HOST_ENTRYPOINT = `${IMAGE_PROJECT}/cli/nexus-pod-host${EXT}`

/** Imports that stay at run time (`import type` is erased by type stripping, so it brings nothing). */
const IMPORT =
  /(?:^|\n)\s*(?:import(?!\s+type\s)[^'"`;]*?from\s*|import\s*|export\s[^'"`;]*?from\s*)['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g

function packageNameOf(specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!
}

interface PackageJson {
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
}

/**
 * The pod host as an image carries it: the project's source files it imports, followed from its entrypoint,
 * and each npm package they use with everything that package depends on (whole package folders: what a
 * package loads at run time cannot be known from outside it). Nothing of the tests, the gateway or libp2p
 * comes along unless the pod host imports it.
 */
export function addPodHost(tree: FileTree): { files: number; packages: string[] } {
  const sources = new Set<string>()
  const packages = new Map<string, string>()
  const addPackage = (name: string, from: string) => {
    const dir = findPackageDir(name, [from])
    // Declarations only (`@types/…`) never load at run time.
    if (dir === undefined || name.startsWith('@types/')) return
    const key = relative(PROJECT, dir)
    if (packages.has(key)) return
    packages.set(key, name)
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson
    for (const dependency of Object.keys({
      ...manifest.dependencies,
      ...manifest.optionalDependencies,
      ...manifest.peerDependencies,
    }))
      addPackage(dependency, dir)
  }
  const follow = (file: string) => {
    if (sources.has(file)) return
    sources.add(file)
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const specifier = match[1] ?? match[2]!
      if (specifier.startsWith('node:')) continue
      if (specifier.startsWith('.')) {
        const target = resolve(dirname(file), specifier)
        if (!existsSync(target))
          throw new Error(`${relative(PROJECT, file)} imports ${specifier}, which is missing`)
        follow(target)
      } else addPackage(packageNameOf(specifier), dirname(file))
    }
  }
  follow(join(PROJECT, 'cli', `nexus-pod-host${EXT}`))
  for (const file of sources) tree.file(join(IMAGE_PROJECT, relative(PROJECT, file)), file, 0o644)
  tree.file(POD_HOST_ENTRYPOINT, join(PROJECT, 'cli', `nexus-pod-host${EXT}`), 0o755)
  // Type stripping needs ES modules; the project's own package.json also names its version.
  const project = JSON.parse(readFileSync(join(PROJECT, 'package.json'), 'utf8')) as { version: string }
  tree.data(
    join(IMAGE_PROJECT, 'package.json'),
    `${JSON.stringify({ name: 'mcp-nexus-pod-host', version: project.version, private: true, type: 'module' }, null, 2)}\n`,
  )
  for (const key of packages.keys())
    tree.hostDir(join(PROJECT, key), join(IMAGE_PROJECT, key), (rel) => /(?:^|\/)\.cache(?:\/|$)/.test(rel))
  return { files: sources.size, packages: [...new Set(packages.values())].sort() }
}
