import { open } from 'node:fs/promises'
import type { FileTree, TreeEntry } from './file-tree.ts'

const BLOCK = 512
/** Every entry's time: a layer must not depend on when, or on which machine, its files were written. */
export const LAYER_EPOCH = 0

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`
}

/** A PAX extended header record: `<length> <key>=<value>\n`, where the length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`
  const bytes = Buffer.byteLength(body)
  let length = bytes + 1
  while (length !== bytes + String(length).length) length = bytes + String(length).length
  return `${length}${body}`
}

function header(name: string, entry: TreeEntry | { type: 'pax' }, size: number): Buffer {
  const block = Buffer.alloc(BLOCK)
  const write = (text: string, offset: number, width: number) =>
    block.write(text, offset, Math.min(Buffer.byteLength(text), width), 'utf8')
  write(name, 0, 100)
  const mode = entry.type === 'pax' ? 0o644 : entry.type === 'symlink' ? 0o777 : entry.mode
  write(octal(mode, 8), 100, 8)
  write(octal(0, 8), 108, 8)
  write(octal(0, 8), 116, 8)
  write(octal(size, 12), 124, 12)
  write(octal(LAYER_EPOCH, 12), 136, 12)
  const type = { pax: 'x', dir: '5', file: '0', data: '0', symlink: '2' }[entry.type]
  write(type, 156, 1)
  if (entry.type === 'symlink') write(entry.target, 157, 100)
  write('ustar\0', 257, 6)
  write('00', 263, 2)
  write('root', 265, 32)
  write('root', 297, 32)
  // The checksum is computed with its own field as spaces.
  block.fill(' ', 148, 156)
  let sum = 0
  for (const byte of block) sum += byte
  write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8)
  return block
}

function padding(size: number): Buffer {
  const rest = size % BLOCK
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest)
}

/** What a header's fixed fields cannot hold (a long path or link target) goes before it in a PAX header. */
function* entryHeaders(path: string, entry: TreeEntry, size: number): Generator<Buffer> {
  const name = entry.type === 'dir' ? `${path}/` : path
  const long: string[] = []
  if (Buffer.byteLength(name) > 100) long.push(paxRecord('path', name))
  if (entry.type === 'symlink' && Buffer.byteLength(entry.target) > 100)
    long.push(paxRecord('linkpath', entry.target))
  if (long.length > 0) {
    const body = Buffer.from(long.join(''))
    yield header(`PaxHeaders/${name.slice(-80)}`, { type: 'pax' }, body.length)
    yield body
    yield padding(body.length)
  }
  yield header(name.slice(0, 100), entry, size)
}

/**
 * A file tree as a reproducible tar stream: entries in byte order of their paths, owned by root, with one fixed
 * time and normalized modes, so that the same files give the same bytes (and the same layer digest) on any
 * machine and at any time.
 */
export async function* tarStream(tree: FileTree): AsyncGenerator<Buffer> {
  for (const [path, entry] of tree.sorted()) {
    if (entry.type === 'file') {
      const handle = await open(entry.source, 'r')
      try {
        const { size } = await handle.stat()
        yield* entryHeaders(path, entry, size)
        let left = size
        while (left > 0) {
          const chunk = Buffer.allocUnsafe(Math.min(left, 1 << 20))
          const { bytesRead } = await handle.read(chunk, 0, chunk.length, size - left)
          if (bytesRead === 0) throw new Error(`${entry.source} shrank while it was being archived`)
          left -= bytesRead
          yield chunk.subarray(0, bytesRead)
        }
        yield padding(size)
      } finally {
        await handle.close()
      }
    } else if (entry.type === 'data') {
      yield* entryHeaders(path, entry, entry.data.length)
      yield entry.data
      yield padding(entry.data.length)
    } else yield* entryHeaders(path, entry, 0)
  }
  yield Buffer.alloc(BLOCK * 2)
}
