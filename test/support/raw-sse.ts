import { type IncomingMessage, request } from 'node:http'

/** One Server-Sent Event as it arrived. */
export interface SseEvent {
  id: string | undefined
  data: string
}

/**
 * Parses the complete events at the start of an SSE text; `rest` is what follows the last complete one.
 * Tests use it to read streams byte by byte, at their own pace, which an SDK client does not allow.
 */
export function parseSse(text: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = []
  let start = 0
  for (let end = text.indexOf('\n\n', start); end !== -1; end = text.indexOf('\n\n', start)) {
    let id: string | undefined
    const data: string[] = []
    for (const line of text.slice(start, end).split('\n')) {
      if (line.startsWith('id:')) id = line.slice(3).trim()
      else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
    }
    events.push({ id, data: data.join('\n') })
    start = end + 2
  }
  return { events, rest: text.slice(start) }
}

/** Sends an HTTP request and resolves with the response once its headers arrived, its body not yet read. */
export function openRaw(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method, headers: init.headers }, resolve)
    req.once('error', reject)
    req.end(init.body)
  })
}

/** Events read from a response after the one a `readEventsUntil` awaited, and the text of one not yet whole. */
const unread = new WeakMap<IncomingMessage, { events: SseEvent[]; text: string }>()

/**
 * Reads SSE events from `res` until `until` holds for one, then stops reading (the response stays paused):
 * how a client that stops reading behaves. Events that came in the same read after that one are kept for the
 * next call on the same response.
 */
export function readEventsUntil(
  res: IncomingMessage,
  until: (event: SseEvent) => boolean,
): Promise<SseEvent[]> {
  const seen: SseEvent[] = []
  const left = unread.get(res) ?? { events: [], text: '' }
  unread.delete(res)
  let buffered = left.text
  /** Takes events in order; true once the awaited one is seen (the rest are kept as unread). */
  const take = (events: SseEvent[]): boolean => {
    for (const [i, event] of events.entries()) {
      seen.push(event)
      if (until(event)) {
        unread.set(res, { events: events.slice(i + 1), text: buffered })
        return true
      }
    }
    return false
  }
  if (take(left.events)) return Promise.resolve(seen)
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      const { events, rest } = parseSse(buffered + chunk.toString())
      buffered = rest
      if (!take(events)) return
      res.off('data', onData)
      res.off('end', onEnd)
      res.pause()
      resolve(seen)
    }
    const onEnd = () => reject(new Error(`stream ended after ${seen.length} events without the one awaited`))
    res.on('data', onData)
    res.once('end', onEnd)
    res.once('error', reject)
    res.resume()
  })
}

export const RAW_PROTOCOL_VERSION = '2025-11-25'

/** The headers of a request within a streamable HTTP session. */
export function sessionHeaders(sessionId: string, contentType?: string): Record<string, string> {
  return {
    accept: 'application/json, text/event-stream',
    'mcp-session-id': sessionId,
    'mcp-protocol-version': RAW_PROTOCOL_VERSION,
    ...(contentType === undefined ? {} : { 'content-type': contentType }),
  }
}

/** An `initialize` request as a client sends it, for tests that speak HTTP themselves. */
export function initializeRequest(clientName = 'raw') {
  return {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: {
      protocolVersion: RAW_PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: clientName, version: '1' },
    },
  }
}

/** Sends `initialize` as a plain HTTP request; resolves with the response, its body unread. */
export function postInitialize(url: string, clientName = 'raw'): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify(initializeRequest(clientName)),
  })
}

/** Opens a streamable HTTP session with plain HTTP requests; resolves with its id. */
export async function initializeRaw(url: string, clientName = 'raw'): Promise<string> {
  const res = await postInitialize(url, clientName)
  await res.text()
  const sessionId = res.headers.get('mcp-session-id')
  if (sessionId === null) throw new Error(`initialize failed with HTTP ${res.status}`)
  await fetch(url, {
    method: 'POST',
    headers: sessionHeaders(sessionId, 'application/json'),
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  })
  return sessionId
}

/**
 * Calls the fixtures' `flood` tool and reads its stream up to the first progress notification, then stops
 * reading: a client that stalls while its server keeps writing. Returns the paused response and what it read.
 */
export async function startStalledFlood(
  url: string,
  sessionId: string,
  flood: { count: number; bytes: number },
): Promise<{ res: IncomingMessage; read: SseEvent[] }> {
  const res = await openRaw(url, {
    method: 'POST',
    headers: sessionHeaders(sessionId, 'application/json'),
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'flood', arguments: flood, _meta: { progressToken: 'flood' } },
    }),
  })
  const read = await readEventsUntil(res, (e) => progressOf(e) !== undefined)
  return { res, read }
}

/** The progress value of a progress notification event; undefined for any other event. */
export function progressOf(event: SseEvent): number | undefined {
  if (event.data === '') return undefined
  const message = JSON.parse(event.data) as { method?: string; params?: { progress?: number } }
  return message.method === 'notifications/progress' ? message.params!.progress : undefined
}
