import * as z from 'zod/v4'
import { WIRE_VERSION } from './names.ts'
import { decodeJson, encodeJson } from './session-handshake.ts'

/** One server a node hosts, as it tells the network. */
export const HostedServerSchema = z.object({
  id: z.string().min(1).max(128),
  version: z.string().min(1).max(64),
  /** Hash of exactly what the node runs for this server (hex), so that gateways can check it. */
  manifestHash: z.string().regex(/^0x[0-9a-f]{64}$/),
  /** Live sessions on this node for this server. */
  sessions: z.number().int().min(0),
  /** Sessions this server can still take on this node. */
  freeSlots: z.number().int().min(0),
})
export type HostedServer = z.infer<typeof HostedServerSchema>

export const NodeLoadSchema = z.object({
  sessions: z.number().int().min(0),
  /** Session slots across all servers. */
  capacity: z.number().int().min(0),
  /** Requests relayed to servers and not answered yet. */
  inFlight: z.number().int().min(0),
  /** Share of the machine's CPU in use over the last interval, 0 to 1. */
  cpu: z.number().min(0).max(1),
  /** Share of the machine's memory in use, 0 to 1. */
  memory: z.number().min(0).max(1),
})
export type NodeLoad = z.infer<typeof NodeLoadSchema>

/**
 * What a node tells the network about itself on the announce topic. Gossipsub signs each message with the
 * sender's key; receivers accept a record only when the signer is `peerId` (see `record-validator.ts`).
 */
export const AnnouncementSchema = z.object({
  v: z.literal(WIRE_VERSION),
  peerId: z.string().min(1).max(128),
  addrs: z.array(z.string().max(512)).max(32),
  servers: z.array(HostedServerSchema).max(1024),
  load: NodeLoadSchema,
  draining: z.boolean(),
  /** What the node offers the allocator: CPU cores and memory for servers, and who runs it where. */
  resources: z.object({ cpu: z.number().min(0), memoryMiB: z.number().min(0) }).optional(),
  labels: z
    .object({ operator: z.string().max(128).optional(), region: z.string().max(128).optional() })
    .optional(),
  /** Whitelisted servers this node can run (installed and verified); absent when it takes no allocation. */
  eligible: z.array(z.string().max(128)).max(4096).optional(),
  /** When the node started: the allocator counts it only once every peer has surely heard of it. */
  startedAt: z.number().int().min(0).optional(),
  /** The assignment this node computed for its latest epoch, so that peers that disagree can be seen. */
  assignment: z.object({ epoch: z.number().int().min(0), hash: z.string().max(80) }).optional(),
  /**
   * The peers this node is connected to (up to 256): what the gateway's network view draws as links. Sent when
   * they change, for newcomers and every fifth announcement; receivers keep the last they saw.
   */
  links: z.array(z.string().max(128)).max(256).optional(),
  /** How often the node announces; receivers forget it after three intervals of silence. */
  intervalMs: z.number().int().min(50).max(600_000),
  /** Strictly increasing per node, so that receivers drop reordered or replayed records. */
  seq: z.number().int().min(0),
  /** Milliseconds since the epoch when the node signed it. */
  timestamp: z.number().int().min(0),
})
export type Announcement = z.infer<typeof AnnouncementSchema>

export function encodeAnnouncement(announcement: Announcement): Uint8Array {
  return encodeJson(announcement)
}

/** Returns the announcement, or undefined if the bytes are not a well-formed record. */
export function decodeAnnouncement(bytes: Uint8Array): Announcement | undefined {
  return decodeRecord(AnnouncementSchema, bytes)
}

/** Parses a gossiped JSON record against its schema; undefined when it is not JSON or does not fit. */
export function decodeRecord<T>(schema: z.ZodType<T>, bytes: Uint8Array): T | undefined {
  try {
    const result = schema.safeParse(decodeJson(bytes))
    return result.success ? result.data : undefined
  } catch {
    return undefined
  }
}
