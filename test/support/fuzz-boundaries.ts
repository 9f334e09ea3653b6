import { peerIdFromString } from '@libp2p/peer-id'
import { pino } from 'pino'
import type { NexusGateway } from '../../gateway/nexus-gateway.ts'
import type { NexusNode } from '../../node/nexus-node.ts'
import { type Announcement, encodeAnnouncement } from '../../protocol/announcement.ts'
import { FramedStream } from '../../protocol/framed-stream.ts'
import { encodeFrame } from '../../protocol/framing.ts'
import {
  ANNOUNCE_TOPIC,
  DEMAND_TOPIC,
  DHT_PROTOCOL,
  MCP_STREAM_PROTOCOL,
  WIRE_VERSION,
} from '../../protocol/names.ts'
import { createPeer, type NexusPeer } from '../../protocol/peer.ts'
import { startNetwork } from '../../testing/network.ts'
import { connectStreamable } from './clients.ts'
import { fixtureServerConfig } from './fixture-server.ts'
import { floodPublish } from './flood-publish.ts'
import { hostileBytes, integer, mutateJson, nestedText, pick, type Random } from './hostile-inputs.ts'
import { initializeRequest, RAW_PROTOCOL_VERSION } from './raw-sse.ts'

/**
 * Drivers that send seeded hostile input across each trust boundary of a running network, for the fuzz test
 * (a few hundred inputs) and the `fuzz` bench suite (many thousands). Each returns how many inputs it sent
 * and what came back that should not have: a 500, a connection the peer broke instead of answering, a
 * request left without an answer past its deadline. The caller checks, besides, that every peer is alive,
 * that no handler failed (`*_input_failures_total` stays 0) and that a canary session kept working.
 */
export interface FuzzTally {
  boundary: string
  inputs: number
  unexpected: string[]
}

const encoder = new TextEncoder()

const AGENT_MESSAGES: readonly Record<string, unknown>[] = [
  initializeRequest('fuzz'),
  { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'test_simple_text', arguments: {} } },
  { jsonrpc: '2.0', id: 3, method: 'tools/list' },
  { jsonrpc: '2.0', id: 4, method: 'ping' },
  { jsonrpc: '2.0', method: 'notifications/initialized' },
  { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 2 } },
  { jsonrpc: '2.0', id: 5, result: {} },
]

function note(tally: FuzzTally, what: string): void {
  if (tally.unexpected.length < 50) tally.unexpected.push(what)
}

/** Hostile HTTP requests to a streamable HTTP endpoint: bodies, headers, methods, session ids. */
export async function fuzzStreamableHttp(
  gateway: NexusGateway,
  serverId: string,
  random: Random,
  count: number,
) {
  const tally: FuzzTally = { boundary: 'agent streamable HTTP', inputs: 0, unexpected: [] }
  const url = gateway.serverUrl(serverId)
  const opened = new Set<string>()
  const live = await openSession(url)
  if (live !== undefined) opened.add(live)
  for (let i = 0; i < count; i++) {
    const method = pick(random, ['POST', 'POST', 'POST', 'POST', 'GET', 'DELETE'])
    const headers: Record<string, string> = {
      'content-type': pick(random, [
        'application/json',
        'application/json',
        'text/plain',
        'application/json; charset=latin1',
        '',
      ]),
      accept: pick(random, [
        'application/json, text/event-stream',
        'application/json, text/event-stream',
        'text/event-stream',
        '*/*',
      ]),
    }
    if (random() < 0.6 && live !== undefined) headers['mcp-session-id'] = live
    else if (random() < 0.3)
      headers['mcp-session-id'] = pick(random, ['', 'x', 'f'.repeat(10_000), '../../etc'])
    if (random() < 0.7)
      headers['mcp-protocol-version'] = pick(random, [
        RAW_PROTOCOL_VERSION,
        '1999-01-01',
        '',
        'x'.repeat(500),
      ])
    if (method === 'GET' && random() < 0.5)
      headers['last-event-id'] = pick(random, ['garbage', '|', 'a|1', `x|${'9'.repeat(30)}`])
    const body = method === 'POST' ? mutateJson(random, pick(random, AGENT_MESSAGES), 512 * 1024) : undefined
    tally.inputs++
    try {
      const response = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(20_000) })
      const session = response.headers.get('mcp-session-id')
      if (session !== null) opened.add(session)
      if (response.status >= 500 && response.status !== 503) note(tally, `${method} → ${response.status}`)
      await response.body?.cancel()
    } catch (err) {
      note(tally, `${method}: ${(err as Error).message}`)
    }
  }
  // Sessions a mutated initialize opened are ended, so that what is left afterwards is what leaked.
  await Promise.all(
    [...opened].map((id) =>
      fetch(url, {
        method: 'DELETE',
        headers: { 'mcp-session-id': id, 'mcp-protocol-version': RAW_PROTOCOL_VERSION },
      })
        .then((r) => r.body?.cancel())
        .catch(() => {}),
    ),
  )
  return tally
}

