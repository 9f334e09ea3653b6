#!/usr/bin/env node
// Compiles trust/contracts/NexusRegistry.sol with the pinned solc and writes the committed artifact.
import { writeFileSync } from 'node:fs'
import { compileRegistry, REGISTRY_ARTIFACT_PATH } from '../trust/registry-artifact.ts'

const artifact = compileRegistry()
writeFileSync(REGISTRY_ARTIFACT_PATH, `${JSON.stringify(artifact, null, 2)}\n`)
process.stdout.write(
  `wrote ${REGISTRY_ARTIFACT_PATH} (${artifact.compiler}, ${(artifact.bytecode.length - 2) / 2} bytes)\n`,
)
