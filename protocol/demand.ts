import * as z from 'zod/v4'
import { decodeRecord } from './announcement.ts'
import { WIRE_VERSION } from './names.ts'
import { encodeJson } from './session-handshake.ts'

/** What agents ask of one server through one gateway, over the gateway's last three reporting intervals. */
export const ServerDemandSchema = z.object({
  id: z.string().min(1).max(128),
  /** Sessions open now. */
  sessions: z.number().int().min(0),
  /** Requests per second from agents, averaged over the last three intervals. */
  callsPerSec: z.number().min(0),
})
export type ServerDemand = z.infer<typeof ServerDemandSchema>

/**
 * A gateway's demand report on `/nexus/1/demand`: the allocator's input for how many replicas each server
 * needs. Signed by gossipsub; receivers accept it only when the signer is `peerId`.
 */
export const DemandReportSchema = z.object({
  v: z.literal(WIRE_VERSION),
  peerId: z.string().min(1).max(128),
  servers: z.array(ServerDemandSchema).max(4096),
  intervalMs: z.number().int().min(50).max(600_000),
  seq: z.number().int().min(0),
  timestamp: z.number().int().min(0),
})
export type DemandReport = z.infer<typeof DemandReportSchema>

export function encodeDemandReport(report: DemandReport): Uint8Array {
  return encodeJson(report)
}

export function decodeDemandReport(bytes: Uint8Array): DemandReport | undefined {
  return decodeRecord(DemandReportSchema, bytes)
}
