import type { IncomingMessage, ServerResponse } from 'node:http'
import { sendHttpError } from './http-responses.ts'

export type BodyResult =
  | { kind: 'json'; value: unknown }
  | { kind: 'too-large'; limit: number }
  | { kind: 'malformed'; reason: string }
  | { kind: 'empty' }

/** Reads a JSON body, stopping as soon as it passes the limit so an oversized upload costs no more memory. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > limit) return { kind: 'too-large', limit }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength
    if (size > limit) return { kind: 'too-large', limit }
    chunks.push(chunk)
  }
  if (size === 0) return { kind: 'empty' }
  try {
    return { kind: 'json', value: JSON.parse(Buffer.concat(chunks, size).toString('utf8')) }
  } catch (err) {
    return { kind: 'malformed', reason: (err as Error).message }
  }
}

/**
 * Reads a JSON body for an MCP endpoint, answering 413 or a JSON-RPC parse error itself when the body is too
 * large or not JSON. Returns the parsed value, or undefined when the response was already sent.
 */
export async function readJsonBodyOrReply(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
): Promise<{ value: unknown } | undefined> {
  const read = await readJsonBody(req, limit)
  if (read.kind === 'too-large') {
    sendHttpError(res, 413, -32600, `request body exceeds the limit of ${read.limit} bytes`, {
      connection: 'close',
    })
    return undefined
  }
  if (read.kind !== 'json') {
    sendHttpError(res, 400, -32700, 'Parse error: the body is not valid JSON')
    return undefined
  }
  return { value: read.value }
}
