import { peerIdFromString } from '@libp2p/peer-id'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { decodeJsonBounded } from '../protocol/bounded-json.ts'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { FramedStream } from '../protocol/framed-stream.ts'
import type { InputGuard } from '../protocol/input-guard.ts'
import { MCP_STREAM_PROTOCOL } from '../protocol/names.ts'
import { MAX_STREAMS_PER_CONNECTION, type NexusPeer } from '../protocol/peer.ts'
import {
  type AuthContext,
  ClosingSchema,
  encodeJson,
  type OpenReply,
  OpenReplySchema,
  openFrame,
  ProbeSchema,
  parseFrame,
  probeFrame,
} from '../protocol/session-handshake.ts'
import { chooseHost, type LocalLoad } from './host-selection.ts'
import { isJsonRpcMessage } from './jsonrpc.ts'
import type { KeptStreams } from './kept-streams.ts'
import type { NetworkView } from './network-view.ts'

/** Why a link ended, when it did not end because we closed it. */
export interface LinkEnd {
  code: string
  reason: string
}

/**
 * The gateway's side of one session stream to a node, after the node accepted it: JSON-RPC messages out and
 * in, and one `end` callback with the reason when the node or the connection goes away.
 */
export class NodeLink {
  readonly peerId: string
  #onMessage: ((message: JSONRPCMessage) => void) | undefined
  #onEnd: ((end: LinkEnd) => void) | undefined
  /**
   * What arrived before the handlers were attached: with a request sent along with the open frame, the node's
   * answer, and even the stream's end, can come before the caller has the link in hand.
   */
  readonly #early: JSONRPCMessage[] = []
  #earlyEnd: LinkEnd | undefined
  /** A frame the gateway refused to read (not JSON, nested too deep) that named this request id. */
  onUnreadable: ((id: string | number, why: string) => void) | undefined
  /** When the node last sent anything on this session. */
  lastFrameAt = Date.now()
  /** What the node has sent on this session, in frame bytes. */
  receivedBytes = 0
  readonly #framed: FramedStream
  #closing: LinkEnd | undefined
  #closedByUs = false
  #probe: { nonce: number; resolve: (answered: boolean) => void } | undefined
  #nonce = 0
  #paused = false
  readonly #maxUnsentBytes: number
  readonly #guard: InputGuard
  readonly #keep: ((framed: FramedStream) => void) | undefined

