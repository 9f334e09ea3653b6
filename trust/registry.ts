import {
  Contract,
  ContractFactory,
  type ContractRunner,
  getAddress,
  Interface,
  isError,
  type Signer,
  type TransactionReceipt,
} from 'ethers'
import { NexusError } from '../protocol/errors.ts'
import { registryArtifact } from './registry-artifact.ts'

export type RecordStatus = 'none' | 'active' | 'revoked'
const STATUS: RecordStatus[] = ['none', 'active', 'revoked']

export interface RegistryRecord {
  id: string
  version: string
  manifestHash: string
  status: RecordStatus
  publishedBlock: number
  revokedBlock: number
  reason: string
}

interface RawRecord {
  id: string
  version: string
  manifestHash: string
  status: bigint
  publishedBlock: bigint
  revokedBlock: bigint
  reason: string
}

function toRecord(raw: RawRecord): RegistryRecord {
  return {
    id: raw.id,
    version: raw.version,
    manifestHash: raw.manifestHash,
    status: STATUS[Number(raw.status)] ?? 'none',
    publishedBlock: Number(raw.publishedBlock),
    revokedBlock: Number(raw.revokedBlock),
    reason: raw.reason,
  }
}

/** Turns a reverted call into an error that names the contract's reason (NotGovernance(0x…), …). */
function explain(err: unknown, action: string): never {
  if (isError(err, 'CALL_EXCEPTION')) {
    // ethers does not always decode a custom error from a failed gas estimate; the revert data is there.
    const revert =
      err.revert ?? (err.data ? new Interface(registryArtifact().abi).parseError(err.data) : null)
    const reason = revert ? `${revert.name}(${revert.args.join(', ')})` : (err.reason ?? err.shortMessage)
    throw new NexusError('CHAIN_UNAVAILABLE', `registry refused to ${action}: ${reason}`, { cause: err })
  }
  throw new NexusError('CHAIN_UNAVAILABLE', `cannot ${action}: ${(err as Error).message}`, { cause: err })
}

/** A typed handle on a deployed NexusRegistry contract. */
export class Registry {
  readonly address: string
  readonly contract: Contract

  constructor(address: string, runner: ContractRunner) {
    this.address = getAddress(address)
    this.contract = new Contract(this.address, registryArtifact().abi, runner)
  }

  /** Deploys a registry governed by `governance` (the deployer by default). */
  static async deploy(deployer: Signer, governance?: string): Promise<{ registry: Registry; block: number }> {
    const { abi, bytecode } = registryArtifact()
    try {
      const factory = new ContractFactory(abi, bytecode, deployer)
      const contract = await factory.deploy(governance ?? (await deployer.getAddress()))
      const receipt = await contract.deploymentTransaction()!.wait()
      return { registry: new Registry(await contract.getAddress(), deployer), block: receipt!.blockNumber }
    } catch (err) {
      explain(err, 'deploy the registry')
    }
  }

  async #send(action: string, method: string, ...args: unknown[]): Promise<TransactionReceipt> {
    try {
      const tx = await this.contract.getFunction(method)(...args)
      return (await tx.wait()) as TransactionReceipt
    } catch (err) {
      explain(err, action)
    }
  }

  async #call<T>(action: string, method: string, ...args: unknown[]): Promise<T> {
    try {
      return (await this.contract.getFunction(method).staticCall(...args)) as T
    } catch (err) {
      explain(err, action)
    }
  }

  publish(id: string, version: string, manifestHash: string): Promise<TransactionReceipt> {
    return this.#send(`publish ${id}@${version}`, 'publish', id, version, manifestHash)
  }

  revoke(id: string, version: string, reason: string): Promise<TransactionReceipt> {
    return this.#send(`revoke ${id}@${version}`, 'revoke', id, version, reason)
  }

  addCurator(curator: string): Promise<TransactionReceipt> {
    return this.#send(`add curator ${curator}`, 'addCurator', curator)
  }

  removeCurator(curator: string): Promise<TransactionReceipt> {
    return this.#send(`remove curator ${curator}`, 'removeCurator', curator)
  }

  transferGovernance(proposed: string): Promise<TransactionReceipt> {
    return this.#send(`transfer governance to ${proposed}`, 'transferGovernance', proposed)
  }

  acceptGovernance(): Promise<TransactionReceipt> {
    return this.#send('accept governance', 'acceptGovernance')
  }

  governance(): Promise<string> {
    return this.#call('read governance', 'governance')
  }

  async deployedBlock(): Promise<number> {
    return Number(await this.#call<bigint>('read the deployment block', 'deployedBlock'))
  }

  async curators(): Promise<string[]> {
    return [...(await this.#call<string[]>('list curators', 'curators'))]
  }

  async get(id: string, version: string): Promise<RegistryRecord> {
    return toRecord(await this.#call<RawRecord>(`read ${id}@${version}`, 'get', id, version))
  }

  /** Every record, in publication order. */
  async list(pageSize = 100): Promise<RegistryRecord[]> {
    const count = Number(await this.#call<bigint>('count records', 'recordCount'))
    const records: RegistryRecord[] = []
    for (let start = 0; start < count; start += pageSize) {
      const page = await this.#call<RawRecord[]>('list records', 'list', start, pageSize)
      records.push(...page.map(toRecord))
    }
    return records
  }
}
