import { EventEmitter } from 'node:events'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import {
  type Announcement,
  decodeAnnouncement,
  type HostedServer,
  type NodeLoad,
} from '../protocol/announcement.ts'
import { errorMessage } from '../protocol/errors.ts'
import { DEFAULT_FRESHNESS, GossipRecords } from '../protocol/gossip-records.ts'
import { ANNOUNCE_DIRECT_PROTOCOL, ANNOUNCE_TOPIC } from '../protocol/names.ts'
import type { NexusPeer } from '../protocol/peer.ts'
import { serverCid } from '../protocol/server-cid.ts'
import { isValidServerId } from '../protocol/session-handshake.ts'

/** A node that can serve a server, as far as this gateway knows. */
export interface Host {
  peerId: string
  /** `gossip`: from the node's live announcements; `dht`: a provider record, load unknown. */
  source: 'gossip' | 'dht'
  /** What the node announced for this server, and its load; absent for DHT-only hosts. */
  server?: HostedServer
  load?: NodeLoad
  /** Sessions this gateway opened there since the node's last announcement (which cannot count them yet). */
  openedSinceAnnouncement: number
}

export interface NetworkViewOptions {
  /** Learn hosts from gossiped announcements (default). Off: only the DHT. */
  gossip: boolean
  /** Ask the DHT for providers when no announcement names a host. */
  dht: boolean
  /** Announcements expire after this many of the node's announcement intervals without a fresh one. */
  missedHeartbeats: number
  /** How long a DHT lookup may take, and how long its answer is trusted. */
  dhtLookupTimeoutMs: number
  dhtEntryTtlMs: number
}

/** Which announced servers the gateway may route to: the whitelist's decision. */
export interface HostAdmission {
  /** A node announced (or, opening a session, declared) this server with this manifest hash. */
  announced(server: Pick<HostedServer, 'id' | 'version' | 'manifestHash'>): boolean
  /** A DHT provider record names the server; its manifest is not known yet. */
  provided(serverId: string): boolean
}

export const ADMIT_ALL: HostAdmission = { announced: () => true, provided: () => true }

interface AnnouncedEntry {
  announcement: Announcement
  expiresAt: number
  openedSinceAnnouncement: number
}

interface ProvidedEntry {
  servers: Set<string>
  expiresAt: number
}

export interface NetworkViewEvents {
  change: []
  /** A node announced a server this gateway will not route to (its manifest is not whitelisted); once each. */
  refused: [{ node: string; server: string; reason: string }]
}

/**
 * The gateway's picture of which node hosts which server and how loaded each is: validated announcements that
 * expire when a node goes silent, completed from the DHT's provider records when gossip has nothing.
 */
export class NetworkView extends EventEmitter<NetworkViewEvents> {
  readonly #peer: NexusPeer
  readonly #options: NetworkViewOptions
  readonly #logger: Logger
  readonly #admission: HostAdmission
  /** `peer/server/hash` of refused announcements already logged, so that each is logged once. */
  readonly #refusedLogged = new Set<string>()
  /** The validated announce topic: its counts and `invalid` events say what was refused and why. */
  readonly announcements: GossipRecords<Announcement>
  readonly #announced = new Map<string, AnnouncedEntry>()
  readonly #provided = new Map<string, ProvidedEntry>()
  readonly #lookups = new Map<string, Promise<void>>()
  /** Servers the DHT had no provider for, and until when not to ask again (bad input must not flood it). */
  readonly #notFound = new Map<string, number>()
  #sweeper: NodeJS.Timeout | undefined

