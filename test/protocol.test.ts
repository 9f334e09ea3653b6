import t from 'tap'
import { BoundedEventStore, EventBudget, STORE_FLOOR_BYTES } from '../gateway/event-store.ts'
import { parseNodeConfig } from '../node/config.ts'
import { NexusNode } from '../node/nexus-node.ts'
import { LineSplitter } from '../node/runtime/line-splitter.ts'
import { FramedStream } from '../protocol/framed-stream.ts'
import { encodeFrame, FrameDecoder } from '../protocol/framing.ts'
import { decodeHeaderValue, encodeHeaderValue } from '../protocol/modern-era.ts'
import { MCP_STREAM_PROTOCOL } from '../protocol/names.ts'
import { createPeer } from '../protocol/peer.ts'
import { decodeJson, OpenReplySchema, openFrame, parseFrame } from '../protocol/session-handshake.ts'
import { startNetwork } from '../testing/network.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'

const bytes = (s: string) => new TextEncoder().encode(s)

t.test('frames survive arbitrary splitting and reject oversized lengths', async (t) => {
  const wire = new Uint8Array([...encodeFrame(bytes('{"a":1}')), ...encodeFrame(bytes('x'.repeat(300)))])
  const decoder = new FrameDecoder(1024)
  const out: string[] = []
  for (let i = 0; i < wire.length; i += 3) {
    for (const frame of decoder.decode(wire.subarray(i, i + 3))) out.push(new TextDecoder().decode(frame))
  }
  t.same(out, ['{"a":1}', 'x'.repeat(300)])
  t.same(
    [...encodeFrame(new Uint8Array(300)).subarray(0, 2)],
    [0xac, 0x02],
    'the prefix is an unsigned LEB128 varint',
  )
  const small = new FrameDecoder(16)
  t.throws(() => [...small.decode(encodeFrame(bytes('y'.repeat(17))))], { code: 'FRAME_TOO_LARGE' })
  const huge = new FrameDecoder(1024)
  t.throws(
    () => [...huge.decode(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))],
    { code: 'FRAME_TOO_LARGE' },
    'a prefix longer than any accepted length is refused before anything is buffered',
  )
})

t.test('frames of every prefix width come out whole and in order however the bytes are cut', async (t) => {
  // Sizes straddle the 1-, 2- and 3-byte varint boundaries, plus empty frames.
  const sizes = [0, 1, 127, 128, 129, 300, 16_383, 16_384, 70_000, 0, 5]
  const frames = sizes.map((n, i) => Uint8Array.from({ length: n }, (_, j) => (i * 31 + j) & 0xff))
  const wire = Buffer.concat(frames.map(encodeFrame))
  let seed = 7
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return seed / 2 ** 31
  }
  for (const maxCut of [1, 2, 7, 500, 100_000]) {
    const decoder = new FrameDecoder(1 << 20)
    const out: Uint8Array[] = []
    for (let i = 0; i < wire.length; ) {
      const cut = 1 + Math.floor(random() * maxCut)
      for (const frame of decoder.decode(wire.subarray(i, i + cut))) out.push(Uint8Array.from(frame))
      i += cut
    }
    t.same(
      out.map((f) => Buffer.from(f).toString('hex')),
      frames.map((f) => Buffer.from(f).toString('hex')),
      `cuts of up to ${maxCut} bytes`,
    )
  }
})

t.test('several frames sent together arrive in one read, whole and in order', async (t) => {
  const [dialer, listener] = await Promise.all([
    createPeer({ transport: 'memory' }),
    createPeer({ transport: 'memory' }),
  ])
  t.teardown(() => Promise.all([dialer.stop(), listener.stop()]))
  const PROTOCOL = '/nexus-test/frames/1'
  const arrived = new Promise<{ reads: number; frames: unknown[] }>((resolve) => {
    void listener.handle(PROTOCOL, (stream) => {
      let reads = 0
      stream.addEventListener('message', () => reads++)
      const framed = new FramedStream(stream)
      const frames: unknown[] = []
      framed.onFrame((frame) => {
        frames.push(decodeJson(frame))
        if (frames.length === 2) resolve({ reads, frames })
      })
    })
  })
  await dialer.dial(listener.getMultiaddrs()[0]!)
  const framed = new FramedStream(await dialer.dialProtocol(listener.peerId, PROTOCOL))
  t.ok(framed.sendJsonFrames([{ open: 'a' }, { request: 'b'.repeat(300) }]), 'sent')
  const { reads, frames } = await arrived
  t.same(frames, [{ open: 'a' }, { request: 'b'.repeat(300) }], 'two frames, in order')
  t.equal(reads, 1, 'both in one read of the stream')
  framed.abort(new Error('done'))
})

