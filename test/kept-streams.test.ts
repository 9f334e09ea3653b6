import { once } from 'node:events'
import type { Stream } from '@libp2p/interface'
import pino from 'pino'
import { Registry } from 'prom-client'
import t, { type Test } from 'tap'
import { KeptStreams } from '../gateway/kept-streams.ts'
import type { NetworkView } from '../gateway/network-view.ts'
import { connectToHost, type NodeLink } from '../gateway/node-link.ts'
import type { NexusNode } from '../node/nexus-node.ts'
import { FramedStream } from '../protocol/framed-stream.ts'
import { InputGuard } from '../protocol/input-guard.ts'
import { MCP_STREAM_PROTOCOL } from '../protocol/names.ts'
import { createPeer } from '../protocol/peer.ts'
import {
  acceptedFrame,
  decodeJson,
  OpenReplySchema,
  OpenSessionSchema,
  openFrame,
  parseFrame,
} from '../protocol/session-handshake.ts'
import { type NetworkOptions, startNetwork } from '../testing/network.ts'
import { textOf } from './support/clients.ts'
import { failoverServerConfig } from './support/fixture-server.ts'
import { connectModern } from './support/modern-clients.ts'
import { waitFor, withTimeout } from './support/wait.ts'

// Modern-era requests share streams: after its answer a stream to a node waits, on both sides, for the next
// request to that node. Real gateways, nodes and SDK v2 clients over libp2p; where a node must misbehave in a
// precise moment (closing a kept stream just as a request reaches it), a libp2p peer plays that node.

/** The node's open MCP streams: with every request answered, the ones kept waiting. */
const openStreams = (node: NexusNode) =>
  node.peer
    .getConnections()
    .flatMap((c) => c.streams)
    .filter((s) => s.protocol === MCP_STREAM_PROTOCOL && s.status === 'open').length

const whoami = { name: 'whoami', arguments: {} }

/** A gateway and one node hosting the failover fixture, and a modern client of it; all gone after the test. */
async function networkWithClient(t: Test, options: Partial<NetworkOptions> = {}) {
  const network = await startNetwork({ nodes: 1, servers: [failoverServerConfig()], ...options })
  t.teardown(network.stop)
  const { gateway } = network
  const client = await connectModern(gateway.serverUrl('failover'))
  t.teardown(() => client.close())
  return { gateway, node: network.nodes[0]!, client, kept: gateway.keptStreams }
}

t.test('sequential requests share one stream; concurrent ones keep as many as were in flight', async (t) => {
  const { gateway, node, client, kept } = await networkWithClient(t)
  const reusedBefore = kept.counts.reused
  let served = 0
  node.on('modern-request', () => served++)
  for (let i = 0; i < 10; i++) t.match(textOf(await client.callTool(whoami)), /^pid \d+/)
  t.equal(served, 10, 'the node served every request')
  t.equal(kept.counts.reused - reusedBefore, 10, 'each request took the stream the one before left')
  t.equal(kept.size, 1, 'one stream waits on the gateway')
  t.equal(openStreams(node), 1, 'and on the node')
  const metrics = await gateway.metrics.registry.metrics()
  t.match(metrics, /^nexus_gateway_kept_streams 1$/m, 'the metric counts the waiting stream')
  t.match(
    metrics,
    new RegExp(`^nexus_gateway_kept_stream_events\\{event="reused"\\} ${kept.counts.reused}$`, 'm'),
    'and the reuses',
  )

  await Promise.all(Array.from({ length: 8 }, () => client.callTool(whoami)))
  const waiting = kept.size
  t.ok(waiting >= 1 && waiting <= 8, `at most one stream per request in flight waits (${waiting})`)
  t.equal(openStreams(node), waiting, 'the node holds the same streams open')
  const reused = kept.counts.reused
  await Promise.all(Array.from({ length: waiting }, () => client.callTool(whoami)))
  t.equal(kept.counts.reused - reused, waiting, 'the next burst takes every waiting stream')
  t.equal(kept.counts.lost, 0, 'no stream was lost')
})

t.test('a request the client abandons ends its stream, which is not kept', async (t) => {
  const { node, client, kept } = await networkWithClient(t)
  await client.callTool(whoami)
  t.equal(kept.size, 1)
  const keptBefore = kept.counts.kept
  const abandon = new AbortController()
  const started = once(node, 'modern-request')
  const slow = client.callTool({ name: 'slow_read', arguments: { ms: 30_000 } }, { signal: abandon.signal })
  await withTimeout(started, 10_000, 'the slow call to reach the node')
  t.equal(kept.size, 0, 'the slow call took the waiting stream')
  abandon.abort()
  await t.rejects(slow)
  t.match(textOf(await client.callTool(whoami)), /^pid/, 'the next request is served')
  t.equal(kept.counts.kept - keptBefore, 1, 'only the answered request gave its stream back')
})

