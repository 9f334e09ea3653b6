import * as z from 'zod/v4'
import { decodeJsonBounded } from './bounded-json.ts'
import { NexusError, type NexusErrorCode } from './errors.ts'
import { WIRE_VERSION } from './names.ts'

/**
 * The first frames of an MCP session stream. The gateway opens with `open`; the node answers `accepted` or
 * `refused`. After `accepted`, every frame carries exactly one JSON-RPC message, except `closing`, which a node
 * sends to say why it is about to end the session (an object with a `nexus` key never parses as JSON-RPC).
 */

/** Who the agent is, as the gateway established it. Tokens never travel, only the principal they proved. */
export const AuthContextSchema = z.object({
  principal: z.string().min(1).max(256),
  scopes: z.array(z.string().max(256)).max(256).optional(),
})
export type AuthContext = z.infer<typeof AuthContextSchema>

const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/

export const OpenSessionSchema = z.object({
  v: z.literal(WIRE_VERSION),
  type: z.literal('open'),
  serverId: z.string().regex(ID_PATTERN, 'server id must be lower-case letters, digits, ".", "_" or "-"'),
  sessionId: z.string().min(8).max(128),
  auth: AuthContextSchema,
  /**
   * `modern`: the stream carries one modern-era request (2026-07-28) and its answer, then ends; the node
   * serves it statelessly, bridging to the server's era. Absent: a legacy session, as before.
   */
  era: z.enum(['legacy', 'modern']).optional(),
  /**
   * Modern only: after the answer the gateway may send the next request's `open` on the same stream, sparing
   * a stream's negotiation per request. The node says in `accepted` whether it keeps the stream open.
   */
  keep: z.boolean().optional(),
})
export type OpenSession = z.infer<typeof OpenSessionSchema>

export const REFUSAL_CODES = [
  'UNKNOWN_SERVER',
  'NODE_DRAINING',
  'NODE_FULL',
  'NODE_BUSY',
  'UPSTREAM_UNAVAILABLE',
  'PROTOCOL_VIOLATION',
] as const
export type RefusalCode = (typeof REFUSAL_CODES)[number]

const AcceptedSchema = z.object({
  v: z.literal(WIRE_VERSION),
  type: z.literal('accepted'),
  serverId: z.string(),
  /** What the node runs for it, so that the gateway can check it against its whitelist before relaying. */
  server: z
    .object({ version: z.string().max(64), manifestHash: z.string().regex(/^0x[0-9a-f]{64}$/) })
    .optional(),
  /** The stream stays open after the answer for the next modern request's `open` (asked for with `keep`). */
  keep: z.boolean().optional(),
})
const RefusedSchema = z.object({
  v: z.literal(WIRE_VERSION),
  type: z.literal('refused'),
  code: z.enum(REFUSAL_CODES),
  message: z.string(),
  /** With NODE_BUSY: when the gateway (and the agent) may try again. */
  retryAfterMs: z.number().int().min(0).max(3_600_000).optional(),
})
export const OpenReplySchema = z.discriminatedUnion('type', [AcceptedSchema, RefusedSchema])
export type OpenReply = z.infer<typeof OpenReplySchema>

export const ClosingSchema = z.object({
  nexus: z.literal('closing'),
  code: z.string(),
  message: z.string(),
})
export type Closing = z.infer<typeof ClosingSchema>

/**
 * A liveness probe on a session stream: the gateway sends `ping` when a request has waited long with no frame
 * from the node; the node answers `pong` from the code that reads the stream, so an answer proves the node
 * still reads this very stream. No answer in time means a hung node, and the session moves.
 */
export const ProbeSchema = z.object({
  nexus: z.enum(['ping', 'pong']),
  nonce: z.number().int(),
})
export type Probe = z.infer<typeof ProbeSchema>

export function probeFrame(kind: Probe['nexus'], nonce: number): Probe {
  return { nexus: kind, nonce }
}

export function isValidServerId(id: string): boolean {
  return ID_PATTERN.test(id)
}

const encoder = new TextEncoder()

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

/** Decodes a frame's JSON, refusing one that is not JSON or nests too deep (see `bounded-json.ts`). */
export function decodeJson(bytes: Uint8Array): unknown {
  const parsed = decodeJsonBounded(bytes)
  if (parsed.ok) return parsed.value
  throw new NexusError('MALFORMED_FRAME', `frame refused: ${parsed.message}`)
}

/** Parses a handshake frame against its schema, turning schema failures into a typed protocol error. */
export function parseFrame<T>(schema: z.ZodType<T>, bytes: Uint8Array, what: string): T {
  const result = schema.safeParse(decodeJson(bytes))
  if (!result.success) {
    throw new NexusError('PROTOCOL_VIOLATION', `invalid ${what} frame: ${z.prettifyError(result.error)}`)
  }
  return result.data
}

export function openFrame(
  serverId: string,
  sessionId: string,
  auth: AuthContext,
  era?: OpenSession['era'],
  keep?: boolean,
): OpenSession {
  return {
    v: WIRE_VERSION,
    type: 'open',
    serverId,
    sessionId,
    auth,
    ...(era === undefined ? {} : { era }),
    ...(keep ? { keep } : {}),
  }
}

export function acceptedFrame(
  serverId: string,
  server?: { version: string; manifestHash: string },
  keep?: boolean,
): OpenReply {
  return { v: WIRE_VERSION, type: 'accepted', serverId, server, ...(keep ? { keep } : {}) }
}

export function refusedFrame(code: RefusalCode, message: string, retryAfterMs?: number): OpenReply {
  return {
    v: WIRE_VERSION,
    type: 'refused',
    code,
    message,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  }
}

export function closingFrame(code: NexusErrorCode, message: string): Closing {
  return { nexus: 'closing', code, message }
}