t.test(
  'stdio lines: split across chunks, CRLF trimmed, blank lines skipped, oversized ones dropped',
  async (t) => {
    const splitter = new LineSplitter(10)
    const dropped: number[] = []
    const lines = [
      ...splitter.push(Buffer.from('{"a"'), (n) => dropped.push(n)),
      ...splitter.push(Buffer.from(':1}\r\n\n{"b":2}\n0123456789'), (n) => dropped.push(n)),
      ...splitter.push(Buffer.from('ABC\n{"c":3}\n'), (n) => dropped.push(n)),
    ].map((l) => Buffer.from(l).toString())
    t.same(lines, ['{"a":1}', '{"b":2}', '{"c":3}'])
    t.same(dropped, [13], 'the 13-byte line over the 10-byte limit was dropped and reported')
  },
)

t.test('event store: replays one stream after an id, skips priming events, stays bounded', async (t) => {
  const store = new BoundedEventStore(3, 1_000_000)
  const prime = await store.storeEvent('s1', {} as never)
  await store.storeEvent('s1', { jsonrpc: '2.0', method: 'a' })
  await store.storeEvent('s2', { jsonrpc: '2.0', method: 'other-stream' })
  await store.storeEvent('s1', { jsonrpc: '2.0', method: 'b' })
  const replayed: string[] = []
  const stream = await store.replayEventsAfter(prime, {
    send: async (_id, message) => {
      replayed.push((message as { method: string }).method)
    },
  })
  t.equal(stream, 's1')
  t.same(
    replayed,
    ['a', 'b'],
    'the same stream in order; the other stream and the priming event are not replayed',
  )
  t.equal(store.size, 3, 'the oldest event (the priming one) was evicted')
  await store.storeEvent('s1', { jsonrpc: '2.0', method: 'c' })
  await t.rejects(
    store.replayEventsAfter(prime, { send: async () => {} }),
    /no longer stored/,
    'resuming from before an evicted event fails instead of silently skipping it',
  )
  await t.rejects(store.replayEventsAfter('garbage', { send: async () => {} }), /malformed Last-Event-ID/)
  const byBytes = new BoundedEventStore(100, 60)
  for (let i = 0; i < 5; i++) await byBytes.storeEvent('s', { jsonrpc: '2.0', method: `m${i}` })
  t.ok(byBytes.bytes <= 60, `byte bound holds (${byBytes.bytes} bytes in ${byBytes.size} events)`)
})

t.test(
  'event budget: past the gateway-wide bound the session storing pays, keeping its newest 32 KiB',
  async (t) => {
    const budget = new EventBudget(200 * 1024)
    const message = (i: number) => ({
      jsonrpc: '2.0' as const,
      method: 'm',
      params: { i, pad: 'x'.repeat(1000) },
    })
    const quiet = new BoundedEventStore(10_000, 1024 * 1024, budget)
    for (let i = 0; i < 150; i++) await quiet.storeEvent('q', message(i))
    const quietBytes = quiet.bytes
    t.equal(budget.bytes, quietBytes, 'the budget counts every store')
    const busy = new BoundedEventStore(10_000, 1024 * 1024, budget)
    for (let i = 0; i < 1_000; i++) await busy.storeEvent('b', message(i))
    t.equal(quiet.bytes, quietBytes, 'the quiet session kept its history')
    t.ok(busy.bytes >= STORE_FLOOR_BYTES, `the busy one kept at least its floor (${busy.bytes} bytes)`)
    const room = Math.max(STORE_FLOOR_BYTES, budget.maxBytes - quietBytes)
    t.ok(busy.bytes <= room + 1_100, `and no more than the budget leaves it (${room} bytes) plus one event`)
    t.equal(budget.bytes, quiet.bytes + busy.bytes)
    t.ok(budget.bytes <= budget.maxBytes + 1_100, 'the total stays within the bound plus one event')
    quiet.clear()
    busy.clear()
    t.equal(budget.bytes, 0, 'ended sessions give their bytes back')
    for (let i = 0; i < 100; i++) await busy.storeEvent('b', message(i))
    t.equal(busy.size, 100, 'with room again, a store keeps what its own limits allow')
  },
)

