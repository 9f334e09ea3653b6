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

/** A server agents asked this gateway for that no node offers (see `gateway/unmet-demand.ts`). */
export const UnmetDemandSchema = z.object({
  id: z.string().min(1).max(128),
  requests: z.number().int().min(0),
  principals: z.number().int().min(0),
  packages: z.array(z.string().max(256)).max(8),
  lastAt: z.number().int().min(0),
})

/**
 * A gateway's demand report on `/nexus/1/demand`: the allocator's input for how many replicas each server
 * needs, and what agents asked for that the network does not offer (`unmet`, optional: older gateways send
 * none). Signed by gossipsub; receivers accept it only when the signer is `peerId`.
 */
export const DemandReportSchema = z.object({
  v: z.literal(WIRE_VERSION),
  peerId: z.string().min(1).max(128),
  servers: z.array(ServerDemandSchema).max(4096),
  unmet: z.array(UnmetDemandSchema).max(64).optional(),
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