  /** `keep`: where the stream goes when `release` finds it fit for another request (the node keeps it open). */
  constructor(
    peerId: string,
    framed: FramedStream,
    guard: InputGuard,
    maxUnsentBytes = Infinity,
    keep?: (framed: FramedStream) => void,
  ) {
    this.peerId = peerId
    this.#framed = framed
    this.#maxUnsentBytes = maxUnsentBytes
    this.#guard = guard
    this.#keep = keep
    framed.onFrame((frame) => guard.run('node-stream', () => this.#receive(frame)))
    framed.onEnd((error) => {
      if (this.#closedByUs) return
      const end = this.#closing ?? {
        code: 'NODE_FAILED',
        reason: error ? `connection to node lost: ${error.message}` : 'the node closed the session stream',
      }
      if (this.#onEnd === undefined) this.#earlyEnd = end
      else this.#onEnd(end)
    })
  }

  /** The node's messages; any that arrived before this was set are handed over at once, in order. */
  set onMessage(handler: ((message: JSONRPCMessage) => void) | undefined) {
    this.#onMessage = handler
    if (handler !== undefined) for (const message of this.#early.splice(0)) handler(message)
  }

  get onMessage(): ((message: JSONRPCMessage) => void) | undefined {
    return this.#onMessage
  }

  /** Why the link ended; an end that came before this was set is reported at once. */
  set onEnd(handler: ((end: LinkEnd) => void) | undefined) {
    this.#onEnd = handler
    const early = this.#earlyEnd
    if (handler !== undefined && early !== undefined) {
      this.#earlyEnd = undefined
      handler(early)
    }
  }

  get onEnd(): ((end: LinkEnd) => void) | undefined {
    return this.#onEnd
  }

  /**
   * Sends a message to the node. Returns false, sending nothing, when the node has not taken `maxUnsentBytes`
   * of what was sent before (its server stopped reading): the gateway does not queue without bound.
   */
  send(message: JSONRPCMessage): boolean {
    if (!this.#framed.writable) return true
    if (this.#framed.stream.writeBufferLength > this.#maxUnsentBytes) return false
    this.#framed.send(encodeJson(message))
    return true
  }

  /** Stops reading the node's messages (the agent is not keeping up): the node is pushed back on. */
  pause(): void {
    if (this.#paused) return
    this.#paused = true
    this.#framed.pause()
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    // The node was silent because it was not read, not because it hung.
    this.lastFrameAt = Date.now()
    this.#framed.resume()
  }

  /** Whether the gateway has stopped reading the node; its silence then says nothing about its health. */
  get paused(): boolean {
    return this.#paused
  }

  /**
   * Asks the node to prove it still reads this stream: resolves true when its answer arrives within the
   * timeout, false otherwise (a hung node or a stalled stream).
   */
  probe(timeoutMs: number): Promise<boolean> {
    if (!this.#framed.writable) return Promise.resolve(false)
    const nonce = ++this.#nonce
    const { promise, resolve } = Promise.withResolvers<boolean>()
    const timer = setTimeout(() => resolve(false), timeoutMs)
    this.#probe = {
      nonce,
      resolve: (answered) => {
        clearTimeout(timer)
        resolve(answered)
      },
    }
    this.#framed.sendJson(probeFrame('ping', nonce))
    return promise.finally(() => {
      if (this.#probe?.nonce === nonce) this.#probe = undefined
    })
  }

  /** Gives up on the node without waiting for it: for a stalled or hung link. */
  abort(reason: string): void {
    this.#closedByUs = true
    this.#probe?.resolve(false)
    this.#framed.abort(new Error(reason))
  }

  async close(): Promise<void> {
    this.#closedByUs = true
    await this.#framed.close()
  }

  /**
   * The request is answered and the link done with: the stream waits for the next request when the node keeps
   * it open, and closes otherwise.
   */
  release(): void {
    if (this.#keep === undefined || this.#closedByUs || this.#paused || !this.#framed.writable)
      return void this.close()
    this.#closedByUs = true
    this.#keep(this.#framed)
  }

  #receive(frame: Uint8Array): void {
    this.lastFrameAt = Date.now()
    this.receivedBytes += frame.byteLength
    const parsed = decodeJsonBounded(frame)
    if (!parsed.ok) {
      this.#guard.refused('node-stream', `node sent a frame the gateway refuses: ${parsed.message}`, {
        node: this.peerId,
      })
      if (parsed.id !== undefined) this.onUnreadable?.(parsed.id, parsed.message)
      return
    }
    const value = parsed.value
    if (typeof value !== 'object' || value === null) {
      this.#guard.refused('node-stream', 'node sent a frame that is not a JSON object', { node: this.peerId })
      return
    }
    if ('nexus' in value) {
      const closing = ClosingSchema.safeParse(value)
      if (closing.success) this.#closing = { code: closing.data.code, reason: closing.data.message }
      const probe = ProbeSchema.safeParse(value)
      if (probe.success && probe.data.nexus === 'pong' && probe.data.nonce === this.#probe?.nonce) {
        this.#probe.resolve(true)
      }
      return
    }
    if (!isJsonRpcMessage(value)) {
      this.#guard.refused('node-stream', 'node relayed a message that is not JSON-RPC 2.0', {
        node: this.peerId,
      })
      return
    }
    if (this.#onMessage === undefined) this.#early.push(value as JSONRPCMessage)
    else this.#onMessage(value as JSONRPCMessage)
  }
}

export interface ConnectOptions {
  serverId: string
  sessionId: string
  auth: AuthContext
  handshakeTimeoutMs: number
  /** Hosts not to try (e.g. the one that just failed). */
  exclude?: Set<string>
  /** The one host to try (a follow-up that only that node can honour). */
  only?: string
  /** `modern`: the stream carries one modern-era request, not a session. */
  era?: 'legacy' | 'modern'
  /**
   * A message sent right behind the open frame, without waiting for the node's answer (a modern request: one
   * round trip less). A node that refuses the stream never reads it, so it may go to the next host unchanged.
   */
  firstMessage?: JSONRPCMessage
  random?: () => number
  /** How much the node may leave unread before the gateway refuses to send it more. */
  maxUnsentBytes?: number
  /** Counts and contains what a node's bad frames cause. */
  guard: InputGuard
  /** Whether the server a node declares on accepting may be used (the whitelist); anything by default. */
  admits?: (server: { id: string; version: string; manifestHash: string }) => boolean
  /** Modern requests: streams kept open between requests, taken from and given back to this pool. */
  kept?: KeptStreams
}

/**
 * Opens a session on a node hosting the server, chosen by power of two choices over the live hosts (the DHT
 * is asked when no announcement names one). A node that refuses or cannot be reached is skipped for the next
 * choice. Fails with NO_HOST, naming every reason, when none accepts.
 */
export async function connectToHost(
  peer: NexusPeer,
  view: NetworkView,
  localLoad: (peerId: string) => LocalLoad,
  options: ConnectOptions,
): Promise<NodeLink> {
  const tried = new Set(options.exclude)
  const failures: string[] = []
  /** The shortest wait a busy host asked for; when every host was busy, the agent is told to retry then. */
  let busyFor: number | undefined
  let reachedIdle = false
  let hosts = (await view.findHosts(options.serverId)).filter(
    (h) => !tried.has(h.peerId) && (options.only === undefined || h.peerId === options.only),
  )
  if (hosts.length === 0) failures.push('no live node hosts it')
  while (hosts.length > 0) {
    const host = chooseHost(hosts, localLoad, options.random)!
    tried.add(host.peerId)
    hosts = hosts.filter((h) => h !== host)
    try {
      const { framed, reply } = await openOnHost(peer, host.peerId, options)
      if (
        reply.type === 'accepted' &&
        options.admits !== undefined &&
        (reply.server === undefined || !options.admits({ id: options.serverId, ...reply.server }))
      ) {
        // A host known from the DHT alone was admitted unseen; this is where its manifest is checked.
        failures.push(`${host.peerId} runs a manifest of it that is not whitelisted`)
        await framed.close()
        continue
      }
      if (reply.type === 'accepted') {
        view.noteSessionOpened(host.peerId)
        const kept = reply.keep === true ? options.kept : undefined
        return new NodeLink(
          host.peerId,
          framed,
          options.guard,
          options.maxUnsentBytes,
          kept && ((f) => kept.give(host.peerId, f)),
        )
      }
      failures.push(`${host.peerId} refused (${reply.code}): ${reply.message}`)
      if (reply.code === 'NODE_BUSY')
        busyFor = Math.min(busyFor ?? Number.POSITIVE_INFINITY, reply.retryAfterMs ?? 1_000)
      else reachedIdle = true
      await framed.close()
    } catch (err) {
      failures.push(`${host.peerId} unreachable: ${errorMessage(err)}`)
    }
  }
  if (busyFor !== undefined && !reachedIdle)
    throw new NexusError(
      'NODE_BUSY',
      `every host of server ${options.serverId} is busy starting servers; retry after ${busyFor} ms: ${failures.join('; ')}`,
      { retryAfterMs: busyFor },
    )
  throw new NexusError(
    'NO_HOST',
    `no node could open a session for server ${options.serverId}: ${failures.join('; ')}`,
  )
}

/**
 * Sends the open frame (and the first message) on a stream to the host and reads the node's reply: on a stream
 * kept from an earlier modern request when one waits, else on a new one. A kept stream that ends before the
 * reply was being closed by the node as this request reached it; the node never read the request, so it goes
 * out again on a new stream.
 */
async function openOnHost(
  peer: NexusPeer,
  peerId: string,
  options: ConnectOptions,
): Promise<{ framed: FramedStream; reply: OpenReply }> {
  const keep = options.era === 'modern' && options.kept?.enabled === true
  const kept = keep ? options.kept?.take(peerId) : undefined
  if (kept !== undefined) {
    try {
      return { framed: kept, reply: await handshake(kept, options, keep) }
    } catch (err) {
      const stale = kept.ended
      kept.abort(err as Error)
      if (!stale) throw err
    }
  }
  const stream = await peer.dialProtocol(peerIdFromString(peerId), MCP_STREAM_PROTOCOL, {
    signal: AbortSignal.timeout(options.handshakeTimeoutMs),
    maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
  })
  const framed = new FramedStream(stream)
  try {
    return { framed, reply: await handshake(framed, options, keep) }
  } catch (err) {
    framed.abort(err as Error)
    throw err
  }
}

async function handshake(framed: FramedStream, options: ConnectOptions, keep: boolean): Promise<OpenReply> {
  const open = openFrame(options.serverId, options.sessionId, options.auth, options.era, keep)
  framed.sendJsonFrames(options.firstMessage === undefined ? [open] : [open, options.firstMessage])
  return parseFrame(OpenReplySchema, await framed.nextFrame(options.handshakeTimeoutMs), 'open reply')
}
