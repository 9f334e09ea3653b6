import { execFileSync } from 'node:child_process'
import { readdirSync, realpathSync } from 'node:fs'
import { join } from 'node:path'
import { NexusError } from '../../../protocol/errors.ts'
import type { FileTree } from './file-tree.ts'

/** Where the image's interpreters are: fixed, so a server's launch reads the same in every image. */
export const IMAGE_NODE = '/usr/local/bin/node'
export const IMAGE_PYTHON = '/usr/local/bin/python3'

/**
 * The shared libraries `binaries` load, their loader included, as `ldd` lists them (it follows the whole
 * chain). A static binary has none.
 */
export function sharedLibraries(binaries: string[], missing?: string[]): string[] {
  const found = new Set<string>()
  for (const binary of binaries) {
    let out: string
    try {
      out = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (err) {
      const text = `${(err as { stdout?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`
      if (/not a dynamic executable|statically linked/.test(text)) continue
      throw new NexusError(
        'INVALID_CONFIG',
        `cannot list the libraries of ${binary} (ldd: ${text.trim() || (err as Error).message})`,
      )
    }
    for (const line of out.split('\n')) {
      if (/not found/.test(line) && missing !== undefined) missing.push(`${binary}: ${line.trim()}`)
      else if (/not found/.test(line))
        throw new NexusError('INVALID_CONFIG', `${binary} needs a library this machine lacks: ${line.trim()}`)
      const path = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1]
      if (path !== undefined) found.add(path)
    }
  }
  return [...found].sort()
}

/** Node.js (the one running this pipeline, which nodes use to run servers too) and its libraries. */
export function addNodeRuntime(tree: FileTree): void {
  const node = realpathSync(process.execPath)
  tree.file(IMAGE_NODE, node, 0o755)
  for (const library of sharedLibraries([node])) tree.hostPath(library)
}

/** Native code a package tree carries: Python extension modules, Node.js addons, bundled libraries. */
const NATIVE = /\.(?:so(?:\.[0-9.]+)?|node)$/

/**
 * The system libraries the native code of a server's tree loads (`pydantic_core`'s extension needs librt, say),
 * mirrored at their host places; libraries the tree bundles itself are already in it. What `ldd` cannot find
 * is returned, for the report: such a module cannot load here either.
 */
export function addTreeLibraries(tree: FileTree, root: string): string[] {
  const natives: string[] = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.isFile() && NATIVE.test(entry.name)) natives.push(path)
    }
  }
  walk(root)
  const missing: string[] = []
  for (const library of sharedLibraries(natives, missing))
    if (!library.startsWith(`${root}/`)) tree.hostPath(library)
  return missing
}

/** Parts of the standard library no server imports: tests, GUI toolkits, the installer's wheels, caches. */
const PYTHON_SKIP =
  /^(?:test|idlelib|tkinter|turtledemo|ensurepip|lib2to3|pydoc_data|site-packages|dist-packages|config-[^/]+)(?:\/|$)|(?:^|\/)__pycache__(?:\/|$)|\.pyc$/

/**
 * The `python3` on PATH (as nodes run PyPI servers with it): its executable at `/usr/local/bin/python3` and at
 * its own place (where it finds its prefix), its standard library, and every library it and its extension
 * modules load.
 */
export function addPythonRuntime(tree: FileTree): { version: string } {
  let info: { executable: string; stdlib: string; version: string }
  try {
    info = JSON.parse(
      execFileSync(
        'python3',
        [
          '-c',
          'import json, sys, sysconfig; print(json.dumps({"executable": sys.executable, "stdlib": sysconfig.get_paths()["stdlib"], "version": "%d.%d" % sys.version_info[:2]}))',
        ],
        { encoding: 'utf8' },
      ),
    )
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `a PyPI server's image needs python3: ${(err as Error).message}`)
  }
  const executable = realpathSync(info.executable)
  tree.hostPath(executable)
  tree.symlink(IMAGE_PYTHON, executable)
  tree.hostDir(info.stdlib, info.stdlib, (rel) => PYTHON_SKIP.test(rel))
  const dynload = join(info.stdlib, 'lib-dynload')
  const extensions = readdirSync(dynload)
    .filter((f) => f.endsWith('.so'))
    .map((f) => join(dynload, f))
  for (const library of sharedLibraries([executable, ...extensions])) tree.hostPath(library)
  return { version: info.version }
}

/** The unprivileged user every server runs as (as in the pods' security context), and a writable /tmp. */
export function addBaseFiles(tree: FileTree): void {
  tree.data(
    'etc/passwd',
    'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n',
  )
  tree.data('etc/group', 'root:x:0:\nnonroot:x:65532:\n')
  tree.dir('tmp', 0o1777)
  tree.dir('proc')
  tree.dir('dev')
  tree.dir('sys')
}
