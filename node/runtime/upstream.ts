import type { NexusErrorCode } from '../../protocol/errors.ts'
import type { Era } from '../../protocol/modern-era.ts'
import type { ServerConfig } from '../config.ts'
import type { HttpEndpoint } from './http-endpoint.ts'

/**
 * One MCP session with a hosted server, seen by the node as opaque JSON-RPC messages (UTF-8 JSON bytes, one
 * message each). The node never interprets them; it only moves them and pushes back when a side is slow.
 */
export interface UpstreamSession {
  /** Delivers one message to the server. Returns false when the caller should await `drained()`. */
  send(message: Uint8Array): boolean
  /**
   * Resolves once the server takes more, or never will (it failed or exited: `onEnd` says so). Never rejects:
   * callers wait on it in the background, where a rejection would be unhandled and end the node.
   */
  drained(): Promise<void>
  /** While paused, the server's output is held back (back-pressure from a slow agent). */
  setOutputPaused(paused: boolean): void
  onMessage: ((message: Uint8Array) => void) | undefined
  /** The server ended the session on its own (crashed, exited, became unreachable). */
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  /** Ends the session and frees what it holds; safe to call more than once. */
  close(): Promise<void>
}

export interface UpstreamStatus {
  id: string
  version: string
  transport: ServerConfig['transport']
  /** The MCP eras the server speaks itself; the node serves the other one through its era bridge. */
  eras: Era[]
  ready: boolean
  activeSessions: number
  idleInstances: number
  restarts: number
  /** The server's processes on this machine (pooled and in session), for operators and diagnostics. */
  pids: number[]
}

/** What an upstream reports about the processes it keeps alive. */
export interface UpstreamEvents {
  /** A kept process is up: a pooled instance spawned, or the HTTP server listening. */
  processStarted(serverId: string, pid: number | undefined): void
  /** A kept process died on its own; it is replaced after `retryInMs` (back-off when it keeps crashing). */
  processExited(serverId: string, description: string, retryInMs: number): void
}

/** A hosted server: it hands out sessions, and keeps itself ready (warm pool, restarts). */
export interface Upstream {
  readonly config: ServerConfig
  start(): Promise<void>
  stop(): Promise<void>
  open(): Promise<UpstreamSession>
  /** Where the server takes modern-era requests itself, when it speaks that revision. */
  modernEndpoint?(): HttpEndpoint | undefined
  /** Resolves once no session is open on this server (an old version draining before it stops). */
  whenIdle(): Promise<void>
  /** Keeps this many warm instances from now on, without touching running sessions (stdio only). */
  resize?(warmPool: number): void
  status(): UpstreamStatus
}
