import type { IncomingHttpHeaders } from 'node:http'
import {
  declaredVersion,
  decodeHeaderValue,
  isLegacyVersion,
  isModernVersion,
  isSupportedModernVersion,
  LEGACY_VERSIONS,
  MCP_NAME_FIELD,
  META_CLIENT_CAPABILITIES,
  META_PROTOCOL_VERSION,
  MODERN_VERSIONS,
  ModernRpcCode,
  requestMeta,
} from '../protocol/modern-era.ts'
import { JsonRpcCode } from '../protocol/rpc-codes.ts'

/**
 * Whether an HTTP request to an MCP endpoint is for the modern era: its `MCP-Protocol-Version` names a version
 * that is not a legacy one (a modern one, or one nobody speaks, which the modern checks then refuse with the
 * supported list), or, without the header and outside any session, its body declares a modern version.
 */
export function isModernHttpRequest(headers: IncomingHttpHeaders, body?: unknown): boolean {
  const version = headers['mcp-protocol-version']
  if (typeof version === 'string') return !isLegacyVersion(version)
  if (headers['mcp-session-id'] !== undefined) return false
  const declared = declaredVersion((body as { params?: unknown } | undefined)?.params)
  return declared !== undefined && isModernVersion(declared)
}

export interface ModernRefusal {
  status: number
  code: number
  message: string
  data?: unknown
}

/** Legacy-era methods the 2026-07-28 revision removed: a modern request naming one gets 404 `-32601`. */
const REMOVED_METHODS = new Set([
  'initialize',
  'ping',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
])

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
  const requested = header(headers, 'mcp-protocol-version')
  if (requested === undefined)
    return {
      status: 400,
      code: ModernRpcCode.HeaderMismatch,
      message: 'Header mismatch: the MCP-Protocol-Version header is missing',
    }
  if (!isSupportedModernVersion(requested))
    return {
      status: 400,
      code: ModernRpcCode.UnsupportedProtocolVersion,
      message: `Unsupported protocol version ${requested}`,
      data: {
        supported: [...MODERN_VERSIONS, ...LEGACY_VERSIONS],
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
  const invalidMeta = (detail: string): ModernRefusal => ({
    status: 400,
    code: JsonRpcCode.InvalidParams,
    message: `Invalid params: ${detail}`,
  })
  const bodyVersion = declaredVersion(message.params)
  if (bodyVersion === undefined)
    return invalidMeta(`_meta must carry ${META_PROTOCOL_VERSION} (the header says ${requested})`)
  if (typeof requestMeta(message.params)?.[META_CLIENT_CAPABILITIES] !== 'object')
    return invalidMeta(`_meta must carry ${META_CLIENT_CAPABILITIES}`)
  if (bodyVersion !== requested)
    return mismatch(`MCP-Protocol-Version header ${requested} does not match body value ${bodyVersion}`)
  const method = header(headers, 'mcp-method')
  if (method === undefined) return mismatch('the Mcp-Method header is missing')
  if (method !== message.method)
    return mismatch(`Mcp-Method header value '${method}' does not match body value '${message.method}'`)
  if (REMOVED_METHODS.has(message.method))
    return {
      status: 404,
      code: JsonRpcCode.MethodNotFound,
      message: `Method not found: ${message.method} is not part of protocol ${requested}`,
    }
  const field = MCP_NAME_FIELD[message.method]
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