  constructor(peer: NexusPeer, options: NetworkViewOptions, logger: Logger, admission = ADMIT_ALL) {
    super()
    this.#peer = peer
    this.#options = options
    this.#logger = logger
    this.#admission = admission
    this.announcements = new GossipRecords(
      peer,
      ANNOUNCE_TOPIC,
      decodeAnnouncement,
      DEFAULT_FRESHNESS,
      logger,
      { directProtocol: ANNOUNCE_DIRECT_PROTOCOL },
    )
    this.announcements.on('record', (announcement) => this.#receive(announcement))
  }

  start(): void {
    this.announcements.start({ subscribe: this.#options.gossip })
    this.#sweeper = setInterval(() => this.#sweep(), 250)
  }

  stop(): void {
    clearInterval(this.#sweeper)
    this.announcements.stop()
    this.#announced.clear()
    this.#provided.clear()
  }

  /** Live, non-draining hosts of a server; DHT-found ones only when no announcement names one. */
  hostsOf(serverId: string): Host[] {
    const hosts: Host[] = []
    const now = Date.now()
    for (const entry of this.#announced.values()) {
      const { announcement } = entry
      if (entry.expiresAt < now || announcement.draining) continue
      const server = announcement.servers.find((s) => s.id === serverId)
      if (server === undefined || !this.#admits(announcement.peerId, server)) continue
      hosts.push({
        peerId: announcement.peerId,
        source: 'gossip',
        server,
        load: announcement.load,
        openedSinceAnnouncement: entry.openedSinceAnnouncement,
      })
    }
    if (hosts.length > 0 || !this.#admission.provided(serverId)) return hosts
    for (const [peerId, entry] of this.#provided) {
      if (entry.expiresAt >= now && entry.servers.has(serverId) && !this.#announced.has(peerId))
        // No announcement to correct: routing judges these on the gateway's own counts alone.
        hosts.push({ peerId, source: 'dht', openedSinceAnnouncement: 0 })
    }
    return hosts
  }

  /** Hosts of a server, asking the DHT when the view has none. */
  async findHosts(serverId: string): Promise<Host[]> {
    const hosts = this.hostsOf(serverId)
    if (hosts.length > 0 || !this.#options.dht || !isValidServerId(serverId)) return hosts
    if ((this.#notFound.get(serverId) ?? 0) > Date.now()) return hosts
    let lookup = this.#lookups.get(serverId)
    if (lookup === undefined) {
      lookup = this.#lookup(serverId).finally(() => this.#lookups.delete(serverId))
      this.#lookups.set(serverId, lookup)
    }
    await lookup
    return this.hostsOf(serverId)
  }

  /** The announcements of the nodes heard from lately (what the network page shows). */
  liveAnnouncements(): Announcement[] {
    const now = Date.now()
    return [...this.#announced.values()].filter((e) => e.expiresAt >= now).map((e) => e.announcement)
  }

  /** Every server some live node hosts. */
  serverIds(): string[] {
    const ids = new Set<string>()
    const now = Date.now()
    for (const { announcement, expiresAt } of this.#announced.values()) {
      if (expiresAt >= now && !announcement.draining)
        for (const s of announcement.servers) if (this.#admits(announcement.peerId, s)) ids.add(s.id)
    }
    for (const entry of this.#provided.values())
      if (entry.expiresAt >= now)
        for (const id of entry.servers) if (this.#admission.provided(id)) ids.add(id)
    return [...ids].sort()
  }

  /** Counts a session this gateway just opened on a node, until the node's next announcement includes it. */
  noteSessionOpened(peerId: string): void {
    const entry = this.#announced.get(peerId)
    if (entry !== undefined) entry.openedSinceAnnouncement++
  }

  /** Whether the node announced itself within its heartbeat window. */
  isLive(peerId: string): boolean {
    const entry = this.#announced.get(peerId)
    return entry !== undefined && entry.expiresAt >= Date.now()
  }

  /** Forgets a node at once, e.g. after its connection failed; its next announcement brings it back. */
  forget(peerId: string): void {
    const removed = this.#announced.delete(peerId)
    if (this.#provided.delete(peerId) || removed) this.emit('change')
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

  #admits(peerId: string, server: HostedServer): boolean {
    if (this.#admission.announced(server)) return true
    const key = `${peerId}/${server.id}@${server.version}/${server.manifestHash}`
    if (!this.#refusedLogged.has(key)) {
      if (this.#refusedLogged.size > 10_000) this.#refusedLogged.clear()
      this.#refusedLogged.add(key)
      this.#logger.warn(
        { node: peerId, server: `${server.id}@${server.version}`, manifestHash: server.manifestHash },
        'node announces a manifest that is not whitelisted; not routing there',
      )
      this.emit('refused', {
        node: peerId,
        server: `${server.id}@${server.version}`,
        reason: 'its manifest is not whitelisted here',
      })
    }
    return false
  }

  #receive(received: Announcement): void {
    const previous = this.#announced.get(received.peerId)
    // Nodes send their links only now and then (`node/announced-links.ts`): the last ones hold until new ones come.
    const links = received.links ?? previous?.announcement.links
    const announcement = links === undefined ? received : { ...received, links }
    this.#announced.set(announcement.peerId, {
      announcement,
      expiresAt: Date.now() + this.#options.missedHeartbeats * announcement.intervalMs,
      openedSinceAnnouncement: 0,
    })
    if (previous === undefined) void this.#rememberAddresses(announcement.peerId, announcement.addrs)
    this.emit('change')
  }

  /**
   * Asks the DHT for providers of the server until some are found or the lookup times out. A query can end
   * empty-handed while this peer's routing table is still filling up (it just joined), so it is repeated.
   */
  async #lookup(serverId: string): Promise<void> {
    const signal = AbortSignal.timeout(this.#options.dhtLookupTimeoutMs)
    const cid = await serverCid(serverId)
    let found = 0
    for (let attempt = 1; found === 0 && !signal.aborted; attempt++) {
      try {
        for await (const provider of this.#peer.contentRouting.findProviders(cid, { signal })) {
          const peerId = provider.id.toString()
          if (peerId === this.#peer.peerId.toString()) continue
          await this.#rememberAddresses(
            peerId,
            provider.multiaddrs.map((m) => m.toString()),
          )
          this.#addProvided(peerId, serverId)
          // A few hosts are enough to open a session; the rest can be found next time.
          if (++found >= 8) break
        }
      } catch (err) {
        if (!signal.aborted)
          this.#logger.debug({ serverId, attempt, err: errorMessage(err) }, 'DHT lookup failed')
      }
      if (found === 0 && !signal.aborted)
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * 2 ** attempt)))
    }
    this.#logger.debug({ serverId, found }, 'DHT lookup done')
    if (found === 0) this.#notFound.set(serverId, Date.now() + 5_000)
  }

  #addProvided(peerId: string, serverId: string): void {
    const entry = this.#provided.get(peerId) ?? { servers: new Set<string>(), expiresAt: 0 }
    entry.servers.add(serverId)
    entry.expiresAt = Date.now() + this.#options.dhtEntryTtlMs
    this.#provided.set(peerId, entry)
    this.emit('change')
  }

  async #rememberAddresses(peerId: string, addrs: string[]): Promise<void> {
    try {
      await this.#peer.peerStore.merge(peerIdFromString(peerId), {
        multiaddrs: addrs.map((a) => multiaddr(a)),
      })
    } catch (err) {
      this.#logger.debug({ err }, 'could not store announced addresses')
    }
  }

  #sweep(): void {
    const now = Date.now()
    const announcedExpired = dropExpired(this.#announced, now)
    const providedExpired = dropExpired(this.#provided, now)
    for (const [serverId, until] of this.#notFound) if (until < now) this.#notFound.delete(serverId)
    if (announcedExpired || providedExpired) this.emit('change')
  }
}

/** Removes the entries whose time is up; true if there were any. */
function dropExpired(entries: Map<string, { expiresAt: number }>, now: number): boolean {
  let dropped = false
  for (const [key, entry] of entries) {
    if (entry.expiresAt >= now) continue
    entries.delete(key)
    dropped = true
  }
  return dropped
}
