import { OciLayout } from '../../trust/onboarding/image/oci-layout.ts'
import { Container, type UnpackedImage, unpackImage } from '../support/oci-runtime.ts'

/** The parts of a pod's container the kubelet's part needs to run it from its image. */
export interface ImageContainer {
  image?: string
  args?: string[]
  resources?: { limits?: { cpu?: string; memory?: string } }
}

function cpuOf(quantity: string | undefined): number | undefined {
  if (quantity === undefined) return undefined
  return quantity.endsWith('m') ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity)
}

function mebibytesOf(quantity: string | undefined): number | undefined {
  if (quantity === undefined) return undefined
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity)
  if (match === null) throw new Error(`memory "${quantity}" is not in Mi or Gi`)
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1)
}

/**
 * The kubelet's part for images this machine has: a pod whose image is in a local OCI layout (by digest, as
 * `nexus onboard` builds it) runs as a container of the real OCI runtime — the image's entrypoint, user and
 * variables, the pod's variables over them, its limits, a read-only root and a tmpfs at /tmp — instead of a
 * plain process. Images are unpacked once each.
 */
export class OciPods {
  readonly #layout: OciLayout
  readonly #unpacked = new Map<string, Promise<UnpackedImage>>()

  constructor(layoutDir: string) {
    this.#layout = new OciLayout(layoutDir)
  }

  /** The image's manifest digest when this layout holds it. */
  digestOf(image: string | undefined): string | undefined {
    const digest = /@(sha256:[0-9a-f]{64})$/.exec(image ?? '')?.[1]
    return digest !== undefined && this.#layout.tagOf(digest) !== undefined ? digest : undefined
  }

  /** Runs a pod's container; resolves once the pod host in it says its port. */
  async start(
    name: string,
    container: ImageContainer,
    env: Record<string, string>,
    extraArgs: string[],
  ): Promise<{ container: Container; port: number }> {
    const digest = this.digestOf(container.image)
    if (digest === undefined) throw new Error(`no local image for ${container.image}`)
    let unpacking = this.#unpacked.get(digest)
    if (unpacking === undefined) {
      unpacking = unpackImage(this.#layout.dir, digest)
      this.#unpacked.set(digest, unpacking)
    }
    const image = await unpacking
    const [uid, gid] = (image.config.User ?? '0:0').split(':').map(Number)
    const merged = new Map<string, string>()
    for (const entry of image.config.Env ?? []) {
      const at = entry.indexOf('=')
      merged.set(entry.slice(0, at), entry.slice(at + 1))
    }
    for (const [key, value] of Object.entries(env)) merged.set(key, value)
    const limits = container.resources?.limits
    const running = new Container({
      rootfs: image.rootfs,
      args: [...(image.config.Entrypoint ?? []), ...(container.args ?? image.config.Cmd ?? []), ...extraArgs],
      env: [...merged].map(([key, value]) => `${key}=${value}`),
      cwd: image.config.WorkingDir ?? '/',
      uid: uid ?? 0,
      gid: gid ?? 0,
      hostname: name,
      memoryMiB: mebibytesOf(limits?.memory),
      cpu: cpuOf(limits?.cpu),
    })
    running.child.stderr!.pipe(process.stderr)
    const port = await new Promise<number>((resolve, reject) => {
      let out = ''
      running.child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        const match = /listening on (\d+)/.exec(out)
        if (match !== null) resolve(Number(match[1]))
      })
      running.child.once('exit', (code) =>
        reject(new Error(`container ${name} exited (${code}) before listening`)),
      )
    })
    return { container: running, port }
  }

  async dispose(): Promise<void> {
    for (const unpacking of this.#unpacked.values()) (await unpacking.catch(() => undefined))?.dispose()
    this.#unpacked.clear()
  }
}