async function openSession(url: string): Promise<string | undefined> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify(initializeRequest('fuzz-live')),
  })
  await response.body?.cancel()
  return response.headers.get('mcp-session-id') ?? undefined
}

/** Hostile messages posted to a legacy HTTP+SSE session. */
export async function fuzzLegacySse(gateway: NexusGateway, serverId: string, random: Random, count: number) {
  const tally: FuzzTally = { boundary: 'agent legacy SSE', inputs: 0, unexpected: [] }
  const controller = new AbortController()
  const stream = await fetch(gateway.sseUrl(serverId), {
    headers: { accept: 'text/event-stream' },
    signal: controller.signal,
  })
  const reader = stream.body!.getReader()
  let text = ''
  while (!text.includes('/messages')) text += new TextDecoder().decode((await reader.read()).value)
  const path = /data: (\/messages\?sessionId=[^\n\r]+)/.exec(text)![1]!
  const messages = new URL(path, gateway.url).toString()
  // The SSE stream is read (and dropped) meanwhile, as a client would.
  const draining = (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done);
  })()
  for (let i = 0; i < count; i++) {
    tally.inputs++
    try {
      const response = await fetch(
        random() < 0.1
          ? `${gateway.url}/messages?sessionId=${'z'.repeat(integer(random, 0, 5_000))}`
          : messages,
        {
          method: 'POST',
          headers: { 'content-type': pick(random, ['application/json', 'application/json', 'text/plain']) },
          body: mutateJson(random, pick(random, AGENT_MESSAGES), 512 * 1024),
          signal: AbortSignal.timeout(20_000),
        },
      )
      if (response.status >= 500 && response.status !== 503)
        note(tally, `POST /messages → ${response.status}`)
      await response.body?.cancel()
    } catch (err) {
      note(tally, `POST /messages: ${(err as Error).message}`)
    }
  }
  controller.abort()
  await draining
  return tally
}

/**
 * The network the fuzzers attack: a gateway and two nodes hosting the conformance fixture, with short
 * handshake timeouts (a silent malicious node costs 1 s an input), a canary session on it and the attacker's
 * own libp2p peer joined to it. `stop()` ends all of them.
 */
export async function startFuzzNetwork() {
  const network = await startNetwork({
    nodes: 2,
    servers: [fixtureServerConfig()],
    gateway: { handshakeTimeoutMs: 1_000, failover: { replayTimeoutMs: 1_000 } },
    node: { handshakeTimeoutMs: 1_000 },
    logger: pino({ level: 'silent' }),
  })
  const { gateway, nodes } = network
  const canary = await connectStreamable(gateway.serverUrl('conformance'), { name: 'canary' })
  const attacker = await createPeer({
    transport: 'memory',
    bootstrap: [nodes[0]!.multiaddrs[0]!, ...gateway.peer.getMultiaddrs().map(String)],
  })
  return {
    gateway,
    nodes,
    canary,
    attacker,
    async stop() {
      await canary.client.close()
      await attacker.stop()
      await network.stop()
    },
  }
}