t.test('a stream the node stops keeping is dropped, and the next request opens a new one', async (t) => {
  const { client, kept } = await networkWithClient(t, { node: { keptStreamIdleMs: 300 } })
  await withTimeout(
    waitFor(() => kept.size === 0 && kept.counts.lost > 0, kept, 'lost', 10_000),
    10_000,
    'the node to end the idle stream',
  )
  const reused = kept.counts.reused
  t.match(textOf(await client.callTool(whoami)), /^pid/, 'the next request is served')
  t.equal(kept.counts.reused, reused, 'on a new stream')
})

t.test('a gateway lets go of a stream after its own idle time', async (t) => {
  const { client, kept } = await networkWithClient(t, { gateway: { keptStreamIdleMs: 200 } })
  await waitFor(() => kept.counts.expired > 0, kept, 'expired', 10_000)
  t.equal(kept.size, 0, 'nothing waits on the gateway')
  t.match(textOf(await client.callTool(whoami)), /^pid/, 'the next request is served')
})

t.test('with keeping turned off on either side, every request has a stream of its own', async (t) => {
  for (const [side, options] of [
    ['node', { node: { keptStreamIdleMs: 0 } }],
    ['gateway', { gateway: { keptStreamIdleMs: 0 } }],
  ] as const) {
    const { client, kept } = await networkWithClient(t, options)
    for (let i = 0; i < 3; i++) await client.callTool(whoami)
    t.same(kept.counts, { reused: 0, kept: 0, expired: 0, lost: 0 }, `${side} off: nothing kept`)
  }
})

t.test('a node refuses anything but a modern open on a kept stream, and ends it', async (t) => {
  const network = await startNetwork({ nodes: 1, servers: [failoverServerConfig()], gateways: 0 })
  t.teardown(network.stop)
  const node = network.nodes[0]!
  const peer = await createPeer({ transport: 'memory' })
  t.teardown(() => peer.stop())
  await peer.dial(node.peer.getMultiaddrs()[0]!)
  const auth = { principal: 'p' }
  const request = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }
  /** A kept stream after one answered request. */
  const keptStream = async () => {
    const framed = new FramedStream(await peer.dialProtocol(node.peer.peerId, MCP_STREAM_PROTOCOL))
    framed.sendJson(openFrame('failover', 'modern-00000001', auth, 'modern', true))
    framed.sendJson(request)
    t.match(parseFrame(OpenReplySchema, await framed.nextFrame(5_000), 'reply'), {
      type: 'accepted',
      keep: true,
    })
    t.match(decodeJson(await framed.nextFrame(10_000)), { id: 1, result: { tools: Array } })
    return framed
  }
  const cases: [string, unknown][] = [
    ['a legacy open', openFrame('failover', 'session-00000002', auth)],
    ['a frame that is no open', { jsonrpc: '2.0', id: 2, method: 'tools/list' }],
  ]
  for (const [what, frame] of cases) {
    const framed = await keptStream()
    framed.sendJson(frame)
    t.match(
      parseFrame(OpenReplySchema, await framed.nextFrame(5_000), 'reply'),
      { type: 'refused', code: 'PROTOCOL_VIOLATION' },
      `${what} is refused`,
    )
    await t.rejects(framed.nextFrame(5_000), /ended/, `${what}: the stream ends`)
  }
  const framed = await keptStream()
  framed.sendJson(openFrame('nope', 'modern-00000003', auth, 'modern', true))
  t.match(
    parseFrame(OpenReplySchema, await framed.nextFrame(5_000), 'reply'),
    { type: 'refused', code: 'UNKNOWN_SERVER' },
    'a server the node does not host is refused as on a new stream',
  )
})

/**
 * A libp2p peer that plays a node: it accepts modern requests and keeps their streams, answering each with
 * the request's id. `onNextOpen` decides what it does when a kept stream brings the next request.
 */
async function fakeNode(onNextOpen: () => 'serve' | 'close' | 'hang') {
  const peer = await createPeer({ transport: 'memory' })
  let streams = 0
  await peer.handle(MCP_STREAM_PROTOCOL, async (stream: Stream) => {
    streams++
    const framed = new FramedStream(stream)
    for (let first = true; ; first = false) {
      let open: ReturnType<typeof OpenSessionSchema.parse>
      try {
        open = parseFrame(OpenSessionSchema, await framed.nextFrame(10_000), 'open')
      } catch {
        return
      }
      const next = first ? 'serve' : onNextOpen()
      if (next === 'close') return void (await framed.close())
      if (next === 'hang') return
      framed.sendJson(acceptedFrame(open.serverId, undefined, open.keep))
      const request = decodeJson(await framed.nextFrame(10_000)) as { id: number }
      framed.sendJson({ jsonrpc: '2.0', id: request.id, result: { streams } })
    }
  })
  return { peer, streams: () => streams }
}

