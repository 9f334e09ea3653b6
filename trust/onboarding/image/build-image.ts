import { statSync } from 'node:fs'
import {
  IMAGE_LAUNCH_COMMAND,
  POD_HOST_SERVER_ENV,
  POD_LAUNCH_ENV,
} from '../../../node/runtime/kubernetes/workload.ts'
import { canonicalJson } from '../../../protocol/canonical-json.ts'
import { NexusError } from '../../../protocol/errors.ts'
import { FileTree } from './file-tree.ts'
import { type Descriptor, type Layer, MEDIA_TYPES, OciLayout } from './oci-layout.ts'
import { addPodHost, IMAGE_PROJECT, POD_HOST_ENTRYPOINT } from './pod-host-files.ts'
import {
  addBaseFiles,
  addNodeRuntime,
  addPythonRuntime,
  addTreeLibraries,
  IMAGE_NODE,
} from './runtime-files.ts'

/** Where a server's tree is in its image, its launch file, and the variable through which the pod host finds it. */
export const IMAGE_SERVER_DIR = '/srv/server'
export const IMAGE_LAUNCH_FILE = `${IMAGE_SERVER_DIR}/launch.json`
/** The user every image runs as: the pods' `runAsUser`. */
export const IMAGE_USER = '65532:65532'

/** How the server starts inside its image (paths are the image's). */
export interface ImageLaunch {
  command: string
  args: string[]
  env: Record<string, string>
}

export interface ServerImageInput {
  id: string
  version: string
  /** `npm:…` or `pypi:…`: recorded as a label. */
  spec: string
  transport: 'stdio' | 'streamable-http'
  /** The installed tree to copy, and where in the image (under `/srv/server`). */
  tree: { from: string; to: string }
  /** Whether the image needs Python (a PyPI server). */
  python: boolean
  launch: ImageLaunch
  /** The manifest's own arguments and variable names: the image's default server when run alone. */
  manifestArgs: string[]
  env: string[]
  /** Where the image is to be pushed: `registry.example/mcp/<id>`. */
  repository: string
  /** The OCI layout folder the image is written into. */
  layout: string
  layerCache?: string
}

export interface BuiltImage {
  /** `oci:<repository>@sha256:…`: the manifest's `image`. */
  reference: string
  digest: string
  /** The tag naming it in the layout (`<id>-<version>`). */
  tag: string
  /** Compressed size of all its blobs (what a registry stores and a cluster pulls). */
  bytes: number
  layers: { name: string; digest: string; diffId: string; bytes: number; files: number; cached: boolean }[]
  /** Libraries the server's native code names that this machine lacks (a module that cannot load anywhere here). */
  unresolvedLibraries: string[]
}

const ARCHITECTURES: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
}

/** A tag from an id and a version: letters, digits, `_`, `.` and `-`, at most 128. */
function tagOf(id: string, version: string): string {
  return `${id}-${version}`.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 128)
}

/**
 * Builds a server's OCI image without a container daemon: a runtime layer (Node.js, and Python for a PyPI
 * server, with exactly the system libraries they load), this project's pod host (the entrypoint of a stdio
 * server's pod), and the server's locked tree with its launch. Every layer is a reproducible tar, and the
 * config carries no time, so the same inputs give the same digest. It runs as uid 65532 and needs nothing
 * writable but `/tmp`.
 */
export async function buildServerImage(input: ServerImageInput): Promise<BuiltImage> {
  const architecture = ARCHITECTURES[process.arch]
  if (architecture === undefined || process.platform !== 'linux')
    throw new NexusError(
      'INVALID_CONFIG',
      `images are built on Linux only (this is ${process.platform}/${process.arch})`,
    )
  const layout = new OciLayout(input.layout, input.layerCache)
  const trees: { name: string; tree: FileTree }[] = []
  const runtime = new FileTree()
  addBaseFiles(runtime)
  addNodeRuntime(runtime)
  trees.push({ name: 'runtime', tree: runtime })
  if (input.python) {
    const python = new FileTree()
    addPythonRuntime(python)
    trees.push({ name: 'python', tree: python })
  }
  const stdio = input.transport === 'stdio'
  if (stdio) {
    const podHost = new FileTree()
    addPodHost(podHost)
    trees.push({ name: 'pod-host', tree: podHost })
  }
  const server = new FileTree()
  server.hostDir(input.tree.from, input.tree.to)
  const unresolved = addTreeLibraries(server, input.tree.from)
  server.data(IMAGE_LAUNCH_FILE, `${JSON.stringify(input.launch, null, 2)}\n`)
  trees.push({ name: 'server', tree: server })

  const layers: (Layer & { name: string; files: number })[] = []
  for (const { name, tree } of trees)
    layers.push({ name, files: tree.size, ...(await layout.putLayer(tree)) })

  const defaultServer = {
    id: input.id,
    version: input.version,
    transport: 'stdio',
    command: IMAGE_LAUNCH_COMMAND,
    args: input.manifestArgs,
    passEnv: input.env,
  }
  const config = {
    architecture,
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config: {
      User: IMAGE_USER,
      // A stdio server's pod runs the pod host; a streamable-HTTP server is its own entrypoint.
      Entrypoint: stdio ? [IMAGE_NODE, POD_HOST_ENTRYPOINT] : [input.launch.command, ...input.launch.args],
      // Run alone, an HTTP server gets its manifest's arguments; a pod's args (the manifest's and the
      // operator's) replace them.
      ...(stdio ? {} : { Cmd: input.manifestArgs }),
      Env: [
        'PATH=/usr/local/bin:/usr/bin:/bin',
        'HOME=/tmp',
        'TMPDIR=/tmp',
        ...(stdio
          ? [
              `${POD_LAUNCH_ENV}=${IMAGE_LAUNCH_FILE}`,
              `${POD_HOST_SERVER_ENV}=${JSON.stringify(defaultServer)}`,
            ]
          : []),
        ...Object.entries(stdio ? {} : input.launch.env).map(([k, v]) => `${k}=${v}`),
      ],
      WorkingDir: IMAGE_SERVER_DIR,
      ExposedPorts: { [stdio ? '7800/tcp' : '8080/tcp']: {} },
      Labels: {
        'org.opencontainers.image.title': input.id,
        'org.opencontainers.image.version': input.version,
        'io.mcp-nexus.package': input.spec,
        'io.mcp-nexus.pod-host': stdio ? IMAGE_PROJECT : 'none',
      },
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({
      created: '1970-01-01T00:00:00Z',
      created_by: `mcp-nexus onboarding: ${l.name}`,
    })),
  }
  const configBlob = layout.putBlob(MEDIA_TYPES.config, Buffer.from(canonicalJson(config)))
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.manifest,
    config: configBlob,
    layers: layers.map((l) => l.descriptor),
  }
  const manifestBlob: Descriptor = layout.putBlob(MEDIA_TYPES.manifest, Buffer.from(canonicalJson(manifest)))
  const tag = tagOf(input.id, input.version)
  layout.tag(manifestBlob, tag)
  const bytes = [configBlob, manifestBlob, ...layers.map((l) => l.descriptor)].reduce(
    (sum, d) => sum + statSync(layout.blobPath(d.digest)).size,
    0,
  )
  return {
    reference: `oci:${input.repository}@${manifestBlob.digest}`,
    digest: manifestBlob.digest,
    tag,
    bytes,
    unresolvedLibraries: unresolved,
    layers: layers.map((l) => ({
      name: l.name,
      digest: l.descriptor.digest,
      diffId: l.diffId,
      bytes: l.descriptor.size,
      files: l.files,
      cached: l.cached,
    })),
  }
}
