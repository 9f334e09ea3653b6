import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getAddress, Wallet } from 'ethers'
import t from 'tap'
import { launchFromManifest } from '../node/hosted-servers.ts'
import { type Manifest, manifestHash, parseManifest } from '../protocol/manifest.ts'
import { verifyInstalledPackage } from '../trust/installed-package.ts'
import {
  MANIFEST_TYPES,
  type SignedManifest,
  signManifest,
  verifySignedManifest,
} from '../trust/manifest-signature.ts'
import { directoryDigests, filesHash, tarballDigests } from '../trust/package-files.ts'
import type { RegistryState } from '../trust/registry-follower.ts'
import { DEFAULT_CHAIN_ID, DEFAULT_CURATORS, DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { evaluateWhitelist } from '../trust/whitelist.ts'
import { readWhitelistFile } from '../trust/whitelist-file.ts'

const SRI = `sha512-${Buffer.alloc(64, 7).toString('base64')}`
const base: Manifest = parseManifest({
  id: 'memory',
  version: '1.2.3',
  package: 'npm:@modelcontextprotocol/server-memory@1.2.3',
  integrity: SRI,
  files: SRI,
  transport: 'stdio',
  env: ['MEMORY_FILE_PATH'],
})
const curator = Wallet.createRandom()
const stranger = Wallet.createRandom()
const CHAIN = 31337
const anchors = { curators: [curator.address], chainId: CHAIN }

t.test('manifest schema: exact versions, pinned packages, clear errors naming the field', async (t) => {
  t.throws(() => parseManifest({ ...base, package: 'npm:left-pad@^1.0.0' }), /not exact/)
  t.throws(() => parseManifest({ ...base, package: 'npm:left-pad@latest' }), /not exact/)
  t.throws(() => parseManifest({ ...base, package: 'docker:foo' }), /neither npm:/)
  t.throws(() => parseManifest({ ...base, integrity: undefined }), /needs its integrity/)
  t.throws(() => parseManifest({ ...base, integrity: 'sha1-abc' }), /→ at integrity/)
  t.throws(() => parseManifest({ ...base, env: ['A', 'A'] }), /listed twice/)
  t.throws(() => parseManifest({ ...base, extra: 1 }), /Unrecognized key: "extra"/)
  t.throws(() => parseManifest({ ...base, id: 'Upper' }), /→ at id/)
  t.throws(() => parseManifest({ ...base, eras: ['modern'] }), /a stdio server must speak the legacy era/)
  t.throws(() => parseManifest({ ...base, eras: ['legacy', 'legacy'] }), /an era is listed twice/)
  t.throws(() => parseManifest({ ...base, eras: ['future'] }), /→ at eras/)
  t.same(
    parseManifest({ ...base, transport: 'streamable-http', eras: ['modern'] }).eras,
    ['modern'],
    'an HTTP server may speak the modern era alone',
  )
  t.equal(manifestHash(base), manifestHash(parseManifest(base)), 'no eras: the hash is unchanged')
  t.same(parseManifest({ ...base, egress: ['api.github.com', '*.example.com'] }).egress, [
    'api.github.com',
    '*.example.com',
  ])
  t.throws(
    () => parseManifest({ ...base, egress: ['http://x.com/'] }),
    /a host name, \*\.domain or an IP address/,
  )
  t.throws(() => parseManifest({ ...base, egress: [] }), /→ at egress/)
  t.same(parseManifest({ ...base, shared: { sessionsPerProcess: 50 } }).shared, { sessionsPerProcess: 50 })
  t.equal(manifestHash(base), manifestHash(parseManifest(base)), 'no shared: the hash is unchanged')
  t.throws(
    () => parseManifest({ ...base, transport: 'streamable-http', shared: { sessionsPerProcess: 50 } }),
    /only a stdio server is shared/,
  )
  t.throws(() => parseManifest({ ...base, shared: { sessionsPerProcess: 1 } }), /→ at shared/)
  const launched = launchFromManifest(parseManifest({ ...base, shared: { sessionsPerProcess: 50 } }), {
    id: 'memory',
    args: [],
    env: {},
    passEnv: [],
    binds: [],
    warmPool: 1,
  })
  t.same(
    'shared' in launched && launched.shared,
    { sessionsPerProcess: 50 },
    'a node shares what the manifest says',
  )
  const oci = parseManifest({
    id: 'oci-server',
    version: '1.0.0',
    package: `oci:ghcr.io/acme/server@sha256:${'a'.repeat(64)}`,
    transport: 'streamable-http',
    command: ['/server'],
  })
  t.equal(oci.package.startsWith('oci:'), true, 'an OCI image pinned by digest is accepted')
  t.throws(() => parseManifest({ ...oci, package: 'oci:ghcr.io/acme/server:latest' }), /neither npm:/)
})

t.test('manifest hash: canonical, so key order does not matter and every field counts', async (t) => {
  const reordered = parseManifest(
    JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(base).reverse()))),
  )
  t.equal(manifestHash(reordered), manifestHash(base))
  t.match(manifestHash(base), /^0x[0-9a-f]{64}$/)
  t.not(manifestHash({ ...base, args: ['--evil'] }), manifestHash(base))
})