t.test('a gateway whose kept stream ends as its request reaches the node', async (t) => {
  const gatewayPeer = await createPeer({ transport: 'memory' })
  t.teardown(() => gatewayPeer.stop())
  let behaviour: 'serve' | 'close' | 'hang' = 'serve'
  const node = await fakeNode(() => behaviour)
  t.teardown(() => node.peer.stop())
  await gatewayPeer.dial(node.peer.getMultiaddrs()[0]!)
  const host = { peerId: node.peer.peerId.toString(), openedSinceAnnouncement: 0 }
  const view = { findHosts: async () => [host], noteSessionOpened: () => {} } as unknown as NetworkView
  const kept = new KeptStreams({ idleMs: 30_000 })
  t.teardown(() => kept.closeAll())
  const guard = new InputGuard(new Registry(), 'test', pino({ level: 'silent' }))
  const call = async (id: number, handshakeTimeoutMs = 5_000) => {
    const link: NodeLink = await connectToHost(gatewayPeer, view, () => ({ sessions: 0, inFlight: 0 }), {
      serverId: 'fake',
      sessionId: `modern-0000000${id}`,
      auth: { principal: 'p' },
      handshakeTimeoutMs,
      era: 'modern',
      firstMessage: { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'write' } },
      guard,
      kept,
    })
    const answer = await new Promise((resolve) => (link.onMessage = resolve))
    link.release()
    return answer
  }
  t.match(await call(1), { id: 1, result: { streams: 1 } })
  t.equal(kept.size, 1, 'the answered stream waits')
  behaviour = 'close'
  t.match(await call(2), { id: 2, result: { streams: 2 } }, 'the request goes out again, on a new stream')
  t.equal(kept.counts.reused, 1, 'after trying the kept one')
  behaviour = 'hang'
  await t.rejects(
    call(3, 300),
    { code: 'NO_HOST', message: /unreachable: no frame within 300 ms/ },
    'a kept stream whose node goes silent fails as a new one would (no second try: it may have run)',
  )
  t.equal(node.streams(), 2, 'the silent node got no new stream')
  t.equal(kept.size, 0, 'the silent stream is not kept')
})

t.test('a node that sends anything on a waiting stream loses it', async (t) => {
  const gatewayPeer = await createPeer({ transport: 'memory' })
  t.teardown(() => gatewayPeer.stop())
  const node = await createPeer({ transport: 'memory' })
  t.teardown(() => node.stop())
  await node.handle(MCP_STREAM_PROTOCOL, async (stream: Stream) => {
    const framed = new FramedStream(stream)
    const open = parseFrame(OpenSessionSchema, await framed.nextFrame(10_000), 'open')
    framed.sendJson(acceptedFrame(open.serverId, undefined, true))
    const request = decodeJson(await framed.nextFrame(10_000)) as { id: number }
    framed.sendJson({ jsonrpc: '2.0', id: request.id, result: {} })
    // Unasked for, after the answer.
    framed.sendJson({ jsonrpc: '2.0', method: 'notifications/message', params: { data: 'late' } })
  })
  await gatewayPeer.dial(node.getMultiaddrs()[0]!)
  const host = { peerId: node.peerId.toString(), openedSinceAnnouncement: 0 }
  const view = { findHosts: async () => [host], noteSessionOpened: () => {} } as unknown as NetworkView
  const kept = new KeptStreams({ idleMs: 30_000 })
  t.teardown(() => kept.closeAll())
  const link = await connectToHost(gatewayPeer, view, () => ({ sessions: 0, inFlight: 0 }), {
    serverId: 'fake',
    sessionId: 'modern-00000001',
    auth: { principal: 'p' },
    handshakeTimeoutMs: 5_000,
    era: 'modern',
    firstMessage: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    guard: new InputGuard(new Registry(), 'test', pino({ level: 'silent' })),
    kept,
  })
  // Released the moment the answer arrives, as the late frame may come in the same read.
  link.onMessage = (message) => {
    if ('id' in message) link.release()
  }
  await waitFor(() => kept.counts.lost === 1, kept, 'lost', 5_000)
  t.equal(kept.size, 0, 'the stream is dropped, not handed to the next request')
})
