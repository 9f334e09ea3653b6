import type { ServerResponse } from 'node:http'
import { httpErrorBody } from './jsonrpc.ts'

/** Ends a response with a JSON-RPC error body, the form MCP clients expect for transport-level failures. */
export function sendHttpError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end()
    return
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(httpErrorBody(code, message))
}

export { sendJson } from '../protocol/ops-endpoints.ts'
