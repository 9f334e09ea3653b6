import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { hasCommand } from '../../scripts/apt-install.ts'
import { OciLayout } from '../../trust/onboarding/image/oci-layout.ts'

const run = promisify(execFile)

/** Set by `.ci/run`: the image tests must run their images, and a machine that cannot fails. */
export const OCI_REQUIRED = process.env.NEXUS_REQUIRE_OCI === '1'
/** The OCI runtime the tests run images with: runc, the reference one (crun refuses hybrid cgroup machines). */
export const OCI_RUNTIME = process.env.NEXUS_OCI_RUNTIME ?? 'runc'
const PREFIX = 'nexus-test-'

/** Why images cannot be run here, or undefined. */
export function ociUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `images run on Linux only (this is ${process.platform})`
  if (process.getuid?.() !== 0)
    return `${OCI_RUNTIME} needs root to run images as uid 65532 (this is not root)`
  const missing = [OCI_RUNTIME, 'umoci'].filter((command) => !hasCommand(command))
  if (missing.length > 0)
    return `${missing.join(' and ')} not installed (npm test's set-up installs them as root)`
  return undefined
}

/** Runs `suite` when images can run here; otherwise skips it loudly, or fails when `.ci/run` requires it. */
export async function ociSuite(name: string, suite: () => Promise<void>): Promise<void> {
  const unavailable = ociUnavailable()
  if (unavailable === undefined) return suite()
  process.stderr.write(`\n!! The image tests cannot run their images: ${unavailable}.\n\n`)
  if (OCI_REQUIRED) t.fail(`running images is required here (NEXUS_REQUIRE_OCI=1) but cannot: ${unavailable}`)
  else t.test(name, { skip: `cannot run images here: ${unavailable}` }, async () => {})
}

/** The parts of an image's config a runtime needs. */
export interface ImageConfig {
  User?: string
  Entrypoint?: string[]
  Cmd?: string[]
  Env?: string[]
  WorkingDir?: string
  Labels?: Record<string, string>
}

export interface UnpackedImage {
  rootfs: string
  config: ImageConfig
  dispose(): void
}

/** Unpacks an image of an OCI layout (by manifest digest) with umoci, into a folder of its own. */
export async function unpackImage(layoutDir: string, digest: string): Promise<UnpackedImage> {
  const layout = new OciLayout(layoutDir)
  const tag = layout.tagOf(digest)
  if (tag === undefined) throw new Error(`${layoutDir} has no image ${digest}`)
  const bundle = mkdtempSync(join(tmpdir(), 'nexus-image-'))
  rmSync(bundle, { recursive: true })
  await run('umoci', ['unpack', '--image', `${layoutDir}:${tag}`, bundle], { maxBuffer: 16 << 20 })
  const manifest = JSON.parse(readFileSync(layout.blobPath(digest), 'utf8')) as { config: { digest: string } }
  const config = JSON.parse(readFileSync(layout.blobPath(manifest.config.digest), 'utf8')) as {
    config: ImageConfig
  }
  return {
    rootfs: join(bundle, 'rootfs'),
    config: config.config,
    dispose: () => rmSync(bundle, { recursive: true, force: true }),
  }
}

export interface ContainerOptions {
  rootfs: string
  args: string[]
  env: string[]
  cwd: string
  uid: number
  gid: number
  hostname: string
  /** A writable tmpfs at /tmp (the pods' emptyDir), in MiB; the root stays read-only. */
  tmpMiB?: number
  memoryMiB?: number
  cpu?: number
}

/**
 * A container run by the OCI runtime from an unpacked root, read-only, as an unprivileged user with no
 * capabilities, in its own pid, ipc, uts and mount namespaces. It shares the machine's network: the actor's pods
 * all stand at the machine's address (EndpointSlices need one), each on a port of its own.
 */
export class Container {
  readonly id = `${PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`
  readonly child: ChildProcess
  readonly #bundle: string

  constructor(options: ContainerOptions) {
    this.#bundle = mkdtempSync(join(tmpdir(), 'nexus-bundle-'))
    mkdirSync(this.#bundle, { recursive: true })
    writeFileSync(join(this.#bundle, 'config.json'), JSON.stringify(runtimeSpec(options)))
    this.child = spawn(OCI_RUNTIME, ['run', '--bundle', this.#bundle, this.id], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  }

  async stop(): Promise<void> {
    const exited = this.child.exitCode !== null || this.child.signalCode !== null
    const gone = exited ? Promise.resolve() : once(this.child, 'exit').then(() => {})
    await run(OCI_RUNTIME, ['kill', this.id, 'KILL']).catch(() => {})
    await gone
    await run(OCI_RUNTIME, ['delete', '--force', this.id]).catch(() => {})
    rmSync(this.#bundle, { recursive: true, force: true })
  }

  /** Removes containers a test process that died left behind (their ids carry its pid). */
  static async sweep(): Promise<void> {
    const { stdout } = await run(OCI_RUNTIME, ['list', '--quiet']).catch(() => ({ stdout: '' }))
    for (const id of stdout.split('\n').filter((line) => line.startsWith(PREFIX))) {
      const pid = Number(id.slice(PREFIX.length).split('-')[0])
      let alive = true
      try {
        process.kill(pid, 0)
      } catch {
        alive = false
      }
      if (!alive) await run(OCI_RUNTIME, ['delete', '--force', id]).catch(() => {})
    }
  }
}

function runtimeSpec(options: ContainerOptions): Record<string, unknown> {
  const resources: Record<string, unknown> = {
    devices: [{ allow: false, access: 'rwm' }],
  }
  if (options.memoryMiB !== undefined) resources.memory = { limit: options.memoryMiB * 1024 * 1024 }
  if (options.cpu !== undefined)
    resources.cpu = { period: 100_000, quota: Math.max(1_000, Math.round(options.cpu * 100_000)) }
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: options.uid, gid: options.gid },
      args: options.args,
      env: options.env,
      cwd: options.cwd,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }],
      noNewPrivileges: true,
    },
    root: { path: options.rootfs, readonly: true },
    hostname: options.hostname.slice(0, 63),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/tmp',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=1777', `size=${(options.tmpMiB ?? 64) * 1024}k`],
      },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      resources,
      maskedPaths: [
        '/proc/kcore',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/sched_debug',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  }
}
