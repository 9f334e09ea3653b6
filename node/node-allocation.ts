import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { shareOf } from '../allocator/allocate.ts'
import { EpochLoop } from '../allocator/epoch-loop.ts'
import { NetworkState } from '../allocator/network-state.ts'
import type { AllocatorServer, Assignment } from '../allocator/types.ts'
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
  #eligible: string[] = []
  #share = new Map<string, number>()

  constructor(config: NodeConfig, whitelist: Whitelist, peerId: () => string, logger: Logger) {
    super()
    this.#config = config
    this.#whitelist = whitelist
    this.#peerId = peerId
    const { epochMs, settleMs, policy } = config.allocation
    this.#loop = new EpochLoop(this.state, () => this.#servers(), { epochMs, settleMs, policy }, logger)
    this.#loop.on('assignment', (assignment) => {
      const share = shareOf(assignment, this.#peerId())
      const changed =
        share.size !== this.#share.size || [...share].some(([id, slots]) => this.#share.get(id) !== slots)
      this.#share = share
      this.emit('assignment', { assignment, changed })
    })
  }

  start(): void {
    this.#loop.start()
  }

  stop(): void {
    this.#loop.stop()
  }

  get assignment(): Assignment | undefined {
    return this.#loop.latest
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
