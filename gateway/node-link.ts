import { peerIdFromString } from '@libp2p/peer-id'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { FramedStream } from '../protocol/framed-stream.ts'
import { MCP_STREAM_PROTOCOL } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'
import {
  type AuthContext,
  ClosingSchema,
  decodeJson,
  encodeJson,
  OpenReplySchema,
  openFrame,
  parseFrame,
} from '../protocol/session-handshake.ts'
import type { Host, NetworkView } from './network-view.ts'

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
  onMessage: ((message: JSONRPCMessage) => void) | undefined
  onEnd: ((end: LinkEnd) => void) | undefined
  readonly #framed: FramedStream
  readonly #logger: Logger
  #closing: LinkEnd | undefined
  #closedByUs = false

  constructor(peerId: string, framed: FramedStream, logger: Logger) {
    this.peerId = peerId
    this.#framed = framed
    this.#logger = logger
    framed.onFrame((frame) => this.#receive(frame))
    framed.onEnd((error) => {
      if (this.#closedByUs) return
      const end = this.#closing ?? {
        code: 'NODE_FAILED',
        reason: error ? `connection to node lost: ${error.message}` : 'the node closed the session stream',
      }
      this.onEnd?.(end)
    })
  }

  send(message: JSONRPCMessage): void {
    if (!this.#framed.writable) return
    this.#framed.send(encodeJson(message))
  }

  async close(): Promise<void> {
    this.#closedByUs = true
    await this.#framed.close()
  }

  #receive(frame: Uint8Array): void {
    let value: unknown
    try {
      value = decodeJson(frame)
    } catch {
      this.#logger.warn('node sent a frame that is not JSON; dropped')
      return
    }
    if (typeof value !== 'object' || value === null) return
    if ('nexus' in value) {
      const closing = ClosingSchema.safeParse(value)
      if (closing.success) this.#closing = { code: closing.data.code, reason: closing.data.message }
      return
    }
    if ((value as { jsonrpc?: unknown }).jsonrpc !== '2.0') {
      this.#logger.warn('node relayed a message that is not JSON-RPC 2.0; dropped')
      return
    }
    this.onMessage?.(value as JSONRPCMessage)
  }
}

export interface ConnectOptions {
  serverId: string
  sessionId: string
  auth: AuthContext
  handshakeTimeoutMs: number
  /** Hosts not to try (e.g. the one that just failed). */
  exclude?: Set<string>
}

/** Orders hosts so the least loaded comes first; ties broken by peer id so the order is stable. */
export function rankHosts(hosts: Host[], localSessions: (peerId: string) => number): Host[] {
  const score = (h: Host) => {
    const used = Math.max(h.load.sessions, localSessions(h.peerId))
    return h.load.capacity > 0 ? used / h.load.capacity : Number.POSITIVE_INFINITY
  }
  return [...hosts].sort((a, b) => score(a) - score(b) || (a.peerId < b.peerId ? -1 : 1))
}

/**
 * Opens a session on the best node hosting the server; a node that refuses or cannot be reached is skipped for
 * the next. Fails with NO_HOST, naming every reason, when none accepts.
 */
export async function connectToHost(
  peer: NexusPeer,
  view: NetworkView,
  localSessions: (peerId: string) => number,
  options: ConnectOptions,
  logger: Logger,
): Promise<NodeLink> {
  const hosts = rankHosts(
    view.hostsOf(options.serverId).filter((h) => !options.exclude?.has(h.peerId)),
    localSessions,
  )
  const failures: string[] = []
  for (const host of hosts) {
    let framed: FramedStream | undefined
    try {
      const stream = await peer.dialProtocol(peerIdFromString(host.peerId), MCP_STREAM_PROTOCOL, {
        signal: AbortSignal.timeout(options.handshakeTimeoutMs),
        maxOutboundStreams: 100_000,
      })
      framed = new FramedStream(stream)
      framed.sendJson(openFrame(options.serverId, options.sessionId, options.auth))
      const reply = parseFrame(
        OpenReplySchema,
        await framed.nextFrame(options.handshakeTimeoutMs),
        'open reply',
      )
      if (reply.type === 'accepted') return new NodeLink(host.peerId, framed, logger)
      failures.push(`${host.peerId} refused (${reply.code}): ${reply.message}`)
      await framed.close()
    } catch (err) {
      failures.push(`${host.peerId} unreachable: ${errorMessage(err)}`)
      framed?.abort(err as Error)
    }
  }
  if (hosts.length === 0) failures.push('no live node hosts it')
  throw new NexusError(
    'NO_HOST',
    `no node could open a session for server ${options.serverId}: ${failures.join('; ')}`,
  )
}
