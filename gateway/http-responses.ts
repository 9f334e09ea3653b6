import type { ServerResponse } from 'node:http'
import type { RequestId } from '@modelcontextprotocol/sdk/types.js'
import { httpErrorBody } from './jsonrpc.ts'

/**
 * Ends a response with a JSON-RPC error body, the form MCP clients expect for transport-level failures; `id`
 * names the request refused when it could be read.
 */
export function sendHttpError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
  id: RequestId | null = null,
  /** The error's `data`, for errors that define one (the supported versions of `-32022`). */
  data?: unknown,
): void {
  if (res.headersSent) {
    res.end()
    return
  }
  res
    .writeHead(status, { 'content-type': 'application/json', ...headers })
    .end(httpErrorBody(code, message, id, data))
}

export { sendJson } from '../protocol/ops-endpoints.ts'
