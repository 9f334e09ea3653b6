import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NexusError } from '../../protocol/errors.ts'
import { type Manifest, parseManifest, parsePackageRef } from '../../protocol/manifest.ts'
import { type DependencySummary, defaultServerId } from './candidate.ts'
import { type DynamicResult, dynamicChecks } from './dynamic-checks.ts'
import { blocking, DEFAULT_POLICY, type Finding, type OnboardingPolicy, type Stage } from './findings.ts'
import { type BuiltImage, buildServerImage } from './image/build-image.ts'
import { npmCandidate } from './npm-candidate.ts'
import { pypiCandidate } from './pypi-candidate.ts'
import { checkTools } from './tool-checks.ts'
import { toolDigests } from './tool-digest.ts'

export interface OnboardOptions {
  /** `npm:<name>@<exact version>` or `pypi:<name>==<exact version>`. */
  spec: string
  id?: string
  bin?: string
  args?: string[]
  /** Variables the server may receive (their values are the operator's). */
  env?: string[]
  operatorArgs?: boolean
  /** Where the server may connect: nowhere (default), anywhere, or the hosts listed. */
  egress?: boolean | string[]
  /** The npm registry to resolve from (and whose advisory data to read); npm's own by default. */
  registry?: string
  policy?: OnboardingPolicy
  /**
   * Containerize an approved server: its OCI image is written into the `layout` folder (an OCI image layout,
   * pushed with `skopeo copy oci:<layout>:<tag> docker://<repository>`), and the manifest names it by digest.
   */
  image?: { layout: string; repository?: string; layerCache?: string }
}

/** Where images are pushed unless the curator says otherwise: `--image-repository`. */
export const DEFAULT_IMAGE_REPOSITORY = 'registry.example/mcp-nexus'

/** What a curator reads before signing: the verdict, each stage's findings and timings, and the manifest. */
export interface OnboardingReport {
  spec: string
  verdict: 'approved' | 'blocked'
  /** The findings that block under the policy (empty when approved). */
  blocking: Finding[]
  findings: Finding[]
  stages: { stage: Stage; ms: number }[]
  dependencies: DependencySummary
  dynamic: Omit<DynamicResult, 'findings' | 'tools'> & {
    tools: { name: string; digest: string; readOnly: boolean; description?: string }[]
  }
  permissions: { env: string[]; egress: boolean | string[]; operatorArgs: boolean }
  /** The image built for an approved server (when asked for): its reference, layers and size. */
  image?: BuiltImage
  policy: OnboardingPolicy
  /** The manifest to sign, tools pinned, resources measured. */
  manifest: Manifest
}

/** Memory to reserve for an instance: one and a half times the peak seen, in steps of 64 MiB, at least 128. */
function memoryFor(peakMiB: number | undefined): number {
  if (peakMiB === undefined || peakMiB === 0) return 256
  return Math.max(128, Math.ceil((peakMiB * 1.5) / 64) * 64)
}

/** `npm:` or `pypi:`, named in a clear error otherwise. */
function packageKind(spec: string): 'npm' | 'pypi' {
  let kind: string
  try {
    kind = parsePackageRef(spec).kind
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot onboard ${spec}: ${(err as Error).message}`)
  }
  if (kind !== 'npm' && kind !== 'pypi')
    throw new NexusError(
      'INVALID_CONFIG',
      `cannot onboard ${spec}: only npm: and pypi: packages are onboarded`,
    )
  return kind
}

/**
 * The onboarding pipeline for an npm or PyPI server: resolve and pin the whole tree, check it statically, run the
 * server and check what it does, pin its tools, and write the manifest a curator signs — with the report
 * that says why it passes or what blocks it.
 */
export async function onboard(options: OnboardOptions): Promise<OnboardingReport> {
  const policy = options.policy ?? DEFAULT_POLICY
  const stages: { stage: Stage; ms: number }[] = []
  const timed = async <T>(stage: Stage, work: () => Promise<T> | T): Promise<T> => {
    const started = performance.now()
    try {
      return await work()
    } finally {
      stages.push({ stage, ms: Math.round(performance.now() - started) })
    }
  }
  const workDir = mkdtempSync(join(tmpdir(), 'nexus-onboard-'))
  try {
    const kind = packageKind(options.spec)
    const candidate =
      kind === 'pypi'
        ? await pypiCandidate(options, workDir, timed)
        : await npmCandidate(options, workDir, timed)
    const findings: Finding[] = [...candidate.findings]
    const id = options.id ?? defaultServerId(candidate.name)
    const dynamic = await timed('dynamic', () => dynamicChecks(candidate.launch, id, policy, candidate.binds))
    findings.push(...dynamic.findings)
    findings.push(...(await timed('tools', () => checkTools(dynamic.tools))))
    const created = await candidate.manifest({
      id,
      memoryMiB: memoryFor(dynamic.peakMemoryMiB),
      notes: [`onboarded by the pipeline: ${findings.length} finding(s), none blocking under its policy`],
    })
    const egress = options.egress ?? false
    const pinned = parseManifest({
      ...created,
      ...(egress === false ? {} : { egress }),
      tools: toolDigests(dynamic.tools),
    })
    // One finding per id: the first place it was seen is its evidence.
    const unique = [...new Map(findings.toReversed().map((f) => [f.id, f])).values()].reverse()
    findings.splice(0, findings.length, ...unique)
    const before = blocking(findings, policy)
    // Only an approved server is containerized: an image of what is blocked would be one more thing to clean up.
    const image =
      options.image === undefined || before.length > 0
        ? undefined
        : await timed('image', () =>
            buildServerImage({
              id,
              version: pinned.version,
              spec: options.spec,
              transport: pinned.transport,
              ...candidate.image,
              manifestArgs: pinned.args,
              env: pinned.env,
              repository: `${options.image!.repository ?? DEFAULT_IMAGE_REPOSITORY}/${id}`,
              layout: options.image!.layout,
              layerCache: options.image!.layerCache,
            }),
          )
    for (const missing of image?.unresolvedLibraries ?? [])
      findings.push({
        stage: 'image',
        id: `image.unresolved-library:${missing.split(':')[0]!.split('/').pop()}`,
        severity: 'medium',
        title:
          'native code of the server loads a library this machine lacks: that module cannot load in the image',
        evidence: missing,
      })
    const blockers = blocking(findings, policy)
    const manifest =
      image === undefined || blockers.length > 0
        ? pinned
        : parseManifest({ ...pinned, image: image.reference })
    const { findings: _dynamicFindings, tools, ...observed } = dynamic
    return {
      spec: options.spec,
      verdict: blockers.length === 0 ? 'approved' : 'blocked',
      blocking: blockers,
      findings,
      stages,
      dependencies: candidate.dependencies,
      dynamic: {
        ...observed,
        tools: tools.map((tool) => ({
          name: tool.name,
          digest: manifest.tools![tool.name]!,
          readOnly: (tool.annotations as { readOnlyHint?: boolean } | undefined)?.readOnlyHint === true,
          description: tool.description,
        })),
      },
      permissions: { env: manifest.env, egress, operatorArgs: manifest.operatorArgs },
      image,
      policy,
      manifest:
        blockers.length === 0
          ? manifest
          : {
              ...manifest,
              notes: [`blocked by the onboarding pipeline: ${blockers.map((b) => b.id).join(', ')}`],
            },
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true })
  }
}
