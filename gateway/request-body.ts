import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseJsonBounded } from '../protocol/bounded-json.ts'
import { sendHttpError } from './http-responses.ts'

/**
 * How much of a refused body the gateway still reads (and drops) so that the client, still sending it, gets
 * the 413 or 503: a client that writes its whole body before reading the answer — `fetch` does — sees a broken
 * pipe instead when the connection closes under it. Past this the connection is closed all the same.
 */
export const MAX_DISCARDED_BODY_BYTES = 64 * 1024 * 1024

export type BodyResult =
  | { kind: 'json'; value: unknown }
  | { kind: 'too-large'; limit: number }
  | { kind: 'busy' }
  | { kind: 'aborted' }
  | { kind: 'malformed' }
  | { kind: 'too-deep'; message: string; id?: string | number }
  | { kind: 'empty' }

/**
 * The bytes of request bodies the gateway is reading, all requests together. Each request's body is bounded,
 * but many at once (slow uploads, or a burst of large ones) are bounded only by this.
 */
export class BodyBudget extends EventEmitter<{ change: [] }> {
  readonly maxBytes: number
  #bytes = 0

  constructor(maxBytes: number) {
    super()
    this.maxBytes = maxBytes
  }

  get bytes(): number {
    return this.#bytes
  }

  tryTake(bytes: number): boolean {
    if (this.#bytes + bytes > this.maxBytes) return false
    this.#bytes += bytes
    this.emit('change')
    return true
  }

  give(bytes: number): void {
    this.#bytes -= bytes
    if (bytes > 0) this.emit('change')
  }
}

export interface BodyLimits {
  /** One body's limit. */
  maxBodyBytes: number
  /** All bodies being read at once. */
  budget: BodyBudget
  /** Told of every body refused (too large, over the budget, not JSON, too deep), for counting. */
  onRefused?: (reason: string) => void
}

/**
 * Reads a JSON body, stopping as soon as it passes the limit so an oversized upload costs no more memory, or
 * as soon as the bodies being read together would pass the gateway's budget. What was read goes back to the
 * budget once the body is parsed or refused.
 */
export function readJsonBody(req: IncomingMessage, limits: BodyLimits): Promise<BodyResult> {
  const limit = limits.maxBodyBytes
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) {
    discardRest(req, 0)
    return Promise.resolve({ kind: 'too-large', limit })
  }
  if (req.destroyed) return Promise.resolve({ kind: 'aborted' })
  const { promise, resolve } = Promise.withResolvers<BodyResult>()
  const chunks: Buffer[] = []
  let size = 0
  const finish = (result: () => BodyResult) => {
    req.off('data', onData)
    req.off('end', onEnd)
    req.off('close', onClose)
    const value = result()
    limits.budget.give(size)
    chunks.length = 0
    resolve(value)
  }
  const onData = (chunk: Buffer) => {
    if (size + chunk.byteLength > limit) {
      discardRest(req, size + chunk.byteLength)
      return finish(() => ({ kind: 'too-large', limit }))
    }
    if (!limits.budget.tryTake(chunk.byteLength)) {
      discardRest(req, size + chunk.byteLength)
      return finish(() => ({ kind: 'busy' }))
    }
    size += chunk.byteLength
    chunks.push(chunk)
  }
  const onEnd = () => finish(() => parseBody(chunks, size))
  // The client went away before the body ended.
  const onClose = () => finish(() => ({ kind: 'aborted' }))
  req.on('data', onData)
  req.once('end', onEnd)
  req.once('close', onClose)
  return promise
}

/**
 * Reads the rest of a refused body without keeping it, up to `MAX_DISCARDED_BODY_BYTES` in all (counting the
 * `alreadyRead`), so that the client finishes sending and reads the refusal; past that the connection closes.
 */
function discardRest(req: IncomingMessage, alreadyRead: number): void {
  let discarded = alreadyRead
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.byteLength
    if (discarded > MAX_DISCARDED_BODY_BYTES) req.socket.destroy()
  })
  req.resume()
}

function parseBody(chunks: Buffer[], size: number): BodyResult {
  if (size === 0) return { kind: 'empty' }
  const parsed = parseJsonBounded(Buffer.concat(chunks, size).toString('utf8'))
  if (parsed.ok) return { kind: 'json', value: parsed.value }
  if (parsed.reason === 'malformed') return { kind: 'malformed' }
  return { kind: 'too-deep', message: parsed.message, id: parsed.id }
}

/**
 * Reads a JSON body for an MCP endpoint, answering 413, 503 or a JSON-RPC parse error itself when the body is
 * too large, the gateway's body budget is spent, or it is not JSON. Returns the parsed value, or undefined when the response was already sent.
 */
export async function readJsonBodyOrReply(
  req: IncomingMessage,
  res: ServerResponse,
  limits: BodyLimits,
): Promise<{ value: unknown } | undefined> {
  const read = await readJsonBody(req, limits)
  if (read.kind !== 'json' && read.kind !== 'aborted') limits.onRefused?.(`request body ${read.kind}`)
  if (read.kind === 'too-large') {
    sendHttpError(res, 413, -32600, `request body exceeds the limit of ${read.limit} bytes`)
    return undefined
  }
  if (read.kind === 'busy') {
    sendHttpError(res, 503, -32000, 'Service unavailable: the gateway is reading too many request bodies', {
      'retry-after': '1',
    })
    return undefined
  }
  if (read.kind === 'aborted') return undefined
  if (read.kind === 'too-deep') {
    // Refused before anything walks it: serialising or validating it would blow the stack.
    sendHttpError(res, 400, -32600, `Invalid Request: ${read.message}`, {}, read.id ?? null)
    return undefined
  }
  if (read.kind !== 'json') {
    sendHttpError(res, 400, -32700, 'Parse error: the body is not valid JSON')
    return undefined
  }
  return { value: read.value }
}
