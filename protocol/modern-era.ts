/**
 * The modern era of MCP (revision 2026-07-28 and later): no `initialize`, no session; every request carries its
 * protocol version, client capabilities and client info in `_meta`. Shared by gateways (which accept and route
 * modern requests) and nodes (which bridge them to legacy servers). A change to `requestState` or to the names
 * here changes what crosses the wire between gateways and nodes.
 */

/** The modern revisions this network speaks, newest first. */
export const MODERN_VERSIONS = ['2026-07-28'] as const
/** The revisions of the legacy era (sessions opened by `initialize`), newest first. */
export const LEGACY_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'] as const
/** The legacy revision a node's bridge opens its sessions with. */
export const BRIDGE_LEGACY_VERSION = LEGACY_VERSIONS[0]

/** The two eras of MCP: `legacy` (sessions opened by `initialize`) and `modern` (2026-07-28, stateless). */
export const ERAS = ['legacy', 'modern'] as const
export type Era = (typeof ERAS)[number]

export function isLegacyVersion(version: string): boolean {
  return (LEGACY_VERSIONS as readonly string[]).includes(version)
}

export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion'
export const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities'
export const META_CLIENT_INFO = 'io.modelcontextprotocol/clientInfo'
export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo'
export const META_SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId'
/** The per-request log level that replaces the legacy `logging/setLevel`. */
export const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel'

/** Error codes the revision defines. */
export const ModernRpcCode = {
  HeaderMismatch: -32020,
  MissingRequiredClientCapability: -32021,
  UnsupportedProtocolVersion: -32022,
} as const

/** Whether a protocol version string names a modern revision (they sort as dates). */
export function isModernVersion(version: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(version) && version >= '2026-07-28'
}

export function isSupportedModernVersion(version: string): boolean {
  return (MODERN_VERSIONS as readonly string[]).includes(version)
}

/** The `_meta` of a request's params, when it has one. */
export function requestMeta(params: unknown): Record<string, unknown> | undefined {
  const meta = (params as { _meta?: unknown } | undefined)?._meta
  return typeof meta === 'object' && meta !== null ? (meta as Record<string, unknown>) : undefined
}

/** The protocol version a request's `_meta` declares, if any. */
export function declaredVersion(params: unknown): string | undefined {
  const version = requestMeta(params)?.[META_PROTOCOL_VERSION]
  return typeof version === 'string' ? version : undefined
}

/** Methods whose `Mcp-Name` header mirrors a body field, and which field. */
export const MCP_NAME_FIELD: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
}

const SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/

/**
 * An `Mcp-Name` or `Mcp-Param-*` value as the revision carries it: plain visible ASCII when that is safe,
 * else the Base64 sentinel form (also for plain text that looks like the sentinel).
 */
export function encodeHeaderValue(value: string): string {
  const plain = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(value) && !/^=\?base64\?.*\?=$/.test(value)
  return plain ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`
}

/** A mirrored header value as sent, decoded; undefined when it carries characters a header may not. */
export function decodeHeaderValue(value: string): string | undefined {
  const encoded = SENTINEL.exec(value)
  if (encoded !== null) return Buffer.from(encoded[1]!, 'base64').toString('utf8')
  return /^[\x20-\x7e\t]*$/.test(value) ? value : undefined
}

const STATE_PREFIX = 'nexus1'

/**
 * `requestState` of a multi-round-trip request that a node's bridge holds open: it names the node, so that
 * the gateway routes the client's follow-up there (and nowhere else), and a token only that node knows.
 * Clients treat it as opaque.
 */
export function encodeRequestState(peerId: string, token: string): string {
  return `${STATE_PREFIX}.${peerId}.${token}`
}

export function parseRequestState(state: unknown): { peerId: string; token: string } | undefined {
  if (typeof state !== 'string' || state.length > 512) return undefined
  const [prefix, peerId, token, ...rest] = state.split('.')
  if (prefix !== STATE_PREFIX || rest.length > 0 || !peerId || !token) return undefined
  return { peerId, token }
}
