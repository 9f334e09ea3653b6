import { NexusError } from '../../../protocol/errors.ts'
import { manifestImage } from '../../../protocol/manifest.ts'
import type { RuntimeServer } from '../runtime.ts'

/** `registry/repository@sha256:<64 hex>`: an image by content, which no one can move under the node. */
const PINNED_IMAGE = /^[a-z0-9][a-z0-9._\-/:]*@sha256:[0-9a-f]{64}$/

/**
 * The image a server runs from, pinned by digest: the manifest's own `oci:` package or built `image`, or the
 * operator's mapping (by `id@version`, `id` or manifest hash) for a manifest that is an npm package. A tag, or no image
 * at all, is refused like any other trust failure: the node will not run what it cannot name exactly.
 */
export function imageOf(server: RuntimeServer, images: Record<string, string>): string {
  const { id, version } = server.config
  const own = server.manifest === undefined ? undefined : manifestImage(server.manifest)
  if (own !== undefined) return `${own.image}@${own.digest}`
  const key = [`${id}@${version}`, id, server.manifestHash].find((k) => images[k] !== undefined)
  if (key === undefined)
    throw new NexusError(
      'IMAGE_NOT_PINNED',
      `server ${id}@${version} has no image: its manifest names none (an oci: package or an image built by ` +
        `nexus onboard), and runtime.images maps none ` +
        `for "${id}@${version}", "${id}" or its manifest hash`,
    )
  const image = images[key]!
  if (!PINNED_IMAGE.test(image))
    throw new NexusError(
      'IMAGE_NOT_PINNED',
      `server ${id}@${version}: image "${image}" (runtime.images["${key}"]) is not pinned by digest; ` +
        'give it as registry/repository@sha256:<digest>, never a tag',
    )
  return image
}
