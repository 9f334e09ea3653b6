import { EventEmitter } from 'node:events'
import { getAddress, Interface, type JsonRpcProvider, type Log } from 'ethers'
import type { Logger } from 'pino'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { Registry, type RegistryRecord } from './registry.ts'
import { registryArtifact } from './registry-artifact.ts'

/** What the registry says at one block: the curator set and every published (id, version). */
export interface RegistryState {
  block: number
  /** The hash of `block` when it was read: a different one later means the chain reorganised. */
  blockHash: string | undefined
  chainId: number
  curators: Set<string>
  /** Keyed by `id@version`. */
  records: Map<string, RegistryRecord>
}

export interface RegistryFollowerOptions {
  provider: JsonRpcProvider
  address: string
  /** How often to look for a new block. A revocation takes effect within one poll of its block. */
  pollIntervalMs: number
  logger: Logger
  /** Blocks per `eth_getLogs` request when catching up. */
  logRange?: number
}

export interface RegistryFollowerEvents {
  update: [RegistryState]
}

/**
 * Rebuilds the registry's state from its events, from the block it was deployed in, and then follows new
 * blocks. Replaying from deployment on every start means a revocation made while the follower was down is
 * never missed. When the chain cannot be reached, the last state stays in force and the follower retries.
 * When the chain reorganises under it (the last block it read has another hash, or is gone), it replays
 * from deployment again: a publication or revocation that was reorganised away is undone.
 */
export class RegistryFollower extends EventEmitter<RegistryFollowerEvents> {
  readonly #options: RegistryFollowerOptions
  readonly #iface = new Interface(registryArtifact().abi)
  #state: RegistryState | undefined
  #deployedBlock = 0
  #timer: NodeJS.Timeout | undefined
  #polling: Promise<void> | undefined
  #stopped = false

  constructor(options: RegistryFollowerOptions) {
    super()
    this.#options = options
  }

  get state(): RegistryState {
    if (this.#state === undefined) throw new NexusError('STOPPED', 'the registry follower is not started')
    return this.#state
  }

  /** Replays every event up to the current block; throws CHAIN_UNAVAILABLE when that cannot be done. */
  async start(): Promise<RegistryState> {
    const { provider, address } = this.#options
    let chainId: number
    let fromBlock: number
    try {
      chainId = Number((await provider.getNetwork()).chainId)
      const code = await provider.getCode(address)
      if (code === '0x') throw new Error(`no contract at ${address}`)
      fromBlock = await new Registry(address, provider).deployedBlock()
    } catch (err) {
      throw new NexusError('CHAIN_UNAVAILABLE', `cannot read the registry: ${errorMessage(err)}`, {
        cause: err,
      })
    }
    this.#deployedBlock = fromBlock
    this.#state = this.#emptyState(chainId)
    await this.#catchUp()
    this.#schedule()
    return this.#state
  }

  stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    return this.#polling ?? Promise.resolve()
  }

  #schedule(): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#polling = this.#catchUp()
        .catch((err) =>
          this.#options.logger.warn({ err: errorMessage(err) }, 'registry follow failed; retrying'),
        )
        .finally(() => {
          this.#polling = undefined
          this.#schedule()
        })
    }, this.#options.pollIntervalMs)
  }

  async #catchUp(): Promise<void> {
    const state = this.#state!
    const { provider } = this.#options
    if (state.blockHash !== undefined && (await provider.getBlock(state.block))?.hash !== state.blockHash) {
      this.#options.logger.warn({ block: state.block }, 'the chain reorganised; replaying the registry')
      // Replayed aside and swapped in at once: no one sees a half-replayed registry meanwhile.
      const rebuilt = this.#emptyState(state.chainId)
      await this.#readInto(rebuilt)
      state.block = rebuilt.block
      state.blockHash = rebuilt.blockHash
      state.curators = rebuilt.curators
      state.records = rebuilt.records
      // Consumers hear of the rebuilt state even if it came out the same.
      this.emit('update', state)
      return
    }
    if (await this.#readInto(state)) this.emit('update', state)
  }

  /** Applies the events after `target.block` up to the head; true when any changed it. */
  async #readInto(target: RegistryState): Promise<boolean> {
    const { provider, address } = this.#options
    const head = await provider.getBlock('latest')
    if (head === null || head.number <= target.block) return false
    const range = this.#options.logRange ?? 5_000
    let changed = false
    for (let from = target.block + 1; from <= head.number; from += range) {
      const to = Math.min(head.number, from + range - 1)
      const logs = await provider.getLogs({ address, fromBlock: from, toBlock: to })
      for (const log of logs) changed = this.#apply(target, log) || changed
      target.block = to
    }
    // Logs read while the chain reorganised may mix both branches: the head's hash tells, and then it all
    // goes again from the start on the next poll.
    target.blockHash =
      (await provider.getBlock(head.number))?.hash === head.hash ? (head.hash ?? undefined) : ''
    return changed
  }

  #emptyState(chainId: number): RegistryState {
    return {
      block: this.#deployedBlock - 1,
      blockHash: undefined,
      chainId,
      curators: new Set(),
      records: new Map(),
    }
  }

  /**
   * Applies one event. One that cannot be decoded (an endpoint that lies or breaks) is not skipped — it might
   * be a revocation — but stops this read: the state keeps what it had, and the next poll reads again.
   */
  #apply(state: RegistryState, log: Log): boolean {
    try {
      return this.#applyDecoded(state, log)
    } catch (err) {
      throw new NexusError(
        'CHAIN_UNAVAILABLE',
        `a registry event in block ${log.blockNumber} cannot be decoded (${errorMessage(err).slice(0, 200)})`,
      )
    }
  }

  #applyDecoded(state: RegistryState, log: Log): boolean {
    const event = this.#iface.parseLog(log)
    if (event === null) return false
    const args = event.args
    switch (event.name) {
      case 'CuratorAdded':
        state.curators.add(getAddress(args.curator as string))
        return true
      case 'CuratorRemoved':
        state.curators.delete(getAddress(args.curator as string))
        return true
      case 'Published':
        state.records.set(`${args.id}@${args.version}`, {
          id: args.id as string,
          version: args.version as string,
          manifestHash: args.manifestHash as string,
          status: 'active',
          publishedBlock: log.blockNumber,
          revokedBlock: 0,
          reason: '',
        })
        return true
      case 'Revoked': {
        const record = state.records.get(`${args.id}@${args.version}`)
        if (record === undefined) return false
        record.status = 'revoked'
        record.revokedBlock = log.blockNumber
        record.reason = args.reason as string
        return true
      }
      default:
        return false
    }
  }
}
