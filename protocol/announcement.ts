import * as z from 'zod/v4'
import { WIRE_VERSION } from './names.ts'
import { decodeJson, encodeJson } from './session-handshake.ts'

/** What a node tells the network about itself on the announce topic. Signed by gossipsub as the sender. */
export const HostedServerSchema = z.object({
  id: z.string().min(1).max(128),
  version: z.string().min(1).max(64),
  /** Live sessions on this node for this server. */
  sessions: z.number().int().min(0),
})
export type HostedServer = z.infer<typeof HostedServerSchema>

export const AnnouncementSchema = z.object({
  v: z.literal(WIRE_VERSION),
  peerId: z.string().min(1).max(128),
  addrs: z.array(z.string().max(512)).max(32),
  servers: z.array(HostedServerSchema).max(1024),
  load: z.object({ sessions: z.number().int().min(0), capacity: z.number().int().min(0) }),
  draining: z.boolean(),
  /** Strictly increasing per node, so that receivers drop reordered or replayed records. */
  seq: z.number().int().min(0),
  timestamp: z.number().int().min(0),
})
export type Announcement = z.infer<typeof AnnouncementSchema>

export function encodeAnnouncement(announcement: Announcement): Uint8Array {
  return encodeJson(announcement)
}

/** Returns the announcement, or undefined if the bytes are not a well-formed record. */
export function decodeAnnouncement(bytes: Uint8Array): Announcement | undefined {
  try {
    const result = AnnouncementSchema.safeParse(decodeJson(bytes))
    return result.success ? result.data : undefined
  } catch {
    return undefined
  }
}
