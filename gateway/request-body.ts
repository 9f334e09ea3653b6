import type { IncomingMessage } from 'node:http'

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