/** Session streams opened on a node as a malicious gateway would: garbage frames, bad handshakes, bad relays. */
export async function fuzzNodeStreams(
  attacker: NexusPeer,
  node: NexusNode,
  serverId: string,
  random: Random,
  count: number,
) {
  const tally: FuzzTally = { boundary: 'gateway → node streams', inputs: 0, unexpected: [] }
  const target = peerIdFromString(node.peerId)
  const open = {
    v: WIRE_VERSION,
    type: 'open',
    serverId,
    sessionId: 'fuzz-session-0',
    auth: { principal: 'fuzz' },
  }
  for (let i = 0; i < count; i++) {
    tally.inputs++
    let stream: Awaited<ReturnType<NexusPeer['dialProtocol']>>
    try {
      stream = await attacker.dialProtocol(target, MCP_STREAM_PROTOCOL, {
        signal: AbortSignal.timeout(10_000),
      })
    } catch (err) {
      note(tally, `dial: ${(err as Error).message}`)
      continue
    }
    const framed = new FramedStream(stream)
    const kind = integer(random, 0, 3)
    if (kind === 0) stream.send(hostileBytes(random))
    else if (kind === 1) stream.send(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x7f))
    else if (kind === 2) framed.send(encoder.encode(mutateJson(random, open)))
    else {
      framed.send(
        encoder.encode(
          JSON.stringify({ ...open, sessionId: `fuzz-session-${i}-${integer(random, 0, 1e9)}` }),
        ),
      )
      for (let k = integer(random, 1, 6); k > 0; k--) {
        const frame = pick(random, [
          () => encoder.encode(mutateJson(random, pick(random, AGENT_MESSAGES))),
          () => hostileBytes(random),
          () =>
            encoder.encode(JSON.stringify({ nexus: 'ping', nonce: pick(random, [1, -1, 1e300, 'x', null]) })),
          () => encoder.encode(nestedText(integer(random, 200, 30_000), '1', 'array')),
        ])()
        framed.send(frame)
      }
    }
    // Whatever the node answers is read until it closes the stream or a moment passes; then the attacker leaves.
    await Promise.race([
      new Promise<void>((resolve) => framed.onEnd(() => resolve())),
      new Promise<void>((resolve) => setTimeout(resolve, 50)),
    ])
    if (random() < 0.5) stream.abort(new Error('attacker left'))
    else await framed.close(1_000)
  }
  return tally
}

/**
 * A malicious node: announces a server `hostile` and answers every session a gateway opens on it with
 * hostile frames — garbage, broken handshakes, deep or malformed JSON-RPC, unknown ids, silence.
 */
export async function startHostileNode(
  attacker: NexusPeer,
  random: Random,
): Promise<{ announce(): Promise<void> }> {
  await attacker.handle(
    MCP_STREAM_PROTOCOL,
    (stream) => {
      const framed = new FramedStream(stream)
      void framed.nextFrame(5_000).then(
        () => {
          const kind = integer(random, 0, 4)
          if (kind === 0) return stream.send(hostileBytes(random))
          if (kind === 1)
            return framed.send(
              encoder.encode(mutateJson(random, { v: WIRE_VERSION, type: 'accepted', serverId: 'hostile' })),
            )
          if (kind === 2) return // silence: the gateway's handshake timeout
          framed.send(
            encoder.encode(JSON.stringify({ v: WIRE_VERSION, type: 'accepted', serverId: 'hostile' })),
          )
          framed.onFrame(() => {
            for (let k = integer(random, 1, 4); k > 0; k--) {
              const reply = pick(random, [
                () =>
                  encoder.encode(
                    mutateJson(random, {
                      jsonrpc: '2.0',
                      id: 1,
                      result: {
                        protocolVersion: RAW_PROTOCOL_VERSION,
                        capabilities: {},
                        serverInfo: { name: 'h', version: '1' },
                      },
                    }),
                  ),
                () =>
                  encoder.encode(
                    `{"jsonrpc":"2.0","id":1,"result":${nestedText(integer(random, 200, 30_000))}}`,
                  ),
                () =>
                  encoder.encode(
                    JSON.stringify({
                      nexus: 'closing',
                      code: 'x'.repeat(integer(random, 0, 10_000)),
                      message: 1,
                    }),
                  ),
                () => encoder.encode(JSON.stringify({ jsonrpc: '2.0', id: { evil: true }, result: 1 })),
                () => hostileBytes(random),
              ])()
              framed.send(reply)
            }
            if (random() < 0.3) stream.abort(new Error('hostile node resets'))
          })
        },
        () => {},
      )
    },
    { maxInboundStreams: 10_000 },
  )
  let seq = Date.now() * 1000
  return {
    async announce() {
      const announcement = attackerAnnouncement(
        attacker,
        { id: 'hostile', hashByte: 'ab', slots: 100 },
        ++seq,
      )
      await floodPublish(attacker, ANNOUNCE_TOPIC, encodeAnnouncement(announcement)).catch(() => {})
    },
  }
}

