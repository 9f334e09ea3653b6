import { EventSourceParserStream } from 'eventsource-parser/stream'
import { errorMessage } from '../../protocol/errors.ts'
import {
  BRIDGE_LEGACY_VERSION,
  declaredVersion,
  type Era,
  encodeHeaderValue,
  MCP_NAME_FIELD,
  META_CLIENT_CAPABILITIES,
  META_CLIENT_INFO,
  META_PROTOCOL_VERSION,
  MODERN_VERSIONS,
} from '../../protocol/modern-era.ts'
import { type ModernRequest, type RequestSink, serverUnavailable } from './bridge-session.ts'

type Json = Record<string, unknown>

/** The headers a modern request carries over HTTP, mirrored from its body. */
function modernHeaders(request: ModernRequest): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': declaredVersion(request.params) ?? MODERN_VERSIONS[0],
    'mcp-method': request.method,
  }
  const field = MCP_NAME_FIELD[request.method]
  const name = field === undefined ? undefined : request.params?.[field]
  if (typeof name === 'string') headers['mcp-name'] = encodeHeaderValue(name)
  return headers
}

const PROBE_CLIENT = { name: 'nexus-node', version: '1.0.0' }

/**
 * Which eras a streamable-HTTP server speaks, asked at start: `modern` when it answers `server/discover` with
 * revision 2026-07-28 among its versions, `legacy` when it answers `initialize` (the probe's session is ended
 * at once). A server that answers neither is taken as legacy, as every server was before the revision.
 */
export async function probeEras(url: URL, timeoutMs = 5_000): Promise<Era[]> {
  const [modern, legacy] = await Promise.all([speaksModern(url, timeoutMs), speaksLegacy(url, timeoutMs)])
  const eras: Era[] = []
  if (legacy || !modern) eras.push('legacy')
  if (modern) eras.push('modern')
  return eras
}

async function speaksModern(url: URL, timeoutMs: number): Promise<boolean> {
  const request: ModernRequest = {
    id: 'nexus-era-probe',
    method: 'server/discover',
    params: {
      _meta: {
        [META_PROTOCOL_VERSION]: MODERN_VERSIONS[0],
        [META_CLIENT_CAPABILITIES]: {},
        [META_CLIENT_INFO]: PROBE_CLIENT,
      },
    },
  }
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: modernHeaders(request),
      body: JSON.stringify({ jsonrpc: '2.0', ...request }),
      signal: AbortSignal.timeout(timeoutMs),
    })
    if (!response.ok) return false
    const body = (await readAnswer(response, request.id)) as { result?: { supportedVersions?: unknown } }
    const supported = body.result?.supportedVersions
    return Array.isArray(supported) && supported.includes(MODERN_VERSIONS[0])
  } catch {
    return false
  }
}

async function speaksLegacy(url: URL, timeoutMs: number): Promise<boolean> {
  const id = 'nexus-era-probe'
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'initialize',
        params: { protocolVersion: BRIDGE_LEGACY_VERSION, capabilities: {}, clientInfo: PROBE_CLIENT },
      }),
      signal: AbortSignal.timeout(timeoutMs),
    })
    const session = response.headers.get('mcp-session-id')
    const body = response.ok ? await readAnswer(response, id) : undefined
    if (session !== null)
      await fetch(url, {
        method: 'DELETE',
        headers: { 'mcp-session-id': session, 'mcp-protocol-version': BRIDGE_LEGACY_VERSION },
        signal: AbortSignal.timeout(timeoutMs),
      }).catch(() => {})
    const result = body?.result as { protocolVersion?: unknown } | undefined
    return typeof result?.protocolVersion === 'string'
  } catch {
    return false
  }
}

/** The answer to `id` in a response, whether a JSON object or SSE events. */
async function readAnswer(response: Response, id: ModernRequest['id']): Promise<Json | undefined> {
  if (!/text\/event-stream/.test(response.headers.get('content-type') ?? ''))
    return (await response.json()) as Json
  const events = response
    .body!.pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream())
  for await (const event of events) {
    const message = JSON.parse(event.data) as Json
    if (message.id === id) return message
  }
  return undefined
}

/**
 * Forwards a modern request, untouched, to a server that speaks the revision itself, and relays its answer:
 * a JSON object, or SSE events (notifications, then the answer). The returned function cancels it (closing the
 * request's stream is the revision's cancellation).
 */
export function forwardModern(url: URL, request: ModernRequest, sink: RequestSink): (reason: string) => void {
  const abort = new AbortController()
  let answered = false
  const respond = (message: Json) => {
    if (answered) return
    answered = true
    sink.respond(message)
  }
  void (async () => {
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: modernHeaders(request),
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: request.id,
          method: request.method,
          params: request.params,
        }),
        signal: abort.signal,
      })
      if (!/text\/event-stream/.test(response.headers.get('content-type') ?? '')) {
        const text = await response.text()
        try {
          respond(JSON.parse(text) as Json)
        } catch {
          respond(
            serverUnavailable(
              request.id,
              `the server answered HTTP ${response.status}: ${text.slice(0, 200)}`,
            ),
          )
        }
        return
      }
      const events = response
        .body!.pipeThrough(new TextDecoderStream())
        .pipeThrough(new EventSourceParserStream())
      for await (const event of events) {
        const message = JSON.parse(event.data) as Json
        if (message.id === request.id && ('result' in message || 'error' in message)) respond(message)
        else if (typeof message.method === 'string' && message.id === undefined) sink.notify(message)
      }
      respond(serverUnavailable(request.id, 'the server ended its stream without an answer'))
    } catch (err) {
      if (!abort.signal.aborted)
        respond(serverUnavailable(request.id, `the server is unreachable: ${errorMessage(err)}`))
    }
  })()
  return () => abort.abort()
}
