import { Agent, request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createParser } from 'eventsource-parser'
import { decodeJsonBounded } from '../../protocol/bounded-json.ts'

/**
 * Where a node reaches a streamable-HTTP server: its URL, and for a server in a sandbox without a network of
 * its own, the Unix socket its sandbox relay listens on (the URL then gives only the path).
 */
export interface HttpEndpoint {
  url: URL
  socketPath?: string
}

/**
 * One keep-alive connection pool for everything the node sends to its HTTP servers: a call reuses a warm
 * socket instead of a new connection (the pool keys sockets by host, port and Unix socket path).
 */
const POOL = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64 })

/** An HTTP exchange in flight: abort it, or read its response once it came. */
export interface Exchange {
  readonly response: Promise<IncomingMessage>
  abort(): void
}

/** Sends one request to the endpoint over the node's connection pool. */
export function exchange(
  endpoint: HttpEndpoint,
  method: string,
  headers: Record<string, string>,
  body?: Uint8Array | string,
  timeoutMs?: number,
): Exchange {
  const all = { ...headers }
  if (body !== undefined) all['content-length'] = String(Buffer.byteLength(body))
  const https = endpoint.url.protocol === 'https:'
  const request = (https ? httpsRequest : httpRequest)(endpoint.url, {
    method,
    headers: all,
    agent: https ? undefined : POOL,
    ...(endpoint.socketPath === undefined ? {} : { socketPath: endpoint.socketPath }),
    ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }),
  })
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.once('response', resolve)
    request.once('error', reject)
    request.once('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)))
  })
  request.end(body)
  return { response, abort: () => request.destroy() }
}

export async function readBody(response: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of response) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export function isEventStream(response: IncomingMessage): boolean {
  return /text\/event-stream/.test(response.headers['content-type'] ?? '')
}

/**
 * Hands on every JSON message of an SSE stream (events without data are skipped, bad JSON is dropped);
 * resolves with the last event id seen when the stream ends, however it ends.
 */
export function readEvents(
  response: IncomingMessage,
  deliver: (message: Record<string, unknown>) => void,
): Promise<string | undefined> {
  let lastEventId: string | undefined
  const parser = createParser({
    onEvent: (event) => {
      if (event.id !== undefined) lastEventId = event.id
      if (event.data === '') return
      const parsed = decodeJsonBounded(Buffer.from(event.data))
      if (parsed.ok && typeof parsed.value === 'object' && parsed.value !== null)
        deliver(parsed.value as Record<string, unknown>)
    },
  })
  response.setEncoding('utf8')
  return new Promise((resolve) => {
    response.on('data', (chunk: string) => parser.feed(chunk))
    response.on('end', () => resolve(lastEventId))
    response.on('error', () => resolve(lastEventId))
    response.on('close', () => resolve(lastEventId))
  })
}
