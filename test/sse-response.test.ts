import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import t, { type Test } from 'tap'
import { SseResponse } from '../gateway/sse-response.ts'

/**
 * `SseResponse` on a real HTTP server, read from a raw socket: what reaches the client in which read. On
 * loopback one write of a few hundred bytes arrives in one read, so the reads show the writes.
 */
const PRIMING = 'id: 1\ndata: \n\n'
const ANSWER = 'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'
const HOLD_MS = 200

/** A server whose every request is handled by `handle`, and a raw client socket that collects its reads. */
async function serve(t: Test, handle: (res: ServerResponse) => void) {
  const server = createServer((_req, res) => handle(res))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  const reads: string[] = []
  const waiters: (() => void)[] = []
  socket.on('data', (chunk: Buffer) => {
    reads.push(chunk.toString())
    for (const wake of waiters.splice(0)) wake()
  })
  socket.write('POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n')
  /** Resolves once `count` reads arrived; rejects after `ms`. */
  const readsArrived = async (count: number, ms = 5_000) => {
    const deadline = AbortSignal.timeout(ms)
    while (reads.length < count) {
      deadline.throwIfAborted()
      await Promise.race([
        new Promise<void>((resolve) => waiters.push(resolve)),
        once(deadline, 'abort').then(() => deadline.throwIfAborted()),
      ])
    }
    return reads
  }
  return { reads, readsArrived, socket }
}

t.test('a request answered at once: headers, priming event and answer in one read', async (t) => {
  const { readsArrived, socket } = await serve(t, (res) => {
    const stream = new SseResponse(res, {}, { first: PRIMING, holdMs: HOLD_MS })
    stream.end(ANSWER)
  })
  const [first] = await readsArrived(1)
  t.match(first, /^HTTP\/1.1 200 OK\r\n/, 'the status line')
  t.match(first, /content-type: text\/event-stream/)
  t.ok(first!.includes(PRIMING + ANSWER), 'the priming event, then the answer, in the same read')
  t.match(first, /0\r\n\r\n$/, 'and the end of the chunked body')
  socket.end()
})

t.test('a request not answered within the hold: headers and priming event go out alone', async (t) => {
  let stream: SseResponse | undefined
  const { readsArrived, reads } = await serve(t, (res) => {
    stream = new SseResponse(res, {}, { first: PRIMING, holdMs: HOLD_MS })
  })
  const started = performance.now()
  await readsArrived(1)
  t.ok(performance.now() - started >= HOLD_MS * 0.9, 'nothing came before the hold ran out')
  t.match(reads[0], /^HTTP\/1.1 200 OK\r\n/)
  t.ok(reads[0]!.endsWith(`${PRIMING}\r\n`), 'the headers carry the priming event')
  stream!.end(ANSWER)
  await readsArrived(2)
  t.ok(reads[1]!.includes(ANSWER), 'the answer comes later, in its own read')
})

t.test('a message before the hold runs out takes the headers with it', async (t) => {
  const progress = 'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\n\n'
  let stream: SseResponse | undefined
  const { readsArrived, reads } = await serve(t, (res) => {
    stream = new SseResponse(res, {}, { first: PRIMING, holdMs: 60_000 })
    stream.write(progress)
  })
  await readsArrived(1)
  t.match(reads[0], /^HTTP\/1.1 200 OK\r\n/)
  t.ok(reads[0]!.includes(PRIMING + progress), 'the headers, the priming event and the notification at once')
  stream!.end(ANSWER)
  await readsArrived(2)
  t.ok(reads[1]!.includes(ANSWER), 'the answer in a read of its own')
})

t.test('without a hold, headers go out at once even with nothing to send', async (t) => {
  let stream: SseResponse | undefined
  const { readsArrived, reads } = await serve(t, (res) => {
    stream = new SseResponse(res, {})
  })
  await readsArrived(1)
  t.match(reads[0], /^HTTP\/1.1 200 OK\r\n[\s\S]*\r\n\r\n$/, 'the headers alone')
  stream!.end()
})

t.test('a client gone while headers are held: later writes are no-ops', async (t) => {
  let stream: SseResponse | undefined
  let closed: Promise<unknown> | undefined
  const { socket } = await serve(t, (res) => {
    stream = new SseResponse(res, {}, { first: PRIMING, holdMs: HOLD_MS })
    closed = once(res, 'close')
    socket.destroy()
  })
  // The handler ran once the request arrived; wait for the response to see its client gone.
  while (closed === undefined) await new Promise((resolve) => setImmediate(resolve))
  await closed
  t.notOk(stream!.open, 'the stream knows its client is gone')
  stream!.write(ANSWER)
  stream!.end(ANSWER)
  t.pass('writing to it after is a no-op, not an error')
})
