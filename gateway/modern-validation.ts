import type { IncomingHttpHeaders } from 'node:http'
import {
  declaredVersion,
  isModernVersion,
  isSupportedModernVersion,
  MODERN_VERSIONS,
  ModernRpcCode,
} from '../protocol/modern-era.ts'
import { JsonRpcCode } from '../protocol/rpc-codes.ts'

/** Whether an HTTP request to an MCP endpoint belongs to the modern era (2026-07-28 and later). */
export function isModernHttpRequest(headers: IncomingHttpHeaders): boolean {
  const version = headers['mcp-protocol-version']
  return typeof version === 'string' && isModernVersion(version)
}

export interface ModernRefusal {
  status: number
  code: number
  message: string
  data?: unknown
}

/** Methods whose `Mcp-Name` header mirrors a body field, and which field. */
const NAMED: Record<string, 'name' | 'uri'> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
}

const SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/

/** An `Mcp-Name` or `Mcp-Param-*` value as sent: plain visible ASCII, or the Base64 sentinel form. */
export function decodeHeaderValue(value: string): string | undefined {
  const encoded = SENTINEL.exec(value)
  if (encoded !== null) return Buffer.from(encoded[1]!, 'base64').toString('utf8')
  return /^[\x20-\x7e\t]*$/.test(value) ? value : undefined
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name]
  return typeof value === 'string' ? value : undefined
}

/**
 * The checks the revision asks of a server that reads the body (Streamable HTTP, "Server Validation"): a
 * version it speaks, and the mirrored headers equal to the body. The gateway routes on the body, and nodes
 * and servers behind it trust what it forwards, so it checks before anything is routed.
 */
export function validateModernRequest(
  headers: IncomingHttpHeaders,
  body: unknown,
): ModernRefusal | undefined {
  const requested = header(headers, 'mcp-protocol-version')!
  if (!isSupportedModernVersion(requested))
    return {
      status: 400,
      code: ModernRpcCode.UnsupportedProtocolVersion,
      message: `Unsupported protocol version ${requested}`,
      data: {
        supported: [...MODERN_VERSIONS, '2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'],
        requested,
      },
    }
  const message = body as { jsonrpc?: unknown; method?: unknown; params?: Record<string, unknown> }
  if (typeof message !== 'object' || message === null || Array.isArray(message) || message.jsonrpc !== '2.0')
    return {
      status: 400,
      code: JsonRpcCode.InvalidRequest,
      message: 'Invalid Request: one JSON-RPC message per POST',
    }
  if (typeof message.method !== 'string')
    return {
      status: 400,
      code: JsonRpcCode.InvalidRequest,
      message: 'Invalid Request: clients send no responses in this revision',
    }
  const mismatch = (detail: string): ModernRefusal => ({
    status: 400,
    code: ModernRpcCode.HeaderMismatch,
    message: `Header mismatch: ${detail}`,
  })
  const bodyVersion = declaredVersion(message.params)
  if (bodyVersion !== requested)
    return mismatch(
      bodyVersion === undefined
        ? `the body's _meta does not declare io.modelcontextprotocol/protocolVersion (header says ${requested})`
        : `MCP-Protocol-Version header ${requested} does not match body value ${bodyVersion}`,
    )
  const method = header(headers, 'mcp-method')
  if (method === undefined) return mismatch('the Mcp-Method header is missing')
  if (method !== message.method)
    return mismatch(`Mcp-Method header value '${method}' does not match body value '${message.method}'`)
  const field = NAMED[message.method]
  if (field === undefined) return undefined
  const expected = message.params?.[field]
  const raw = header(headers, 'mcp-name')
  if (raw === undefined) return mismatch('the Mcp-Name header is missing')
  const name = decodeHeaderValue(raw)
  if (name === undefined)
    return mismatch('the Mcp-Name header has characters a header may not carry unencoded')
  if (name !== expected)
    return mismatch(`Mcp-Name header value '${name}' does not match body value '${String(expected)}'`)
  return undefined
}
