import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Manifest } from '../protocol/manifest.ts'
import { DEFAULT_POLICY, loadPolicy } from '../trust/onboarding/findings.ts'
import { DEFAULT_IMAGE_REPOSITORY, onboard } from '../trust/onboarding/onboard.ts'
import { renderReport } from '../trust/onboarding/report.ts'
import { onboardUpgrade } from '../trust/onboarding/upgrade.ts'
import { DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { readWhitelistFile } from '../trust/whitelist-file.ts'

/** The options `nexus onboard` reads. */
export interface OnboardValues {
  /** `--upgrade <id>`: the server whose signed manifest (in `--whitelist`, the embedded one by default) is the previous version. */
  upgrade?: string
  whitelist?: string
  id?: string
  bin?: string
  arg?: string[]
  env?: string[]
  'operator-args'?: boolean
  egress?: string[]
  policy?: string
  registry?: string
  output?: string
  'image-layout'?: string
  'image-repository'?: string
  'no-image'?: boolean
}

/** The OCI layout images are written into unless `--image-layout` says otherwise. */
export const DEFAULT_IMAGE_LAYOUT = 'nexus-images'

/** The signed manifest of the server's latest version in a whitelist file: what an upgrade is compared with. */
function previousManifest(id: string, whitelist = DEFAULT_WHITELIST_PATH): Manifest {
  const versions = readWhitelistFile(whitelist).manifests.filter((s) => s.manifest.id === id)
  const latest = versions.at(-1)?.manifest
  if (latest === undefined) throw new Error(`${whitelist} has no manifest of ${id} to upgrade from`)
  return latest
}

/**
 * `nexus onboard <npm:name@version>`: runs the pipeline and writes, into the output folder, the manifest to
 * sign (`<id>-<version>.manifest.json`) and the report (`.report.md` for the curator, `.report.json` for
 * tools). Exits 0 when approved, 3 when the policy blocks it (the report says what).
 */
export async function onboardCommand(spec: string | undefined, values: OnboardValues): Promise<number> {
  if (spec === undefined) {
    process.stderr.write(
      values.upgrade === undefined
        ? 'nexus onboard: which server? (npm:<name>@<exact version>)\n'
        : 'nexus onboard --upgrade <id> <version>: which version?\n',
    )
    return 2
  }
  const egress = values.egress === undefined ? false : values.egress.includes('*') ? true : values.egress
  const policy = values.policy === undefined ? DEFAULT_POLICY : loadPolicy(values.policy)
  const image = values['no-image']
    ? undefined
    : {
        layout: values['image-layout'] ?? DEFAULT_IMAGE_LAYOUT,
        repository: values['image-repository'] ?? DEFAULT_IMAGE_REPOSITORY,
      }
  const report =
    values.upgrade === undefined
      ? await onboard({
          spec,
          id: values.id,
          bin: values.bin,
          args: values.arg,
          env: values.env,
          operatorArgs: values['operator-args'],
          egress,
          registry: values.registry,
          policy,
          image,
        })
      : await onboardUpgrade(previousManifest(values.upgrade, values.whitelist), spec, {
          registry: values.registry,
          policy,
          image,
        })
  const out = values.output ?? '.'
  mkdirSync(out, { recursive: true })
  const base = join(out, `${report.manifest.id}-${report.manifest.version}`)
  writeFileSync(`${base}.manifest.json`, `${JSON.stringify(report.manifest, null, 2)}\n`)
  writeFileSync(`${base}.report.md`, renderReport(report))
  writeFileSync(`${base}.report.json`, `${JSON.stringify(report, null, 2)}\n`)
  process.stdout.write(
    `${report.verdict}: ${report.findings.length} finding(s), ${report.blocking.length} blocking\n` +
      `  ${base}.manifest.json\n  ${base}.report.md\n  ${base}.report.json\n`,
  )
  if (report.image !== undefined)
    process.stdout.write(
      `  image ${report.image.reference} (${(report.image.bytes / 2 ** 20).toFixed(1)} MiB) in ${image!.layout}, ` +
        `tag ${report.image.tag}\n  push: skopeo copy --preserve-digests oci:${image!.layout}:${report.image.tag} ` +
        `docker://${report.image.reference.slice(4).replace(/@sha256:.*/, '')}:${report.image.tag}\n`,
    )
  for (const f of report.blocking) process.stdout.write(`  blocks: [${f.severity}] ${f.id}: ${f.title}\n`)
  return report.verdict === 'approved' ? 0 : 3
}
