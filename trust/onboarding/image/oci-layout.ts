import { createHash } from 'node:crypto'
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { canonicalJson } from '../../../protocol/canonical-json.ts'
import type { FileTree } from './file-tree.ts'
import { tarStream } from './tar-stream.ts'

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const

/** zlib's default level: a fixed level is part of what makes a layer's digest reproducible. */
const GZIP_LEVEL = 6

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
}

/** A layer written: its compressed blob's descriptor, and the digest of its uncompressed tar (`diff_id`). */
export interface Layer {
  descriptor: Descriptor
  diffId: string
  /** Whether it came from the cache (its tar matched one compressed before). */
  cached: boolean
}

/** Passes a stream through unchanged, hashing it on the way. */
function hashing(into: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      into.update(chunk)
      done(null, chunk)
    },
  })
}

/**
 * An OCI image layout folder (`oci-layout`, `blobs/sha256/…`, `index.json`): what `skopeo copy oci:<dir>:<tag>
 * docker://…` pushes and `umoci` unpacks. Blobs are content-addressed, so one folder holds many images and
 * shares what they have in common.
 */
export class OciLayout {
  readonly dir: string
  readonly #layerCache: string

  /** `layerCache`: compressed layers by the digest of their tar, so that an unchanged layer is compressed once. */
  constructor(dir: string, layerCache = join(homedir(), '.cache', 'mcp-nexus', 'oci-layers')) {
    this.dir = dir
    this.#layerCache = layerCache
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true })
    const marker = join(dir, 'oci-layout')
    if (!existsSync(marker)) writeFileSync(marker, canonicalJson({ imageLayoutVersion: '1.0.0' }))
    if (!existsSync(join(dir, 'index.json'))) this.#writeIndex([])
  }

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digest.replace(/^sha256:/, ''))
  }

  /** Stores bytes as a blob; returns its descriptor. */
  putBlob(mediaType: string, data: Buffer): Descriptor {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
    const path = this.blobPath(digest)
    if (!existsSync(path)) {
      writeFileSync(`${path}.partial`, data)
      renameSync(`${path}.partial`, path)
    }
    return { mediaType, digest, size: data.length }
  }

  /**
   * Writes a file tree as a gzip-compressed layer. The tar is reproducible (see `tarStream`); gzip at a fixed
   * level with no name or time in its header is too, for one zlib. A layer whose tar was compressed before is
   * taken from the cache instead of compressed again.
   */
  async putLayer(tree: FileTree): Promise<Layer> {
    mkdirSync(this.#layerCache, { recursive: true })
    const staging = join(this.#layerCache, `.tar-${process.pid}-${Date.now()}`)
    const tarHash = createHash('sha256')
    try {
      await pipeline(Readable.from(tarStream(tree)), hashing(tarHash), createWriteStream(staging))
      const diffId = `sha256:${tarHash.digest('hex')}`
      // Keyed by the compression too: a blob compressed otherwise is another blob.
      const cached = join(this.#layerCache, `${diffId.slice(7)}.gzip-${GZIP_LEVEL}.tar.gz`)
      const hit = existsSync(cached)
      if (!hit) {
        const partial = `${cached}.partial-${process.pid}`
        await pipeline(
          createReadStream(staging),
          createGzip({ level: GZIP_LEVEL }),
          createWriteStream(partial),
        )
        renameSync(partial, cached)
      }
      const blobHash = createHash('sha256')
      const partial = join(this.dir, 'blobs', `.layer-${process.pid}-${Date.now()}`)
      await pipeline(createReadStream(cached), hashing(blobHash), createWriteStream(partial))
      const digest = `sha256:${blobHash.digest('hex')}`
      const path = this.blobPath(digest)
      renameSync(partial, path)
      return {
        descriptor: { mediaType: MEDIA_TYPES.layer, digest, size: statSync(path).size },
        diffId,
        cached: hit,
      }
    } finally {
      rmSync(staging, { force: true })
    }
  }

  /** Names an image manifest in `index.json` by tag, replacing what the tag named before. */
  tag(manifest: Descriptor, tag: string): void {
    const others = this.manifests().filter(
      (m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag,
    )
    this.#writeIndex([...others, { ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }])
  }

  manifests(): Descriptor[] {
    return (JSON.parse(readFileSync(join(this.dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] })
      .manifests
  }

  /** The tag that names a manifest digest, if any. */
  tagOf(digest: string): string | undefined {
    return this.manifests().find((m) => m.digest === digest)?.annotations?.[
      'org.opencontainers.image.ref.name'
    ]
  }

  #writeIndex(manifests: Descriptor[]): void {
    const path = join(this.dir, 'index.json')
    writeFileSync(
      `${path}.partial`,
      canonicalJson({ schemaVersion: 2, mediaType: MEDIA_TYPES.index, manifests }),
    )
    renameSync(`${path}.partial`, path)
  }
}
