import { lstatSync, readdirSync, readlinkSync } from 'node:fs'
import { dirname, join, posix, relative, resolve } from 'node:path'

/** One entry of an image's file system: its mode is normalized (0755 or 0644), its owner is always root. */
export type TreeEntry =
  | { type: 'dir'; mode: number }
  | { type: 'file'; mode: number; source: string }
  | { type: 'data'; mode: number; data: Buffer }
  | { type: 'symlink'; target: string }

/** Executable on the host (any x bit) is 0755 in the image, anything else 0644: umask and owner do not leak in. */
function normalizedMode(hostMode: number): number {
  return hostMode & 0o111 ? 0o755 : 0o644
}

/**
 * The files of one image layer, by their path in the image (no leading slash). Host files are referenced, not
 * read, until the layer is written. Adding the same path twice in different shapes is an error rather than a
 * silent choice.
 */
export class FileTree {
  readonly #entries = new Map<string, TreeEntry>()

  get size(): number {
    return this.#entries.size
  }

  has(path: string): boolean {
    return this.#entries.has(clean(path))
  }

  /** The entries in byte order of their paths: a stable order for a reproducible layer. */
  sorted(): [string, TreeEntry][] {
    return [...this.#entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  }

  dir(path: string, mode = 0o755): void {
    const key = clean(path)
    if (key === '') return
    this.dir(posix.dirname(key) === '.' ? '' : posix.dirname(key))
    this.#set(key, { type: 'dir', mode })
  }

  file(path: string, source: string, hostMode: number): void {
    this.#parent(path)
    this.#set(clean(path), { type: 'file', mode: normalizedMode(hostMode), source })
  }

  data(path: string, data: string | Buffer, mode = 0o644): void {
    this.#parent(path)
    this.#set(clean(path), { type: 'data', mode, data: Buffer.from(data) })
  }

  symlink(path: string, target: string): void {
    this.#parent(path)
    this.#set(clean(path), { type: 'symlink', target })
  }

  /**
   * Mirrors a host path at the same place in the image, every symbolic link on the way included (so that
   * `/lib64/ld-linux-x86-64.so.2` on a merged-/usr system brings `/lib64 → usr/lib64` and what it points to).
   */
  hostPath(path: string, depth = 0): void {
    if (depth > 40) throw new Error(`too many symbolic links resolving ${path}`)
    const parts = resolve(path).split('/').filter(Boolean)
    let current = '/'
    for (const [i, part] of parts.entries()) {
      const next = join(current, part)
      const stat = lstatSync(next)
      if (stat.isSymbolicLink()) {
        const target = readlinkSync(next)
        this.symlink(next, target)
        this.hostPath(join(resolve(current, target), ...parts.slice(i + 1)), depth + 1)
        return
      }
      if (i === parts.length - 1) {
        if (stat.isDirectory()) this.dir(next)
        else if (stat.isFile()) this.file(next, next, stat.mode)
        else throw new Error(`${next} is neither a file, a folder nor a link`)
      }
      current = next
    }
  }

  /**
   * Copies a host folder into the image at `into`. `skip` leaves out what the image does not need (relative
   * paths); links pointing outside the folder bring their targets along, mirrored at their host places.
   */
  hostDir(source: string, into: string, skip: (relative: string) => boolean = () => false): void {
    this.dir(into)
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const host = join(dir, entry.name)
        const rel = relative(source, host)
        if (skip(rel)) continue
        const at = posix.join(into, rel.split('\\').join('/'))
        if (entry.isSymbolicLink()) {
          const target = readlinkSync(host)
          this.symlink(at, target)
          const resolved = resolve(dirname(host), target)
          if (relative(source, resolved).startsWith('..')) this.hostPath(resolved)
        } else if (entry.isDirectory()) {
          this.dir(at)
          walk(host)
        } else if (entry.isFile()) this.file(at, host, lstatSync(host).mode)
      }
    }
    walk(source)
  }

  #parent(path: string): void {
    const parent = posix.dirname(clean(path))
    if (parent !== '.') this.dir(parent)
  }

  #set(key: string, entry: TreeEntry): void {
    const existing = this.#entries.get(key)
    if (existing !== undefined) {
      if (existing.type === 'dir' && entry.type === 'dir') return
      if (existing.type === entry.type && sameEntry(existing, entry)) return
      throw new Error(`the image path /${key} is added twice, as a ${existing.type} and as a ${entry.type}`)
    }
    this.#entries.set(key, entry)
  }
}

function sameEntry(a: TreeEntry, b: TreeEntry): boolean {
  if (a.type === 'file' && b.type === 'file') return a.source === b.source
  if (a.type === 'symlink' && b.type === 'symlink') return a.target === b.target
  if (a.type === 'data' && b.type === 'data') return a.data.equals(b.data) && a.mode === b.mode
  return false
}

function clean(path: string): string {
  return posix.normalize(`/${path}`).slice(1).replace(/\/$/, '')
}
