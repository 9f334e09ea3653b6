import { EventEmitter } from 'node:events'
import type { Message } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { type Announcement, decodeAnnouncement } from '../protocol/announcement.ts'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'

export interface Host {
  peerId: string
  addrs: string[]
  /** Sessions the node reported for this server. */
  sessions: number
  /** Sessions the node reported in total, and its capacity. */
  load: { sessions: number; capacity: number }
}

interface Entry {
  announcement: Announcement
  expiresAt: number
}

export interface NetworkViewEvents {
  change: []
}

/**
 * The gateway's picture of which node hosts which server, built from announcements that expire when a node
 * goes silent. Only the sender itself may announce for its peer id (gossipsub signs every message).
 */
export class NetworkView extends EventEmitter<NetworkViewEvents> {
  readonly #peer: NexusPeer
  readonly #ttlMs: number
  readonly #logger: Logger
  readonly #entries = new Map<string, Entry>()
  #sweeper: NodeJS.Timeout | undefined
  readonly #onMessage = (evt: CustomEvent<Message>) => this.#receive(evt.detail)

  constructor(peer: NexusPeer, ttlMs: number, logger: Logger) {
    super()
    this.#peer = peer
    this.#ttlMs = ttlMs
    this.#logger = logger
  }

  start(): void {
    this.#peer.services.pubsub.addEventListener('message', this.#onMessage)
    this.#peer.services.pubsub.subscribe(ANNOUNCE_TOPIC)
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(50, Math.floor(this.#ttlMs / 3)))
  }

  stop(): void {
    clearInterval(this.#sweeper)
    this.#peer.services.pubsub.removeEventListener('message', this.#onMessage)
    this.#peer.services.pubsub.unsubscribe(ANNOUNCE_TOPIC)
    this.#entries.clear()
  }

  /** Live, non-draining hosts of a server. */
  hostsOf(serverId: string): Host[] {
    const hosts: Host[] = []
    const now = Date.now()
    for (const { announcement, expiresAt } of this.#entries.values()) {
      if (expiresAt < now || announcement.draining) continue
      const server = announcement.servers.find((s) => s.id === serverId)
      if (server === undefined) continue
      hosts.push({
        peerId: announcement.peerId,
        addrs: announcement.addrs,
        sessions: server.sessions,
        load: announcement.load,
      })
    }
    return hosts
  }

  /** Every server some live node hosts. */
  serverIds(): string[] {
    const ids = new Set<string>()
    const now = Date.now()
    for (const { announcement, expiresAt } of this.#entries.values()) {
      if (expiresAt >= now && !announcement.draining) for (const s of announcement.servers) ids.add(s.id)
    }
    return [...ids].sort()
  }

  /** Forgets a node at once, e.g. after its connection failed; its next announcement brings it back. */
  forget(peerId: string): void {
    if (this.#entries.delete(peerId)) this.emit('change')
  }

  /** Resolves once some live node hosts the server; rejects after the timeout. */
  waitForServer(serverId: string, timeoutMs: number): Promise<void> {
    if (this.hostsOf(serverId).length > 0) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const onChange = () => {
        if (this.hostsOf(serverId).length === 0) return
        clearTimeout(timer)
        this.off('change', onChange)
        resolve()
      }
      const timer = setTimeout(() => {
        this.off('change', onChange)
        reject(new Error(`no node announced server ${serverId} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.on('change', onChange)
    })
  }

  #receive(message: Message): void {
    if (message.topic !== ANNOUNCE_TOPIC || message.type !== 'signed') return
    const announcement = decodeAnnouncement(message.data)
    if (announcement === undefined || announcement.peerId !== message.from.toString()) {
      this.#logger.debug(
        { from: message.from.toString() },
        'ignored malformed or mis-attributed announcement',
      )
      return
    }
    const previous = this.#entries.get(announcement.peerId)
    if (previous !== undefined && previous.announcement.seq >= announcement.seq) return
    this.#entries.set(announcement.peerId, { announcement, expiresAt: Date.now() + this.#ttlMs })
    if (previous === undefined) void this.#rememberAddresses(announcement)
    this.emit('change')
  }

  async #rememberAddresses(announcement: Announcement): Promise<void> {
    try {
      await this.#peer.peerStore.merge(peerIdFromString(announcement.peerId), {
        multiaddrs: announcement.addrs.map((a) => multiaddr(a)),
      })
    } catch (err) {
      this.#logger.debug({ err }, 'could not store announced addresses')
    }
  }

  #sweep(): void {
    const now = Date.now()
    let changed = false
    for (const [peerId, entry] of this.#entries) {
      if (entry.expiresAt < now) {
        this.#entries.delete(peerId)
        changed = true
      }
    }
    if (changed) this.emit('change')
  }
}
