import { createHash } from 'node:crypto'
import { lstat, readdir, readFile, readlink } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { gunzipSync } from 'node:zlib'

/**
 * The hash of a package's files: what a tarball unpacks to, and so what an installed copy must still contain.
 * Each regular file contributes `path NUL sha512(content)`, in byte order of path. A symbolic link counts as a
 * file whose content is its target, so that a link added after install changes the hash. An installed package's
 * own `node_modules` (its dependencies, installed by npm beside it) is not part of it.
 */
export type FileDigests = Map<string, string>

export function filesHash(digests: FileDigests): string {
  const hash = createHash('sha512')
  for (const path of [...digests.keys()].sort()) hash.update(`${path}\0${digests.get(path)}\n`)
  return `sha512-${hash.digest('base64')}`
}

function sha512Hex(bytes: Uint8Array | string): string {
  return createHash('sha512').update(bytes).digest('hex')
}

/** Digests of the files of an installed package directory. */
export async function directoryDigests(dir: string): Promise<FileDigests> {
  const digests: FileDigests = new Map()
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(join(dir, relative), { withFileTypes: true })
    for (const entry of entries) {
      const path = relative === '' ? entry.name : posix.join(relative, entry.name)
      if (relative === '' && entry.name === 'node_modules') continue
      const absolute = join(dir, path)
      if (entry.isSymbolicLink()) digests.set(path, sha512Hex(`symlink:${await readlink(absolute)}`))
      else if (entry.isDirectory()) await walk(path)
      else if (entry.isFile()) digests.set(path, sha512Hex(await readFile(absolute)))
      else digests.set(path, sha512Hex(`special:${(await lstat(absolute)).mode}`))
    }
  }
  await walk('')
  return digests
}

/** SHA-512 of a tarball in the npm registry's integrity format. */
export function tarballIntegrity(tarball: Uint8Array): string {
  return `sha512-${createHash('sha512').update(tarball).digest('base64')}`
}

function field(header: Uint8Array, offset: number, length: number): string {
  const bytes = header.subarray(offset, offset + length)
  const end = bytes.indexOf(0)
  return Buffer.from(end === -1 ? bytes : bytes.subarray(0, end)).toString('utf8')
}

function paxPath(data: Uint8Array): string | undefined {
  // Records are "<length> <key>=<value>\n".
  let rest = Buffer.from(data).toString('utf8')
  while (rest.length > 0) {
    const space = rest.indexOf(' ')
    const length = Number.parseInt(rest.slice(0, space), 10)
    if (!Number.isFinite(length) || length <= 0) return undefined
    const record = rest.slice(space + 1, length - 1)
    rest = rest.slice(length)
    const eq = record.indexOf('=')
    if (record.slice(0, eq) === 'path') return record.slice(eq + 1)
  }
  return undefined
}

/**
 * The files of an npm tarball (gzipped tar whose entries sit under one top folder, `package/`), as npm would
 * unpack them: regular files only, by path inside the package.
 */
export function tarballFiles(tarball: Uint8Array): Map<string, Uint8Array> {
  const tar = gunzipSync(tarball)
  const files = new Map<string, Uint8Array>()
  let offset = 0
  let longName: string | undefined
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512)
    if (header.every((b) => b === 0)) break
    const size = Number.parseInt(field(header, 124, 12).trim() || '0', 8)
    const type = String.fromCharCode(header[156]!)
    const data = tar.subarray(offset + 512, offset + 512 + size)
    offset += 512 + Math.ceil(size / 512) * 512
    if (type === 'x' || type === 'L') {
      longName = type === 'x' ? paxPath(data) : field(data, 0, data.length)
      continue
    }
    if (type === 'g') continue
    const prefix = field(header, 345, 155)
    const name = longName ?? (prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100))
    longName = undefined
    if (type !== '0' && type !== '\0' && type !== '7') continue
    const path = posix.normalize(name).split('/').slice(1).join('/')
    if (path === '' || path.startsWith('..')) continue
    files.set(path, data)
  }
  return files
}

export function digestsOf(files: Map<string, Uint8Array>): FileDigests {
  return new Map([...files].map(([path, data]) => [path, sha512Hex(data)]))
}

export function tarballDigests(tarball: Uint8Array): FileDigests {
  return digestsOf(tarballFiles(tarball))
}