/** A well-formed announcement by the attacker's peer that it hosts one server with `slots` free. */
function attackerAnnouncement(
  attacker: NexusPeer,
  server: { id: string; hashByte: string; slots: number },
  seq: number,
): Announcement {
  return {
    v: WIRE_VERSION,
    peerId: attacker.peerId.toString(),
    addrs: [],
    servers: [
      {
        id: server.id,
        version: '1.0.0',
        manifestHash: `0x${server.hashByte.repeat(32)}`,
        sessions: 0,
        freeSlots: server.slots,
      },
    ],
    load: { sessions: 0, capacity: server.slots, inFlight: 0, cpu: 0, memory: 0 },
    draining: false,
    intervalMs: 1_000,
    seq,
    timestamp: Date.now(),
  }
}

/** Agents using the malicious node's server through the gateway: each must get an answer, never a hang or a 500. */
export async function fuzzHostileNode(gateway: NexusGateway, random: Random, count: number) {
  const tally: FuzzTally = { boundary: 'node → gateway frames', inputs: 0, unexpected: [] }
  const url = gateway.serverUrl('hostile')
  for (let i = 0; i < count; i++) {
    tally.inputs++
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify(initializeRequest(`victim-${integer(random, 0, 1e6)}`)),
        signal: AbortSignal.timeout(30_000),
      })
      const text = await response.text()
      if (response.status >= 500 && response.status !== 503) note(tally, `initialize → ${response.status}`)
      const session = response.headers.get('mcp-session-id')
      if (session !== null) {
        await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': session } }).then((r) =>
          r.body?.cancel(),
        )
      } else if (response.status === 200 && text === '') note(tally, 'initialize answered with nothing')
    } catch (err) {
      note(tally, `initialize: ${(err as Error).message}`)
    }
  }
  return tally
}

/** Signed gossip with hostile contents, and garbage on the DHT protocol, toward every peer. */
export async function fuzzGossipAndDht(
  attacker: NexusPeer,
  victims: string[],
  random: Random,
  count: number,
) {
  const tally: FuzzTally = { boundary: 'gossip and DHT', inputs: 0, unexpected: [] }
  const base = attackerAnnouncement(attacker, { id: 'bogus', hashByte: 'cd', slots: 1 }, Date.now() * 1000)
  for (let i = 0; i < count; i++) {
    tally.inputs++
    const topic = pick(random, [ANNOUNCE_TOPIC, DEMAND_TOPIC])
    const data =
      random() < 0.8
        ? encoder.encode(mutateJson(random, { ...base, seq: base.seq + i }, 64 * 1024))
        : hostileBytes(random, 8 * 1024)
    await floodPublish(attacker, topic, data).catch(() => {})
    if (i % 5 === 0) {
      const victim = pick(random, victims)
      try {
        const stream = await attacker.dialProtocol(peerIdFromString(victim), DHT_PROTOCOL, {
          signal: AbortSignal.timeout(5_000),
        })
        stream.send(
          random() < 0.5 ? hostileBytes(random, 4 * 1024) : encodeFrame(hostileBytes(random, 4 * 1024)),
        )
        stream.abort(new Error('attacker left'))
      } catch {
        // A victim that refuses the DHT stream is fine: it is still alive, which the caller checks.
      }
    }
  }
  return tally
}

/** Exceptions handlers threw on inputs, all peers together (`*_input_failures_total`): the goal is 0. */
export async function inputFailures(gateway: NexusGateway, nodes: NexusNode[]): Promise<number> {
  const counters = [
    { registry: gateway.metrics.registry, name: 'nexus_gateway_input_failures_total' },
    ...nodes.map((n) => ({ registry: n.metrics.registry, name: 'nexus_node_input_failures_total' })),
  ]
  let total = 0
  for (const { registry, name } of counters)
    for (const { value } of (await registry.getSingleMetric(name)?.get())?.values ?? []) total += value
  return total
}
