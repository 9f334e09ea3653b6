#!/usr/bin/env node
// Re-creates trust/default-whitelist.json: the manifests of the four reference servers as installed by this
// release, signed by the release curator (key from --keystore or NEXUS_PRIVATE_KEY). Run it after upgrading them.
import { parseArgs } from 'node:util'
import { DEMO_MANIFESTS } from '../node/demo-servers.ts'
import { createManifest } from '../trust/manifest-create.ts'
import { signManifest } from '../trust/manifest-signature.ts'
import { loadSigner } from '../trust/signer-key.ts'
import { DEFAULT_CHAIN_ID, DEFAULT_CURATORS, DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { writeWhitelistFile } from '../trust/whitelist-file.ts'

const { values } = parseArgs({ options: { keystore: { type: 'string' } } })
const signer = await loadSigner({ keystore: values.keystore })
if (!DEFAULT_CURATORS.includes(signer.address))
  process.stderr.write(
    `warning: ${signer.address} is not in DEFAULT_CURATORS; update trust/trust-config.ts\n`,
  )
const signed = []
for (const { spec, ...options } of DEMO_MANIFESTS) {
  const manifest = await createManifest(spec, { ...options, notes: ['reference server of the MCP project'] })
  signed.push(await signManifest({ manifest, signatures: [] }, signer, DEFAULT_CHAIN_ID))
}
writeWhitelistFile(DEFAULT_WHITELIST_PATH, signed)
process.stdout.write(
  `wrote ${DEFAULT_WHITELIST_PATH}: ${signed.map((s) => `${s.manifest.id}@${s.manifest.version}`).join(', ')}\n`,
)
