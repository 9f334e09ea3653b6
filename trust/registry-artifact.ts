import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import type { InterfaceAbi } from 'ethers'

/** The compiler every build of the registry uses; the artifact records it and a test checks it. */
export const SOLC_VERSION = '0.8.30'
const CONTRACTS = join(import.meta.dirname, 'contracts')
export const REGISTRY_SOURCE_PATH = join(CONTRACTS, 'NexusRegistry.sol')
export const REGISTRY_ARTIFACT_PATH = join(CONTRACTS, 'NexusRegistry.json')

export interface RegistryArtifact {
  contractName: 'NexusRegistry'
  compiler: string
  /** SHA-256 of the source the artifact was compiled from. */
  sourceSha256: string
  abi: InterfaceAbi
  bytecode: string
  deployedBytecode: string
}

export function registrySource(): string {
  return readFileSync(REGISTRY_SOURCE_PATH, 'utf8')
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

let cached: RegistryArtifact | undefined

/** The committed ABI and bytecode; `npm run compile:registry` writes it from the source. */
export function registryArtifact(): RegistryArtifact {
  cached ??= JSON.parse(readFileSync(REGISTRY_ARTIFACT_PATH, 'utf8')) as RegistryArtifact
  return cached
}

interface SolcOutput {
  errors?: { severity: string; formattedMessage: string }[]
  contracts: Record<
    string,
    Record<
      string,
      { abi: InterfaceAbi; evm: { bytecode: { object: string }; deployedBytecode: { object: string } } }
    >
  >
}

/** Compiles the registry with the pinned solc-js (a dev dependency: only the build script and tests need it). */
export function compileRegistry(): RegistryArtifact {
  const require = createRequire(import.meta.url)
  const solc = require('solc') as { version(): string; compile(input: string): string }
  if (!solc.version().startsWith(`${SOLC_VERSION}+`))
    throw new Error(`solc ${SOLC_VERSION} is required, ${solc.version()} is installed`)
  const source = registrySource()
  const input = {
    language: 'Solidity',
    sources: { 'NexusRegistry.sol': { content: source } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: 'cancun',
      // No metadata hash: the bytecode then depends on the source and settings only, so the test can compare.
      metadata: { bytecodeHash: 'none', appendCBOR: false },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
    },
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input))) as SolcOutput
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
  if (errors.length > 0) throw new Error(errors.map((e) => e.formattedMessage).join('\n'))
  const contract = output.contracts['NexusRegistry.sol']!.NexusRegistry!
  return {
    contractName: 'NexusRegistry',
    compiler: solc.version(),
    sourceSha256: sha256Hex(source),
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
  }
}
