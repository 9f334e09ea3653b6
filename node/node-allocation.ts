import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { shareOf } from '../allocator/allocate.ts'
import { EpochLoop } from '../allocator/epoch-loop.ts'
import { NetworkState } from '../allocator/network-state.ts'
import type { AllocatorServer, Assignment } from '../allocator/types.ts'
import type { Announcement } from '../protocol/announcement.ts'
import type { Whitelist } from '../trust/whitelist.ts'
import {
  type HostedServerConfig,
  isWhitelistedServer,
  type NodeConfig,
  type WhitelistedServer,
  WhitelistedServerSchema,
} from './config.ts'
import type { HostedServers } from './hosted-servers.ts'

/** One warm instance per this many sessions a replica is expected to carry, up to MAX_WARM_POOL. */
const SESSIONS_PER_WARM_INSTANCE = 32
const MAX_WARM_POOL = 8

export interface NodeAllocationEvents {
  /** A new epoch's assignment; `changed` when this node's share differs from the previous epoch's. */
  assignment: [{ assignment: Assignment; changed: boolean }]
  /** A peer announced another assignment for an epoch this node computed: their inputs differed. */
  divergence: [{ peerId: string; epoch: number; theirs: string; ours: string }]
}

/**
 * A node's part in network allocation: it records the gossiped state, computes the assignment every epoch
 * like every other peer, and turns its own share into the list of servers to run, with the operator's
 * settings for each and a warm pool sized by the demand the share carries.
 */
export class NodeAllocation extends EventEmitter<NodeAllocationEvents> {
  readonly state = new NetworkState()
  readonly #config: NodeConfig
  readonly #whitelist: Whitelist
  readonly #peerId: () => string
  readonly #loop: EpochLoop
  readonly #logger: Logger
  #eligible: string[] = []
  #share = new Map<string, number>()
  /** The assignment each peer last announced. */
  readonly #announced = new Map<string, { epoch: number; hash: string }>()
  /** How many times a peer's assignment differed from this node's for the same epoch. */
  divergences = 0

  constructor(config: NodeConfig, whitelist: Whitelist, peerId: () => string, logger: Logger) {
    super()
    this.#config = config
    this.#whitelist = whitelist
    this.#peerId = peerId
    this.#logger = logger
    const { epochMs, settleMs, joinDelayMs, policy } = config.allocation
    this.#loop = new EpochLoop(
      this.state,
      () => this.#servers(),
      { epochMs, settleMs, joinDelayMs, policy },
      logger,
    )
    this.#loop.on('assignment', (assignment) => {
      // Until this node counts itself, its view of the network may be partial: it neither applies nor announces.
      if (!this.member(assignment.epoch)) return
      const share = shareOf(assignment, this.#peerId())
      const changed =
        share.size !== this.#share.size || [...share].some(([id, slots]) => this.#share.get(id) !== slots)
      this.#share = share
      this.emit('assignment', { assignment, changed })
      for (const [peerId, theirs] of this.#announced) this.#compare(peerId, theirs)
    })
  }

  start(): void {
    this.#loop.start()
  }

  /** Records a peer's announcement for the allocator, and checks its assignment against this node's. */
  observe(announcement: Announcement): void {
    this.state.addAnnouncement(announcement)
    if (announcement.assignment === undefined) return
    this.#announced.set(announcement.peerId, announcement.assignment)
    this.#compare(announcement.peerId, announcement.assignment)
  }

  #compare(peerId: string, theirs: { epoch: number; hash: string }): void {
    const ours = this.assignment
    if (ours === undefined || ours.epoch !== theirs.epoch || ours.hash === theirs.hash) return
    this.#announced.delete(peerId)
    this.divergences++
    this.#logger.warn(
      { peer: peerId, epoch: ours.epoch },
      'a peer computed another assignment for this epoch',
    )
    this.emit('divergence', { peerId, epoch: ours.epoch, theirs: theirs.hash, ours: ours.hash })
  }

  stop(): void {
    this.#loop.stop()
  }

  get assignment(): Assignment | undefined {
    const latest = this.#loop.latest
    return latest !== undefined && this.member(latest.epoch) ? latest : undefined
  }

  /** When this node started, as it announces; the allocator counts it from `joinDelayMs` after. */
  readonly startedAt = Date.now()

  /** Whether this node counts in the allocation of an epoch. */
  member(epoch: number): boolean {
    const { epochMs, joinDelayMs } = this.#config.allocation
    return this.startedAt <= epoch * epochMs - joinDelayMs
  }

  /** Whitelisted servers this node can run: their packages are installed and verified here. */
  get eligible(): string[] {
    return this.#eligible
  }

  /** Checks which whitelisted servers this node could run (each package is verified once per manifest). */
  async refreshEligible(hosted: HostedServers): Promise<void> {
    const candidates = this.#whitelistedIds().map((id) => this.#settings(id, 0))
    const { resolved } = await hosted.resolve(candidates)
    this.#eligible = resolved.map((r) => r.config.id).sort()
  }

  /** The servers to run now: unverified launch configurations as listed, and this node's share. */
  wanted(): HostedServerConfig[] {
    const statics = this.#config.servers.filter((s) => !isWhitelistedServer(s))
    const assigned = [...this.#share].map(([id, slots]) =>
      this.#settings(id, Math.min(MAX_WARM_POOL, Math.ceil(slots / SESSIONS_PER_WARM_INSTANCE))),
    )
    return [...statics, ...assigned]
  }

  #whitelistedIds(): string[] {
    return [...new Set(this.#whitelist.entries().map((e) => e.manifest.id))].sort()
  }

  /** What the allocator places: one entry per whitelisted server id, with what a replica needs. */
  #servers(): AllocatorServer[] {
    return this.#whitelistedIds().map((id) => {
      const { manifest } = this.#whitelist.resolve(id)
      return { id, cpu: manifest.resources.cpu, memoryMiB: manifest.resources.memoryMiB }
    })
  }

  /** The operator's settings for a server (from `servers`), with at least `warmPool` warm instances. */
  #settings(id: string, warmPool: number): WhitelistedServer {
    const configured = this.#config.servers.find(
      (s): s is WhitelistedServer => isWhitelistedServer(s) && s.id === id,
    )
    const settings = configured ?? WhitelistedServerSchema.parse({ id })
    return { ...settings, warmPool: Math.max(settings.warmPool, warmPool) }
  }
}
