import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'

/** JSON-RPC error codes of the gateway's own, in the range JSON-RPC reserves for implementations. */
export const GatewayErrorCode = {
  NodeFailed: -32010,
  NoHost: -32011,
  SessionClosed: -32012,
  /** The principal's scopes do not cover what it asked for (a tool outside them). */
  Forbidden: -32013,
  /** The node is not reading what the agent sends (its server is stuck or swamped); nothing was sent. */
  Overloaded: -32014,
} as const

export type JsonRpcRequest = Extract<JSONRPCMessage, { method: string; id: RequestId }>

export function isRequest(message: JSONRPCMessage): message is JsonRpcRequest {
  return 'method' in message && 'id' in message
}

export function isResponse(message: JSONRPCMessage): message is Extract<JSONRPCMessage, { id: RequestId }> {
  return !('method' in message) && 'id' in message
}

export function errorResponse(id: RequestId, code: number, message: string, data?: unknown): JSONRPCMessage {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } }
}

/** A body for HTTP-level failures, which the MCP transports report as JSON-RPC errors with a null id. */
export function httpErrorBody(code: number, message: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } })
}
