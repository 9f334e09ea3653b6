import type { IncomingMessage, ServerResponse } from 'node:http'

const ALLOWED_METHODS = 'GET, POST, DELETE'
const ALLOWED_HEADERS =
  'authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id'
/** What a browser client must be able to read: the session id above all, and why it was refused. */
const EXPOSED_HEADERS = 'mcp-session-id, mcp-protocol-version, www-authenticate, retry-after'

/**
 * CORS for browser-based MCP clients, for origins the origin guard already let through (the configured
 * `allowedOrigins`, or loopback origins by default): the origin is echoed, never `*`, so that credentials and
 * the session header work and nothing else is opened. Answers preflight requests itself; returns true then.
 */
export function applyCors(req: IncomingMessage, res: ServerResponse): boolean {
  const origin = req.headers.origin
  if (origin === undefined) return false
  res.setHeader('access-control-allow-origin', origin)
  res.setHeader('vary', 'Origin')
  res.setHeader('access-control-expose-headers', EXPOSED_HEADERS)
  if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false
  res.writeHead(204, {
    'access-control-allow-methods': ALLOWED_METHODS,
    'access-control-allow-headers': ALLOWED_HEADERS,
    'access-control-max-age': '600',
  })
  res.end()
  return true
}