t.test('node configuration errors name the offending fields', async (t) => {
  t.throws(
    () => parseNodeConfig({ servers: [{ id: 'Bad Id!', transport: 'stdio', command: 'x' }] }),
    /lower-case/,
  )
  t.throws(
    () => parseNodeConfig({ servers: [{ id: 'a', transport: 'stdio' }] }),
    /exactly one of package or command/,
  )
  t.throws(
    () =>
      parseNodeConfig({
        servers: [
          { id: 'a', transport: 'stdio', command: 'x' },
          { id: 'a', transport: 'stdio', command: 'y' },
        ],
      }),
    /configured twice/,
  )
  t.throws(
    () => parseNodeConfig({ servers: [{ id: 'a', transport: 'stdio', command: 'x' }] }),
    /runs only whitelisted manifests/,
    'a launch configuration without a manifest needs trust.allowUnverified',
  )
  t.throws(() => parseNodeConfig({ servers: [{ id: 'a', comand: 'x' }] }), /Unrecognized key: "comand"/)
  t.throws(
    () => parseNodeConfig({ trust: { chainRpc: 'http://127.0.0.1:8545' } }),
    /set both chainRpc and registry/,
  )
  t.match(
    parseNodeConfig({
      servers: [{ id: 'a', transport: 'stdio', command: 'x' }],
      trust: { allowUnverified: true },
    }).servers[0],
    { id: 'a', command: 'x' },
  )
})

t.test('a node refuses to start a server whose package is not installed', async (t) => {
  const node = new NexusNode({
    transport: 'memory',
    trust: { allowUnverified: true },
    servers: [{ id: 'a', transport: 'stdio', package: 'not-installed-anywhere-xyz' }],
  })
  await t.rejects(node.start(), /npm package not-installed-anywhere-xyz is not installed/)
})

t.test('node handshake: unknown servers and malformed first frames are refused with a code', async (t) => {
  const network = await startNetwork({ nodes: 1, servers: [fixtureServerConfig()], gateways: 0 })
  t.teardown(network.stop)
  const peer = await createPeer({ transport: 'memory' })
  t.teardown(() => peer.stop())
  const node = network.nodes[0]!
  await peer.dial(node.peer.getMultiaddrs()[0]!)
  const ask = async (frame: unknown) => {
    const framed = new FramedStream(await peer.dialProtocol(node.peer.peerId, MCP_STREAM_PROTOCOL))
    framed.sendJson(frame)
    return parseFrame(OpenReplySchema, await framed.nextFrame(5_000), 'reply')
  }
  t.match(await ask(openFrame('nope', 'session-00000001', { principal: 'p' })), {
    type: 'refused',
    code: 'UNKNOWN_SERVER',
  })
  t.match(await ask({ v: 1, type: 'open', serverId: 'conformance' }), {
    type: 'refused',
    code: 'PROTOCOL_VIOLATION',
  })
  t.match(await ask({ v: 99, hello: true }), { type: 'refused', code: 'PROTOCOL_VIOLATION' })
  t.match(await ask(openFrame('conformance', 'session-00000002', { principal: 'p' })), {
    type: 'accepted',
    server: { version: '0.0.0', manifestHash: /^0x[0-9a-f]{64}$/ },
  })
  t.same(decodeJson(bytes('{"x":1}')), { x: 1 })
  t.throws(() => decodeJson(bytes('{')), { code: 'MALFORMED_FRAME' })
})

t.test(
  'one connection carries more than a thousand session streams, and keeps its keep-alive ping',
  async (t) => {
    const HOLD = '/nexus/test/hold/1.0.0'
    const STREAMS = 1_100
    const server = await createPeer({ transport: 'memory' })
    t.teardown(() => server.stop())
    let accepted = 0
    await server.handle(HOLD, () => void accepted++, { maxInboundStreams: STREAMS + 10 })
    const client = await createPeer({
      transport: 'memory',
      bootstrap: [server.getMultiaddrs()[0]!.toString()],
    })
    t.teardown(() => client.stop())
    const streams = []
    for (let i = 0; i < STREAMS; i++)
      streams.push(await client.dialProtocol(server.peerId, HOLD, { maxOutboundStreams: STREAMS + 10 }))
    t.equal(streams.length, STREAMS, `${STREAMS} streams open on one connection`)
    t.equal(client.getConnections(server.peerId).length, 1)
    // libp2p's connection monitor pings over a new stream; if none can be opened it drops the connection.
    t.ok((await client.services.ping.ping(server.peerId)) >= 0, 'a ping still gets through')
    t.equal(client.getConnections(server.peerId)[0]!.status, 'open', 'the connection stays up')
    t.ok(accepted > 0)
  },
)

t.test('mirrored header values: plain when safe, the Base64 sentinel otherwise, and back', async (t) => {
  t.equal(encodeHeaderValue('get_weather'), 'get_weather')
  for (const value of ['Hello, 世界', ' padded ', 'line1\nline2', '=?base64?literal?=', 'file:///a b'])
    t.equal(decodeHeaderValue(encodeHeaderValue(value)), value, `${JSON.stringify(value)} survives the trip`)
  t.equal(
    encodeHeaderValue('=?base64?literal?='),
    '=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=',
    'sentinel-like text is encoded',
  )
  t.equal(decodeHeaderValue('caf\u00e9'), undefined, 'non-ASCII sent plain is refused')
})
