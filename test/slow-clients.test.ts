import { once } from 'node:events'
import { connect } from 'node:net'
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js'
import t, { type Test } from 'tap'
import type { GatewayConfigInput } from '../gateway/config.ts'
import type { GatewaySession } from '../gateway/gateway-session.ts'
import { GatewayErrorCode } from '../gateway/jsonrpc.ts'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, startSlowCall } from './support/clients.ts'
import { failoverServerConfig } from './support/fixture-server.ts'
import { parsePrometheus } from './support/prometheus.ts'
import {
  initializeRaw,
  openRaw,
  parseSse,
  progressOf,
  readEventsUntil,
  sessionHeaders,
  startStalledFlood,
} from './support/raw-sse.ts'
import { waitFor, withTimeout } from './support/wait.ts'

const FLOOD = { count: 960, bytes: 32 * 1024 } // about 31 MB of progress notifications
const floodBytes = FLOOD.count * FLOOD.bytes

const network = await startNetwork({
  servers: [failoverServerConfig()],
  gateway: {
    sessions: {
      slowClientTimeoutMs: 1_500,
      // Room for the whole flood, so that resumption after the cut can be checked for completeness.
      maxStoredEvents: 10_000,
      maxStoredEventBytes: 64 * 1024 * 1024,
      maxUnsentBytes: 1024 * 1024,
    },
  },
})
t.teardown(network.stop)
const gateway = network.gateway
const url = gateway.serverUrl('failover')

/** Another gateway into the same network, with HTTP settings of its own; stopped when the test ends. */
async function extraGateway(t: Test, http: GatewayConfigInput['http']): Promise<NexusGateway> {
  const extra = new NexusGateway({
    transport: 'memory',
    bootstrap: [network.nodes[0]!.multiaddrs[0]!.toString()],
    http: { port: 0, ...http },
    auth: { anonymous: true },
    limits: { requestsPerSecond: 0 },
    trust: { allowUnverified: true },
  })
  await extra.start()
  t.teardown(() => extra.stop())
  await extra.view.waitForServer('failover', 15_000)
  return extra
}

t.test(
  'a client that stops reading pushes back on the server; its stream is cut and resumes with nothing lost',
  async (t) => {
    const sessionId = await initializeRaw(url, 'slow')
    const session = gateway.sessions.get(sessionId)!
    const heldBack = once(gateway, 'back-pressure') as Promise<[GatewaySession]>
    const cut = once(gateway, 'slow-client-cut')
    // The client reads the first progress notification, then nothing more.
    const { res, read: firstRead } = await startStalledFlood(url, sessionId, FLOOD)
    const [held] = await withTimeout(heldBack, 20_000, 'the session to hold back')
    t.equal(held, session, 'the slow session stopped reading from its node')
    t.ok(session.heldBack)
    await withTimeout(cut, 20_000, 'the stalled response to be cut')
    const receivedWhileStalled = session.link!.receivedBytes
    // While the client read nothing, the gateway took from the node what the sockets on the way hold (the
    // kernel's buffers, a few MB on loopback) plus at most one stream window: not the flood.
    t.ok(
      receivedWhileStalled < floodBytes / 3,
      `the gateway took ${receivedWhileStalled} bytes of the ${floodBytes}-byte flood while the client was stalled`,
    )
    res.destroy()

    // The client comes back where it stopped: every notification and the result arrive, in order, once.
    const lastId = firstRead.findLast((e) => e.id !== undefined)!.id!
    const resumed = await openRaw(url, {
      method: 'GET',
      headers: { ...sessionHeaders(sessionId), accept: 'text/event-stream', 'last-event-id': lastId },
    })
    t.equal(resumed.statusCode, 200)
    const rest = await withTimeout(
      readEventsUntil(resumed, (e) => e.data !== '' && 'result' in JSON.parse(e.data)),
      60_000,
      'the resumed stream to deliver the result',
    )
    resumed.destroy()
    const seen = [...firstRead, ...rest].map(progressOf).filter((p) => p !== undefined)
    t.same(
      seen,
      Array.from({ length: FLOOD.count }, (_, i) => i + 1),
      'every progress notification arrived once, in order',
    )
    t.match(JSON.parse(rest.at(-1)!.data), {
      id: 1,
      result: { content: [{ text: `flooded ${FLOOD.count}` }] },
    })

    const metrics = parsePrometheus(await (await fetch(`${gateway.url}/metrics`)).text())
    t.equal(metrics.get('nexus_gateway_slow_client_cuts_total{server="failover"}'), 1)
    t.ok(metrics.get('nexus_gateway_back_pressure_total{server="failover"}')! >= 1)
    t.equal(metrics.get('nexus_gateway_sessions_held_back'), 0, 'nothing is held back any more')
  },
)

