import type { IncomingMessage } from 'node:http'
import { decodeJsonBounded } from '../../protocol/bounded-json.ts'
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
import { exchange, type HttpEndpoint, isEventStream, readBody, readEvents } from '../runtime/http-endpoint.ts'
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
const PROBE_ID = 'nexus-era-probe'

/**
 * Which eras a streamable-HTTP server speaks, asked at start: `modern` when it answers `server/discover` with
 * revision 2026-07-28 among its versions, `legacy` when it answers `initialize` (the probe's session is ended
 * at once). A server that answers neither is taken as legacy, as every server was before the revision.
 */
export async function probeEras(endpoint: HttpEndpoint, timeoutMs = 5_000): Promise<Era[]> {
  const [modern, legacy] = await Promise.all([
    speaksModern(endpoint, timeoutMs),
    speaksLegacy(endpoint, timeoutMs),
  ])
  const eras: Era[] = []
  if (legacy || !modern) eras.push('legacy')
  if (modern) eras.push('modern')
  return eras
}

async function speaksModern(endpoint: HttpEndpoint, timeoutMs: number): Promise<boolean> {
  const request: ModernRequest = {
    id: PROBE_ID,
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
    const sent = exchange(
      endpoint,
      'POST',
      modernHeaders(request),
      JSON.stringify({ jsonrpc: '2.0', ...request }),
      timeoutMs,
    )
    const response = await sent.response
    if (response.statusCode !== 200) {
      response.resume()
      return false
    }
    const result = (await answerOf(response, PROBE_ID))?.result as { supportedVersions?: unknown } | undefined
    return Array.isArray(result?.supportedVersions) && result.supportedVersions.includes(MODERN_VERSIONS[0])
  } catch {
    return false
  }
}

async function speaksLegacy(endpoint: HttpEndpoint, timeoutMs: number): Promise<boolean> {
  const initialize = {
    jsonrpc: '2.0',
    id: PROBE_ID,
    method: 'initialize',
    params: { protocolVersion: BRIDGE_LEGACY_VERSION, capabilities: {}, clientInfo: PROBE_CLIENT },
  }
  try {
    const response = await exchange(
      endpoint,
      'POST',
      { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      JSON.stringify(initialize),
      timeoutMs,
    ).response
    const session = response.headers['mcp-session-id']
    const answer = response.statusCode === 200 ? await answerOf(response, PROBE_ID) : void response.resume()
    if (typeof session === 'string')
      await exchange(
        endpoint,
        'DELETE',
        { 'mcp-session-id': session, 'mcp-protocol-version': BRIDGE_LEGACY_VERSION },
        undefined,
        timeoutMs,
      )
        .response.then((r) => r.resume())
        .catch(() => {})
    const result = answer?.result as { protocolVersion?: unknown } | undefined
    return typeof result?.protocolVersion === 'string'
  } catch {
    return false
  }
}

/** The answer to `id` in a response, whether one JSON object or SSE events. */
async function answerOf(response: IncomingMessage, id: ModernRequest['id']): Promise<Json | undefined> {
  if (!isEventStream(response)) {
    const parsed = decodeJsonBounded(await readBody(response))
    return parsed.ok ? (parsed.value as Json) : undefined
  }
  let answer: Json | undefined
  await readEvents(response, (message) => {
    if (message.id === id && answer === undefined) {
      answer = message
      response.destroy()
    }
  })
  return answer
}

/**
 * Forwards a modern request, untouched, to a server that speaks the revision itself, and relays its answer:
 * a JSON object, or SSE events (notifications, then the answer). The returned function cancels it (closing the
 * request's stream is the revision's cancellation).
 */
export function forwardModern(
  endpoint: HttpEndpoint,
  request: ModernRequest,
  sink: RequestSink,
): (reason: string) => void {
  let answered = false
  let cancelled = false
  const respond = (message: Json) => {
    if (answered) return
    answered = true
    sink.respond(message)
  }
  const sent = exchange(
    endpoint,
    'POST',
    modernHeaders(request),
    JSON.stringify({ jsonrpc: '2.0', id: request.id, method: request.method, params: request.params }),
  )
  void (async () => {
    try {
      const response = await sent.response
      if (!isEventStream(response)) {
        const text = await readBody(response)
        const parsed = decodeJsonBounded(text)
        if (parsed.ok && typeof parsed.value === 'object' && parsed.value !== null)
          return respond(parsed.value as Json)
        return respond(
          serverUnavailable(
            request.id,
            `the server answered HTTP ${response.statusCode}: ${text.toString('utf8').slice(0, 200)}`,
          ),
        )
      }
      await readEvents(response, (message) => {
        if (message.id === request.id && ('result' in message || 'error' in message)) respond(message)
        else if (typeof message.method === 'string' && message.id === undefined && !answered)
          sink.notify(message)
      })
      if (!cancelled) respond(serverUnavailable(request.id, 'the server ended its stream without an answer'))
    } catch (err) {
      if (!cancelled)
        respond(serverUnavailable(request.id, `the server is unreachable: ${errorMessage(err)}`))
    }
  })()
  return () => {
    cancelled = true
    sent.abort()
  }
}
