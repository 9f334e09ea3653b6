import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import * as z from 'zod/v4'
import { NexusError } from '../../protocol/errors.ts'

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const
export type Severity = (typeof SEVERITIES)[number]

/** The pipeline's stages, in order; each finding names the one that made it. */
export type Stage = 'resolve' | 'static' | 'dynamic' | 'tools' | 'image'

/** One thing the pipeline found, with what shows it. `id` is stable, so a policy can waive it by name. */
export interface Finding {
  stage: Stage
  id: string
  severity: Severity
  title: string
  /** What was seen: a file and line, a log excerpt, the offending text. */
  evidence?: string
}

export const PolicySchema = z
  .object({
    /** The least severity that blocks onboarding (default: high). */
    block: z.enum(SEVERITIES).default('high'),
    /** Finding ids a curator has reviewed and accepts (`static.install-script:esbuild`, say). */
    allow: z.array(z.string().min(1)).default([]),
    /** Dynamic checks: how long the server may take to answer `initialize`, and each call. */
    startTimeoutMs: z.number().int().positive().default(30_000),
    callTimeoutMs: z.number().int().positive().default(10_000),
  })
  .strict()
export type OnboardingPolicy = z.infer<typeof PolicySchema>

export const DEFAULT_POLICY: OnboardingPolicy = PolicySchema.parse({})

/** A policy file (YAML or JSON), validated with every offending field named. */
export function loadPolicy(path: string): OnboardingPolicy {
  let raw: unknown
  try {
    raw = parseYaml(readFileSync(path, 'utf8'))
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot read the policy ${path}: ${(err as Error).message}`)
  }
  const result = PolicySchema.safeParse(raw ?? {})
  if (!result.success)
    throw new NexusError('INVALID_CONFIG', `invalid policy ${path}:\n${z.prettifyError(result.error)}`)
  return result.data
}

/** The findings that block onboarding under the policy: severe enough, and not waived. */
export function blocking(findings: readonly Finding[], policy: OnboardingPolicy): Finding[] {
  const least = SEVERITIES.indexOf(policy.block)
  return findings.filter((f) => SEVERITIES.indexOf(f.severity) >= least && !policy.allow.includes(f.id))
}