/** fetch whose event streams are read one chunk per `delayMs`: a client on a slow link. */
const slowReadingFetch =
  (delayMs: number): FetchLike =>
  async (input, init) => {
    const response = await fetch(input, init)
    if (response.body === null || !response.headers.get('content-type')?.includes('text/event-stream'))
      return response
    const reader = response.body.getReader()
    const paced = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, delayMs))
          const { done, value } = await reader.read()
          if (done) controller.close()
          else controller.enqueue(value)
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    )
    return new Response(paced, { status: response.status, headers: response.headers })
  }

t.test('a client that reads slowly gets everything, at its own pace, through back-pressure', async (t) => {
  const { client } = await connectStreamable(url, { fetch: slowReadingFetch(10) })
  t.teardown(() => client.close())
  const backPressured = once(gateway, 'back-pressure')
  let progressed = 0
  const answer = await withTimeout(
    client.callTool({ name: 'flood', arguments: FLOOD }, undefined, {
      onprogress: () => {
        progressed++
      },
      timeout: 120_000,
    }),
    120_000,
    'the flood to finish',
  )
  t.match(answer, { content: [{ text: `flooded ${FLOOD.count}` }] })
  t.equal(progressed, FLOOD.count, 'every progress notification arrived')
  // The flood is larger than what the socket buffers on the way can hold: it had to wait for the reader.
  await withTimeout(backPressured, 1_000, 'back-pressure to have been applied')
  t.pass('the session was held back while the client caught up')
})

t.test(
  'a legacy SSE client that stops reading loses its session after the stall timeout, not the gateway its memory',
  async (t) => {
    const closed = once(gateway, 'session-closed') as Promise<[GatewaySession]>
    const cut = once(gateway, 'slow-client-cut')
    const stream = await openRaw(`${gateway.url}/sse/failover`, {
      method: 'GET',
      headers: { accept: 'text/event-stream' },
    })
    const [endpoint] = await readEventsUntil(stream, () => true)
    const post = (body: unknown) =>
      fetch(new URL(endpoint!.data, gateway.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    await post({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: '2024-11-05',
        capabilities: {},
        clientInfo: { name: 'slow-sse', version: '1' },
      },
    })
    await readEventsUntil(stream, (e) => e.data.includes('"id":0'))
    await post({ jsonrpc: '2.0', method: 'notifications/initialized' })
    const sessionId = new URL(endpoint!.data, gateway.url).searchParams.get('sessionId')!
    const session = gateway.sessions.get(sessionId)!
    await post({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'flood', arguments: FLOOD, _meta: { progressToken: 'flood' } },
    })
    await withTimeout(cut, 30_000, 'the stalled legacy stream to be cut')
    const [gone] = await withTimeout(closed, 30_000, 'the stalled legacy session to end')
    t.equal(gone, session)
    t.ok(
      session.link === undefined || session.link.receivedBytes < floodBytes / 3,
      'the gateway did not take the flood',
    )
    stream.destroy()
  },
)

