import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import { errorMessage } from '../protocol/errors.ts'
import type { NexusPeer } from '../protocol/peer.ts'
import { serverCid } from '../protocol/server-cid.ts'

/**
 * Keeps this node's DHT provider records in step with what it hosts: it provides a CID per
 * `server-id@version` (and per server id) while the server is up, and stops re-providing it when it goes.
 * Providing runs in the background: a query can take a while in a large network.
 */
export class ProviderRecords {
  readonly #peer: NexusPeer
  readonly #logger: Logger
  readonly #provided = new Map<string, CID[]>()
  readonly #onProvided: (server: { id: string; version: string }) => void

  constructor(
    peer: NexusPeer,
    logger: Logger,
    onProvided: (server: { id: string; version: string }) => void,
  ) {
    this.#peer = peer
    this.#logger = logger
    this.#onProvided = onProvided
  }

  /** Provides newly hosted servers, withdraws those no longer hosted. */
  update(servers: { id: string; version: string }[]): void {
    const wanted = new Set(servers.map((s) => `${s.id}@${s.version}`))
    for (const [key, cids] of this.#provided) {
      if (wanted.has(key)) continue
      this.#provided.delete(key)
      for (const cid of cids) void this.#peer.contentRouting.cancelReprovide(cid).catch(() => {})
    }
    for (const server of servers) {
      const key = `${server.id}@${server.version}`
      if (this.#provided.has(key)) continue
      this.#provided.set(key, [])
      void this.#provide(key, server.id, server.version)
    }
  }

  async #provide(key: string, serverId: string, version: string): Promise<void> {
    try {
      const cids = await Promise.all([serverCid(serverId, version), serverCid(serverId)])
      for (const cid of cids) {
        if (this.#provided.get(key) === undefined) return
        await this.#peer.contentRouting.provide(cid)
      }
      if (!this.#provided.has(key)) return
      this.#provided.set(key, cids)
      this.#logger.debug({ server: key }, 'provided in the DHT')
      this.#onProvided({ id: serverId, version })
    } catch (err) {
      if (this.#peer.status !== 'started') return
      this.#logger.warn({ server: key, err: errorMessage(err) }, 'could not provide in the DHT')
      // Retried on the next update (the next announcement) rather than in a tight loop.
      if (this.#provided.get(key)?.length === 0) this.#provided.delete(key)
    }
  }
}
