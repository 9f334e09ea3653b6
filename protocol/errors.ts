/**
 * Every error the system raises on purpose carries a stable `code`, so that callers branch on codes,
 * not on message text, and the gateway can map them to JSON-RPC errors and HTTP statuses.
 */
export type NexusErrorCode =
  | 'FRAME_TOO_LARGE'
  | 'MALFORMED_FRAME'
  /** Input from outside (a body, a file, a record) that is not what it must be: not JSON, nested too deep. */
  | 'MALFORMED_INPUT'
  | 'PROTOCOL_VIOLATION'
  | 'HANDSHAKE_TIMEOUT'
  | 'UNKNOWN_SERVER'
  | 'NODE_DRAINING'
  | 'NODE_FULL'
  /** Every process slot of the node is starting a server and its queue is full, or the wait ran out: retry later. */
  | 'NODE_BUSY'
  | 'UPSTREAM_UNAVAILABLE'
  | 'UPSTREAM_EXITED'
  | 'NO_HOST'
  | 'NODE_FAILED'
  | 'INVALID_CONFIG'
  | 'STOPPED'
  /** A manifest is invalid, unsigned, signed by someone untrusted, or not in the whitelist. */
  | 'UNTRUSTED_MANIFEST'
  /** An installed package's files differ from what its manifest pins. */
  | 'PACKAGE_TAMPERED'
  /** The whitelist revoked the server's manifest. */
  | 'SERVER_REVOKED'
  /** The server's live tools differ from the digests its signed manifest pins (a changed tool: a "rug pull"). */
  | 'TOOLS_CHANGED'
  /** The chain that holds the registry cannot be reached or answered something unexpected. */
  | 'CHAIN_UNAVAILABLE'
  /** The Kubernetes API server cannot be reached or answered something unexpected. */
  | 'CLUSTER_UNAVAILABLE'
  /** The Kubernetes API server refused a request: the node's Role lacks a verb on a resource. */
  | 'CLUSTER_FORBIDDEN'
  /** A server for the Kubernetes runtime has no image pinned by digest (a tag, or no image at all). */
  | 'IMAGE_NOT_PINNED'

export class NexusError extends Error {
  readonly code: NexusErrorCode
  /** For a refusal that will pass (NODE_BUSY): when to try again. */
  readonly retryAfterMs: number | undefined

  constructor(code: NexusErrorCode, message: string, options?: ErrorOptions & { retryAfterMs?: number }) {
    super(message, options)
    this.name = 'NexusError'
    this.code = code
    this.retryAfterMs = options?.retryAfterMs
  }
}

export function isNexusError(err: unknown, code?: NexusErrorCode): err is NexusError {
  return err instanceof NexusError && (code === undefined || err.code === code)
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** `err` as an Error, for APIs that take one (a stream's abort): anything thrown that is not one is wrapped. */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