t.test(
  'a node that stops reading makes further requests fail at once with a clear error; none is lost',
  async (t) => {
    const { client } = await connectStreamable(url)
    t.teardown(() => client.close())
    // The server reports that it started, then reads nothing for 4 s.
    const blocked = startSlowCall(client, 'block', 4_000)
    await withTimeout(blocked.running, 10_000, 'the server to start blocking')
    const padding = 'p'.repeat(256 * 1024)
    const calls = Array.from({ length: 24 }, () =>
      client.callTool({ name: 'whoami', arguments: { padding } }).then(
        () => 'answered',
        (err: { code?: number; message?: string }) => {
          t.equal(err.code, GatewayErrorCode.Overloaded, String(err.message))
          t.match(err.message, /not taking this session's messages fast enough/)
          return 'refused'
        },
      ),
    )
    const outcomes = await withTimeout(Promise.all(calls), 60_000, 'every call to be answered')
    t.match(await blocked.outcome, { ok: true }, 'the blocking call itself is answered')
    t.ok(outcomes.includes('refused'), 'what the node could not take was refused')
    t.ok(outcomes.includes('answered'), 'what it took was answered')
    t.match(
      await client.callTool({ name: 'whoami' }),
      { content: [{ text: /^pid / }] },
      'the session goes on',
    )
    t.comment(
      `outcomes: ${outcomes.filter((o) => o === 'answered').length} answered, ${outcomes.filter((o) => o === 'refused').length} refused`,
    )
    // parseSse is exercised above through readEventsUntil; a direct check of a split event keeps it honest.
    t.same(parseSse('id: a\ndata: 1\n\nid: b\nda'), { events: [{ id: 'a', data: '1' }], rest: 'id: b\nda' })
  },
)

t.test(
  'a client that trickles its request is answered 408 and disconnected; the gateway serves on',
  async (t) => {
    // Short timeouts on a gateway of its own: under load, the other tests' large uploads would hit them.
    const strict = await extraGateway(t, { headersTimeoutMs: 500, requestTimeoutMs: 1_000 })
    const strictUrl = strict.serverUrl('failover')
    const { hostname, port, pathname } = new URL(strictUrl)
    /** Sends `text` and nothing more; resolves with what the gateway answered once it closed the connection. */
    const trickle = async (text: string) => {
      const socket = connect(Number(port), hostname)
      let answer = ''
      socket.on('data', (chunk) => {
        answer += chunk.toString()
      })
      socket.write(text)
      await withTimeout(once(socket, 'close'), 10_000, 'the gateway to close the connection')
      return answer
    }
    const head = `POST ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n`
    t.match(await trickle(head), /^HTTP\/1\.1 408/, 'headers that never end: 408')
    const body = `${head}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"jsonrpc":`
    t.match(await trickle(body), /^HTTP\/1\.1 408/, 'a body that never ends: 408')
    const { client } = await connectStreamable(strictUrl)
    t.match(await client.callTool({ name: 'whoami' }), { content: [{ text: /^pid / }] }, 'others are served')
    await client.close()
  },
)

t.test('request bodies read at once share one budget: past it 503, and the bytes come back', async (t) => {
  const small = await extraGateway(t, { maxBodyBytes: 512 * 1024, maxBufferedBodyBytes: 1024 * 1024 })
  const budget = small.bodyLimits.budget
  const target = new URL(small.serverUrl('failover'))
  /** Starts a POST whose body (`declared` bytes) arrives only in part: `sent` bytes, then nothing. */
  const partialPost = (declared: number, sent: number) => {
    const socket = connect(Number(target.port), target.hostname)
    let answer = ''
    socket.on('data', (chunk) => {
      answer += chunk.toString()
    })
    socket.on('error', () => {})
    socket.write(
      `POST ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: application/json\r\n` +
        `Accept: application/json, text/event-stream\r\nContent-Length: ${declared}\r\n\r\n`,
    )
    socket.write('x'.repeat(sent))
    return { socket, answer: () => answer }
  }
  const first = partialPost(500 * 1024, 450 * 1024)
  const second = partialPost(500 * 1024, 450 * 1024)
  await waitFor(() => budget.bytes === 900 * 1024, budget, 'change', 10_000, 'both bodies read so far')
  const third = partialPost(500 * 1024, 300 * 1024)
  // The refusal comes at once; the connection stays open to read (and drop) the rest of the body, so that a
  // client still sending it gets the answer rather than a broken pipe.
  await waitFor(
    () => third.answer().includes('\r\n\r\n'),
    third.socket,
    'data',
    10_000,
    'the third upload to be refused',
  )
  third.socket.destroy()
  t.match(third.answer(), /^HTTP\/1\.1 503/, 'past the budget: 503')
  t.match(third.answer(), /retry-after: 1/i)
  t.match(third.answer(), /reading too many request bodies/)
  t.ok(budget.bytes <= budget.maxBytes, `the budget held (${budget.bytes} of ${budget.maxBytes} bytes)`)
  const released = waitFor(() => budget.bytes === 0, budget, 'change', 10_000, 'every body given back')
  first.socket.destroy()
  second.socket.destroy()
  await released
  t.pass('the bodies of clients that went away are given back')
  const { client } = await connectStreamable(small.serverUrl('failover'))
  t.match(
    await client.callTool({ name: 'whoami' }),
    { content: [{ text: /^pid / }] },
    'the gateway serves on',
  )
  await client.close()
})
