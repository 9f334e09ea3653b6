import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolvePackageBin } from '../../node/runtime/package-bin.ts'
import { type Manifest, parseManifest } from '../../protocol/manifest.ts'
import { createManifest } from '../manifest-create.ts'
import { advisoryChecks } from './advisories.ts'
import { type DynamicResult, dynamicChecks } from './dynamic-checks.ts'
import { blocking, DEFAULT_POLICY, type Finding, type OnboardingPolicy, type Stage } from './findings.ts'
import { resolveNpm } from './npm-resolve.ts'
import { staticChecks } from './static-checks.ts'
import { checkTools } from './tool-checks.ts'
import { toolDigests } from './tool-digest.ts'

export interface OnboardOptions {
  /** `npm:<name>@<exact version>`. */
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
}

/** What a curator reads before signing: the verdict, each stage's findings and timings, and the manifest. */
export interface OnboardingReport {
  spec: string
  verdict: 'approved' | 'blocked'
  /** The findings that block under the policy (empty when approved). */
  blocking: Finding[]
  findings: Finding[]
  stages: { stage: Stage; ms: number }[]
  dependencies: {
    packages: number
    lockfileSha256: string
    installScripts: string[]
    /** Every package of the locked tree, with its integrity. */
    tree: { name: string; version: string; integrity?: string }[]
  }
  dynamic: Omit<DynamicResult, 'findings' | 'tools'> & {
    tools: { name: string; digest: string; readOnly: boolean; description?: string }[]
  }
  permissions: { env: string[]; egress: boolean | string[]; operatorArgs: boolean }
  policy: OnboardingPolicy
  /** The manifest to sign, tools pinned, resources measured. */
  manifest: Manifest
}

/** Memory to reserve for an instance: one and a half times the peak seen, in steps of 64 MiB, at least 128. */
function memoryFor(peakMiB: number | undefined): number {
  if (peakMiB === undefined || peakMiB === 0) return 256
  return Math.max(128, Math.ceil((peakMiB * 1.5) / 64) * 64)
}

/**
 * The onboarding pipeline for an npm server: resolve and pin the whole tree, check it statically, run the
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
    const resolved = await timed('resolve', () => resolveNpm(options.spec, workDir, options.registry))
    const findings: Finding[] = [...resolved.findings]
    findings.push(
      ...(await timed('static', async () => [
        ...staticChecks(resolved),
        ...(await advisoryChecks(resolved.tree, options.registry)),
      ])),
    )
    const bin = resolvePackageBin(resolved.name, options.bin, [resolved.project])
    const id =
      options.id ??
      resolved.name
        .split('/')
        .pop()!
        .replace(/^(mcp-)?server-|-mcp-server$/g, '')
    const dynamic = await timed('dynamic', () =>
      dynamicChecks(
        {
          command: process.execPath,
          args: [bin.binPath, ...(options.args ?? [])],
          env: { PATH: process.env.PATH ?? '' },
          cwd: undefined,
        },
        id,
        policy,
      ),
    )
    findings.push(...dynamic.findings)
    findings.push(...(await timed('tools', () => checkTools(dynamic.tools))))
    const created = await createManifest(options.spec, {
      id,
      bin: options.bin,
      args: options.args,
      env: options.env,
      operatorArgs: options.operatorArgs,
      memoryMiB: memoryFor(dynamic.peakMemoryMiB),
      searchFrom: [resolved.project],
      notes: [`onboarded by the pipeline: ${findings.length} finding(s), none blocking under its policy`],
    })
    const egress = options.egress ?? false
    const manifest = parseManifest({
      ...created,
      ...(egress === false ? {} : { egress }),
      tools: toolDigests(dynamic.tools),
    })
    // One finding per id: the first place it was seen is its evidence.
    const unique = [...new Map(findings.toReversed().map((f) => [f.id, f])).values()].reverse()
    findings.splice(0, findings.length, ...unique)
    const blockers = blocking(findings, policy)
    const { findings: _dynamicFindings, tools, ...observed } = dynamic
    return {
      spec: options.spec,
      verdict: blockers.length === 0 ? 'approved' : 'blocked',
      blocking: blockers,
      findings,
      stages,
      dependencies: {
        packages: resolved.tree.length,
        lockfileSha256: createHash('sha256').update(readFileSync(resolved.lockfile)).digest('hex'),
        installScripts: resolved.tree
          .filter((p) => p.installScripts.length > 0)
          .map((p) => `${p.name}@${p.version}`),
        tree: resolved.tree.map(({ name, version, integrity }) => ({ name, version, integrity })),
      },
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