t.test('EIP-712 signatures: a round trip, and every tampering refused with a clear reason', async (t) => {
  const signed = await signManifest({ manifest: base, signatures: [] }, curator, CHAIN)
  t.equal(verifySignedManifest(signed, anchors), manifestHash(base), 'a curator signature verifies')
  t.equal(getAddress(signed.signatures[0]!.signer), curator.address)

  const tampered: SignedManifest = { ...signed, manifest: { ...base, args: ['--allow-everything'] } }
  t.throws(() => verifySignedManifest(tampered, anchors), /made by 0x[0-9a-fA-F]{40} or over other content/)

  const foreign = await signManifest({ manifest: base, signatures: [] }, stranger, CHAIN)
  t.throws(() => verifySignedManifest(foreign, anchors), /is not a trusted curator/)

  const claimed: SignedManifest = {
    ...foreign,
    signatures: [{ ...foreign.signatures[0]!, signer: curator.address }],
  }
  t.throws(() => verifySignedManifest(claimed, anchors), /claimed by .* was made by/)

  const otherChain = await signManifest({ manifest: base, signatures: [] }, curator, 1)
  t.throws(
    () => verifySignedManifest(otherChain, anchors),
    /for chain 1, this whitelist belongs to chain 31337/,
  )

  // Same chain id in the claim, but signed under another domain (another application's name).
  const otherDomain = await curator.signTypedData(
    { name: 'Some Other App', version: '1', chainId: CHAIN },
    MANIFEST_TYPES,
    { id: base.id, version: base.version, package: base.package, manifestHash: manifestHash(base) },
  )
  const wrongDomain: SignedManifest = {
    manifest: base,
    signatures: [{ signer: curator.address, signature: otherDomain, chainId: CHAIN }],
  }
  t.throws(() => verifySignedManifest(wrongDomain, anchors), /or over other content/)

  t.throws(() => verifySignedManifest({ manifest: base, signatures: [] }, anchors), /is not signed/)
  const both = await signManifest(signed, stranger, CHAIN)
  t.throws(
    () => verifySignedManifest(both, { ...anchors, threshold: 2 }),
    /1 trusted curator signature\(s\), 2 required/,
    'a threshold counts distinct trusted curators only',
  )
})

t.test('whitelist with a registry: published, hash-mismatched, revoked and unpublished', async (t) => {
  const other = parseManifest({ ...base, id: 'other' })
  const bundle = [
    await signManifest({ manifest: base, signatures: [] }, curator, CHAIN),
    await signManifest({ manifest: other, signatures: [] }, curator, CHAIN),
  ]
  const registry = (records: RegistryState['records']): RegistryState => ({
    block: 10,
    blockHash: undefined,
    chainId: CHAIN,
    curators: new Set([curator.address]),
    records,
  })
  const record = (m: Manifest, extra: object = {}) => ({
    id: m.id,
    version: m.version,
    manifestHash: manifestHash(m),
    status: 'active' as const,
    publishedBlock: 1,
    revokedBlock: 0,
    reason: '',
    ...extra,
  })
  const live = evaluateWhitelist(bundle, anchors, registry(new Map([['memory@1.2.3', record(base)]])))
  t.same([...live.active.keys()], ['memory@1.2.3'])
  t.match(live.refused.get('other@1.2.3')?.reason, /not published in the registry/)

  const revoked = evaluateWhitelist(
    bundle,
    anchors,
    registry(
      new Map([['memory@1.2.3', record(base, { status: 'revoked', revokedBlock: 7, reason: 'CVE' })]]),
    ),
  )
  t.match(revoked.refused.get('memory@1.2.3'), { code: 'SERVER_REVOKED', reason: /revoked in block 7: CVE/ })

  const mismatch = evaluateWhitelist(
    bundle,
    anchors,
    registry(new Map([['memory@1.2.3', record(base, { manifestHash: `0x${'1'.repeat(64)}` })]])),
  )
  t.match(mismatch.refused.get('memory@1.2.3')?.reason, /registry anchors manifest 0x1{64}/)

  const noCurator = evaluateWhitelist(bundle, anchors, {
    ...registry(new Map([['memory@1.2.3', record(base)]])),
    curators: new Set(),
  })
  t.match(
    noCurator.refused.get('memory@1.2.3')?.reason,
    /not a trusted curator/,
    'the registry’s curators decide',
  )
})

t.test('files hash: a tarball and its unpacked copy agree; a changed file does not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-files-'))
  const pkg = join(dir, 'package')
  const deep = join(
    pkg,
    'a-directory-with-a-rather-long-name',
    'and-another-one-below-it',
    'and-a-third-level',
  )
  mkdirSync(deep, { recursive: true })
  writeFileSync(join(pkg, 'package.json'), '{"name":"x","version":"1.0.0"}')
  writeFileSync(join(deep, 'a-file-whose-path-is-longer-than-one-hundred-characters-in-total.js'), 'x()')
  execFileSync('tar', ['-czf', join(dir, 'x.tgz'), '-C', dir, 'package'])
  const fromTarball = filesHash(tarballDigests(readFileSync(join(dir, 'x.tgz'))))
  t.equal(filesHash(await directoryDigests(pkg)), fromTarball)
  t.equal(tarballDigests(readFileSync(join(dir, 'x.tgz'))).size, 2, 'long paths are read whole')
  writeFileSync(join(pkg, 'package.json'), '{"name":"x","version":"1.0.1"}')
  t.not(filesHash(await directoryDigests(pkg)), fromTarball)
})

t.test(
  'the embedded whitelist is signed by the release curator and matches the installed packages',
  async (t) => {
    const { manifests } = readWhitelistFile(DEFAULT_WHITELIST_PATH)
    t.same(
      manifests.map((m) => m.manifest.id),
      ['everything', 'memory', 'filesystem', 'sequential-thinking'],
    )
    for (const signed of manifests) {
      t.equal(
        verifySignedManifest(signed, { curators: DEFAULT_CURATORS, chainId: DEFAULT_CHAIN_ID }),
        manifestHash(signed.manifest),
      )
      t.ok(
        await verifyInstalledPackage(signed.manifest),
        `${signed.manifest.id} is installed as its manifest pins`,
      )
    }
  },
)
