import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import { NexusRpcCode } from '../protocol/rpc-codes.ts'

/** The gateway's JSON-RPC error codes: one table for gateway and node (`protocol/rpc-codes.ts`). */
export const GatewayErrorCode = NexusRpcCode

export type JsonRpcRequest = Extract<JSONRPCMessage, { method: string; id: RequestId }>

export function isRequest(message: JSONRPCMessage): message is JsonRpcRequest {
  return 'method' in message && 'id' in message
}

export function isResponse(message: JSONRPCMessage): message is Extract<JSONRPCMessage, { id: RequestId }> {
  return !('method' in message) && 'id' in message
}

/**
 * A body for HTTP-level failures, which the MCP transports report as JSON-RPC errors with a null id (or the id
 * of the request refused, when it could be read).
 */
export function httpErrorBody(
  code: number,
  message: string,
  id: RequestId | null = null,
  data?: unknown,
): string {
  return JSON.stringify({
    jsonrpc: '2.0',
    id,
    error: data === undefined ? { code, message } : { code, message, data },
  })
}

/**
 * Whether a value from a node has the shape of a JSON-RPC 2.0 message as far as the gateway relies on it: a
 * request or notification (a string method, a string or number id if any), or a response (a string or number
 * id, and a result or an error with a numeric code and a string message). Checked without walking the params
 * or result, which are the server's business.
 */
export function isJsonRpcMessage(value: unknown): value is JSONRPCMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const { jsonrpc, id, method } = value as { jsonrpc?: unknown; id?: unknown; method?: unknown }
  if (jsonrpc !== '2.0') return false
  const validId = typeof id === 'string' || typeof id === 'number'
  if (method !== undefined) return typeof method === 'string' && (id === undefined || validId)
  if (!validId) return false
  const hasResult = 'result' in value
  const error = (value as { error?: unknown }).error
  if (error === undefined) return hasResult
  if (hasResult || typeof error !== 'object' || error === null) return false
  const { code, message } = error as { code?: unknown; message?: unknown }
  return Number.isInteger(code) && typeof message === 'string'
}
