import type { LaunchSpec } from '../../node/runtime/launch.ts'
import type { ManifestInput } from '../../protocol/manifest.ts'
import type { Finding, Stage } from './findings.ts'
import type { ImageLaunch } from './image/build-image.ts'

/** Runs one stage of the pipeline, timing it for the report. */
export type Timed = <T>(stage: Stage, work: () => Promise<T> | T) => Promise<T>

/** What the report says of a server's locked tree. */
export interface DependencySummary {
  packages: number
  /** sha256 of the lock (npm's lockfile, or the pip lock's lines). */
  lockfileSha256: string
  installScripts: string[]
  /** Every package of the locked tree, with its integrity (npm) or sha256 (PyPI). */
  tree: { name: string; version: string; integrity?: string }[]
}

/**
 * A server resolved and checked statically, whatever its ecosystem: what the later stages (run it, pin its
 * tools, write its manifest) need from npm or PyPI.
 */
export interface Candidate {
  name: string
  /** The resolve and static stages' findings. */
  findings: Finding[]
  launch: LaunchSpec
  /** What its sandbox must show beyond the launch's own files. */
  binds: { path: string; mode: 'ro' | 'rw' }[]
  dependencies: DependencySummary
  /** What its image holds: the installed tree and where it goes, whether it needs Python, and its launch there. */
  image: { tree: { from: string; to: string }; python: boolean; launch: ImageLaunch }
  /** Its manifest's fields for this ecosystem (tools, egress and the rest are added by the pipeline). */
  manifest(fields: { id: string; memoryMiB: number; notes: string[] }): Promise<ManifestInput>
}

/** The id a server gets by default: its package name without the usual `mcp-server-` decorations. */
export function defaultServerId(name: string): string {
  return name
    .split('/')
    .pop()!
    .toLowerCase()
    .replace(/^(mcp-)?server-|-mcp-server$/g, '')
    .replace(/_/g, '-')
}
