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

/**
 * Reads SSE events from `res` until `until` holds for one, then stops reading (the response stays paused):
 * how a client that stops reading behaves.
 */
export function readEventsUntil(
  res: IncomingMessage,
  until: (event: SseEvent) => boolean,
): Promise<SseEvent[]> {
  const seen: SseEvent[] = []
  let buffered = ''
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      const { events, rest } = parseSse(buffered + chunk.toString())
      buffered = rest
      for (const event of events) {
        seen.push(event)
        if (until(event)) {
          res.off('data', onData)
          res.off('end', onEnd)
          res.pause()
          resolve(seen)
          return
        }
      }
    }
    const onEnd = () => reject(new Error(`stream ended after ${seen.length} events without the one awaited`))
    res.on('data', onData)
    res.once('end', onEnd)
    res.once('error', reject)
    res.resume()
  })
}
