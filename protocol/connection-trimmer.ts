import { type Connection, KEEP_ALIVE, type Libp2p } from '@libp2p/interface'
import type { Logger } from 'pino'
import { errorMessage } from './errors.ts'
import { DHT_PROTOCOL } from './names.ts'

export interface ConnectionTrimOptions {
  /** Trimming starts when this peer has more connections than this… */
  highWater: number
  /** …and closes idle ones until it has this many, or no idle one is left. */
  lowWater: number
  /** A connection opened, or last carrying a stream of its own (an MCP session), within this is not idle. */
  idleMs: number
  /** How often to count. */
  intervalMs: number
}

/**
 * A peer of a 100-peer network kept connections to 80 of the others: every connection the DHT's walks and
 * lookups ever opened stayed open (libp2p closes none before `maxConnections`, and yamux's keep-alive keeps idle
 * sockets open). Gossip needs a mesh of 2–4 per topic, the DHT its 20 closest peers; the rest are idle state.
 */
export const CONNECTION_TRIM_DEFAULTS: ConnectionTrimOptions = {
  highWater: 48,
  lowWater: 24,
  idleMs: 60_000,
  intervalMs: 10_000,
}

/**
 * Streams of the network's own upkeep: gossip, the DHT, identify and ping. A connection carrying only these is
 * idle; any other stream (an MCP session, a protocol being negotiated) makes it busy.
 */
const UPKEEP_PROTOCOL_PREFIXES = ['/meshsub/', '/floodsub/', DHT_PROTOCOL, '/ipfs/id/', '/ipfs/ping/']

function isUpkeep(protocol: string | undefined): boolean {
  return protocol !== undefined && UPKEEP_PROTOCOL_PREFIXES.some((prefix) => protocol.startsWith(prefix))
}

function isIdleNow(connection: Connection): boolean {
  return connection.streams.every((stream) => isUpkeep(stream.protocol))
}

export interface ConnectionTrimmerDeps {
  /** Peers whose connections are never trimmed (bootstrap peers: their keeper would redial at once). */
  isProtected?: (peerId: string) => boolean
  /** Peers in this peer's gossip mesh, kept whatever their tags say (tags are written asynchronously). */
  meshPeers?: () => Iterable<string>
  logger?: Logger
  /** The clock, for tests. */
  now?: () => number
}

/**
 * Closes connections nobody uses once a peer has more than `highWater`, down to `lowWater`: the idea of
 * go-libp2p's connection manager (low and high water marks, a grace period), which js-libp2p lacks.
 *
 * Only connections this peer opened are trimmed. The dialer owns a connection: if both ends trimmed by their own
 * rules, one end could close what the other keeps alive (its DHT's closest peers are redialled when they drop),
 * and the two would close and redial forever. Never trimmed either: peers tagged keep-alive (the DHT's closest
 * peers), the gossip mesh, protected peers (bootstrap), and connections busy within `idleMs` (any stream other
 * than the network's upkeep). Of the rest, those valued least go first, then the longest idle.
 */
export class ConnectionTrimmer {
  readonly #peer: Libp2p
  readonly #options: ConnectionTrimOptions
  readonly #deps: ConnectionTrimmerDeps
  readonly #now: () => number
  /** When each open connection last carried a stream of its own, by connection id. */
  readonly #lastBusyAt = new Map<string, number>()
  #timer: NodeJS.Timeout | undefined
  #trimming = false
  /** Connections this trimmer closed, for tests and the operator's logs. */
  closed = 0

  constructor(peer: Libp2p, options: Partial<ConnectionTrimOptions> = {}, deps: ConnectionTrimmerDeps = {}) {
    this.#options = { ...CONNECTION_TRIM_DEFAULTS, ...options }
    if (this.#options.lowWater > this.#options.highWater)
      throw new RangeError(
        `connection trim: lowWater (${this.#options.lowWater}) is above highWater (${this.#options.highWater})`,
      )
    this.#peer = peer
    this.#deps = deps
    this.#now = deps.now ?? Date.now
  }

  start(): void {
    this.#timer = setInterval(() => void this.trim(), this.#options.intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
  }

  /** Notes which connections are busy and, above the high-water mark, closes idle ones; resolves when closed. */
  async trim(): Promise<void> {
    if (this.#trimming || this.#peer.status !== 'started') return
    const connections = this.#peer.getConnections()
    const now = this.#now()
    this.#noteBusy(connections, now)
    if (connections.length <= this.#options.highWater) return
    this.#trimming = true
    try {
      const idle = await this.#idleCandidates(connections, now)
      const toClose = idle.slice(0, connections.length - this.#options.lowWater)
      await Promise.all(toClose.map((connection) => this.#close(connection)))
    } finally {
      this.#trimming = false
    }
  }

  #noteBusy(connections: Connection[], now: number): void {
    const open = new Set<string>()
    for (const connection of connections) {
      open.add(connection.id)
      if (!isIdleNow(connection)) this.#lastBusyAt.set(connection.id, now)
    }
    for (const id of this.#lastBusyAt.keys()) if (!open.has(id)) this.#lastBusyAt.delete(id)
  }

  /**
   * Outbound, unprotected connections idle for `idleMs`: those the peer store values least first (a routing-table
   * peer of the DHT over a stranger), then the longest idle.
   */
  async #idleCandidates(connections: Connection[], now: number): Promise<Connection[]> {
    const mesh = new Set(this.#deps.meshPeers?.() ?? [])
    const candidates: Array<{ connection: Connection; value: number; idleSince: number }> = []
    for (const connection of connections) {
      if (connection.direction !== 'outbound' || connection.status !== 'open') continue
      const idleSince = Math.max(connection.timeline.open, this.#lastBusyAt.get(connection.id) ?? 0)
      if (now - idleSince < this.#options.idleMs) continue
      const peerId = connection.remotePeer.toString()
      if (mesh.has(peerId) || this.#deps.isProtected?.(peerId)) continue
      const value = await this.#value(connection)
      if (value === 'keep-alive') continue
      candidates.push({ connection, value, idleSince })
    }
    candidates.sort((a, b) => a.value - b.value || a.idleSince - b.idleSince)
    return candidates.map((c) => c.connection)
  }

  /**
   * The sum of the remote peer's tags in the peer store, or 'keep-alive' when it is tagged so (the DHT's closest
   * peers: libp2p redials those whenever they drop).
   */
  async #value(connection: Connection): Promise<number | 'keep-alive'> {
    try {
      const { tags } = await this.#peer.peerStore.get(connection.remotePeer)
      if (tags.has(KEEP_ALIVE)) return 'keep-alive'
      let value = 0
      for (const tag of tags.values()) value += tag.value
      return value
    } catch {
      return 0 // not in the peer store: nothing values it
    }
  }

  async #close(connection: Connection): Promise<void> {
    // Looked at again as it goes: a session may have opened a stream on it while the tags were read.
    if (connection.status !== 'open' || !isIdleNow(connection)) return
    this.closed++
    this.#lastBusyAt.delete(connection.id)
    try {
      await connection.close({ signal: AbortSignal.timeout(1_000) })
    } catch (err) {
      connection.abort(err instanceof Error ? err : new Error(errorMessage(err)))
    }
    this.#logger?.debug({ peer: connection.remotePeer.toString() }, 'idle connection closed')
  }

  get #logger(): Logger | undefined {
    return this.#deps.logger
  }
}
