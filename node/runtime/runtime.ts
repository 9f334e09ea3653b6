import type { Manifest } from '../../protocol/manifest.ts'
import type { ServerConfig } from '../config.ts'
import type { HttpEndpoint } from './http-endpoint.ts'
import type { UpstreamSession, UpstreamStatus } from './upstream.ts'

/** A server the node will run: how (its launch configuration), what it announces, and its signed manifest. */
export interface RuntimeServer {
  config: ServerConfig
  manifestHash: string
  /** Absent for an unverified development entry. */
  manifest?: Manifest
}

/** The contract every runtime (local processes, a Kubernetes cluster) fulfils for the node. */
export interface Runtime {
  /** Whether the runtime runs OCI images (then a manifest pinned to an image is not refused up front). */
  readonly runsImages: boolean
  /**
   * Refuses, with a typed error, a server this runtime cannot run at all (no image pinned by digest, say),
   * before the node counts it as hosted. Called for every server before `ensure`.
   */
  admit?(server: RuntimeServer): void
  /** Makes the set of running servers equal to `servers`: starts the new, stops the ones no longer listed. */
  ensure(servers: RuntimeServer[]): Promise<void>
  open(serverId: string): Promise<UpstreamSession>
  has(serverId: string): boolean
  status(): UpstreamStatus[]
  /** Calls `listener` whenever `status()` may have changed on its own (a server went down or came back). */
  onStatusChange(listener: () => void): void
  /**
   * Where a server takes modern-era (2026-07-28) requests itself, when it speaks that revision; such requests
   * are forwarded to it as they are instead of going through the era bridge.
   */
  modernEndpoint?(serverId: string): HttpEndpoint | undefined
  /** Why the runtime cannot do its job fully right now (for `/readyz`), or undefined when it can. */
  notReadyBecause?(): string | undefined
  stop(): Promise<void>
}
