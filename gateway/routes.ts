import type { IncomingMessage } from 'node:http'
import { LEGACY_MESSAGES_PATH } from './legacy-sse-endpoint.ts'
import { isModernHttpRequest } from './modern-validation.ts'

export const PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource'

/** What a request asks for, once its path and method are matched. */
export type Route =
  /** OAuth protected-resource metadata: public. */
  | { kind: 'resource-metadata' }
  /** `/mcp` (every server) or `/mcp/v/<name>` (a virtual server): one endpoint for many servers. */
  | { kind: 'unified'; virtual: string }
  /** `/mcp/<server-id>`: streamable HTTP, both eras. */
  | { kind: 'mcp'; serverId: string }
  /** `/sse` or `/sse/v/<name>`: the unified endpoint on the legacy HTTP+SSE transport. */
  | { kind: 'unified-sse'; virtual: string }
  /** `/sse/<server-id>`: opens a legacy HTTP+SSE session. */
  | { kind: 'sse'; serverId: string }
  /** `/messages?sessionId=…`: a message of a legacy HTTP+SSE session (its server is the session's). */
  | { kind: 'legacy-messages'; sessionId: string | null }
  /** `/network/events`: the network page's stream of snapshots. */
  | { kind: 'network-events' }
  /** `/requests`: servers agents asked for that the network does not offer (GET), or an explicit request (POST). */
  | { kind: 'requests' }

interface RouteEntry {
  methods: string[]
  match(path: string, url: URL): Route | undefined
}

const serverPath = (prefix: string, path: string): string | undefined => {
  const [, first, serverId, extra] = path.split('/')
  return first === prefix && serverId && extra === undefined ? serverId : undefined
}

/** `/<prefix>` (every server: `''`) or `/<prefix>/v/<name>` (a virtual server): the unified endpoint's paths. */
const unifiedPath = (prefix: string, path: string): string | undefined => {
  if (path === `/${prefix}`) return ''
  const [, first, v, name, extra] = path.split('/')
  return first === prefix && v === 'v' && name && extra === undefined ? name : undefined
}

/** Every agent-facing route, in one table: path, methods, and what it names. */
const ROUTES: RouteEntry[] = [
  {
    methods: ['GET'],
    match: (path) => (path.startsWith(PROTECTED_RESOURCE_PATH) ? { kind: 'resource-metadata' } : undefined),
  },
  {
    methods: ['GET', 'POST', 'DELETE'],
    match: (path) => {
      const virtual = unifiedPath('mcp', path)
      return virtual === undefined ? undefined : { kind: 'unified', virtual }
    },
  },
  {
    methods: ['GET', 'POST', 'DELETE'],
    match: (path) => {
      const serverId = serverPath('mcp', path)
      return serverId === undefined ? undefined : { kind: 'mcp', serverId }
    },
  },
  {
    methods: ['GET'],
    match: (path) => {
      const virtual = unifiedPath('sse', path)
      return virtual === undefined ? undefined : { kind: 'unified-sse', virtual }
    },
  },
  {
    methods: ['GET'],
    match: (path) => {
      const serverId = serverPath('sse', path)
      return serverId === undefined ? undefined : { kind: 'sse', serverId }
    },
  },
  {
    methods: ['POST'],
    match: (path, url) =>
      path === LEGACY_MESSAGES_PATH
        ? { kind: 'legacy-messages', sessionId: url.searchParams.get('sessionId') }
        : undefined,
  },
  {
    methods: ['GET', 'POST'],
    match: (path) => (path === '/requests' ? { kind: 'requests' } : undefined),
  },
  {
    methods: ['GET'],
    match: (path) => (path === '/network/events' ? { kind: 'network-events' } : undefined),
  },
]

export type RouteMatch = { route: Route } | { notAllowed: string[] } | undefined

/** The route a request names; a known path with another method says which methods it takes. */
export function matchRoute(method: string | undefined, url: URL): RouteMatch {
  for (const entry of ROUTES) {
    const route = entry.match(url.pathname, url)
    if (route === undefined) continue
    return entry.methods.includes(method ?? '') ? { route } : { notAllowed: entry.methods }
  }
  return undefined
}

/** Whether a request would open a new session (what admission control limits). */
export function opensSession(route: Route, req: IncomingMessage): boolean {
  if (route.kind === 'sse' || route.kind === 'unified-sse') return true
  return (
    (route.kind === 'mcp' || route.kind === 'unified') &&
    req.method === 'POST' &&
    req.headers['mcp-session-id'] === undefined &&
    !isModernHttpRequest(req.headers)
  )
}
