import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'

/**
 * JSON-RPC error codes of Nexus's own, in the range JSON-RPC reserves for implementations: what gateways and
 * nodes answer agents with when the answer is not the server's. A change here changes what agents see.
 */
export const NexusRpcCode = {
  NodeFailed: -32010,
  NoHost: -32011,
  SessionClosed: -32012,
  /** The principal's scopes do not cover what it asked for (a tool outside them). */
  Forbidden: -32013,
  /** Too much is already waiting (the node is not reading, or too many requests are in flight); nothing was sent. */
  Overloaded: -32014,
  /** The server listed tools that differ from what its signed manifest pins; the list was withheld. */
  ToolsChanged: -32015,
  /**
   * Every host of the server is starting as many server processes as it can, and its queue is full or the wait
   * ran out: nothing was started. Retry after `data.retryAfterMs`.
   */
  Busy: -32016,
} as const

/** JSON-RPC's own codes. */
export const JsonRpcCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
} as const

/** A JSON-RPC error answer to request `id`: what a gateway or node says when the answer is not the server's. */
export function errorResponse(id: RequestId, code: number, message: string, data?: unknown): JSONRPCMessage {
  return { jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } }
}
