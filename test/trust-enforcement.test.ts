import { execFileSync } from 'node:child_process'
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Signer, Wallet } from 'ethers'
import t from 'tap'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { connectToHost } from '../gateway/node-link.ts'
import { WhitelistedServerSchema } from '../node/config.ts'
import { launchFromManifest } from '../node/hosted-servers.ts'
import { NexusNode } from '../node/nexus-node.ts'
import type { ProcessRuntime } from '../node/runtime/process-runtime.ts'
import { parseManifest } from '../protocol/manifest.ts'
import { startNetwork } from '../testing/network.ts'
import { createManifest } from '../trust/manifest-create.ts'
import { type SignedManifest, signManifest } from '../trust/manifest-signature.ts'
import { tarballIntegrity } from '../trust/package-files.ts'
import { DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { readWhitelistFile, writeWhitelistFile } from '../trust/whitelist-file.ts'
import { connectStreamable } from './support/clients.ts'
import { FIXTURE_PATH, fixtureServerConfig } from './support/fixture-server.ts'
import { waitFor } from './support/wait.ts'

const CHAIN = 1
const curator = Wallet.createRandom()
const stranger = Wallet.createRandom()
const scratch = mkdtempSync(join(tmpdir(), 'nexus-trust-'))
const reference = readWhitelistFile(DEFAULT_WHITELIST_PATH).manifests
const manifestOf = (id: string) => reference.find((m) => m.manifest.id === id)!.manifest
const sign = (signed: SignedManifest, wallet: Signer) => signManifest(signed, wallet, CHAIN)

t.test('a node runs only what trusted curators signed, and says why it refuses the rest', async (t) => {
  const path = join(scratch, 'mixed.json')
  writeWhitelistFile(path, [
    await sign({ manifest: manifestOf('everything'), signatures: [] }, curator),
    await sign({ manifest: manifestOf('memory'), signatures: [] }, stranger),
    { manifest: manifestOf('sequential-thinking'), signatures: [] },
  ])
  const node = new NexusNode({
    transport: 'memory',
    servers: [
      { id: 'everything', warmPool: 0 },
      { id: 'memory', warmPool: 0 },
      { id: 'sequential-thinking', warmPool: 0 },
      { id: 'filesystem', warmPool: 0 },
    ],
    trust: { whitelist: path, curators: [curator.address], chainId: CHAIN },
  })
  const refused: string[] = []
  node.on('server-refused', (r) => refused.push(r.id))
  await node.start()
  t.teardown(() => node.stop())
  t.ok(node.runtime.has('everything'), 'the curator-signed server runs')
  t.match(Object.fromEntries(node.refusedServers), {
    memory: { code: 'UNTRUSTED_MANIFEST', reason: /is not a trusted curator/ },
    'sequential-thinking': { code: 'UNTRUSTED_MANIFEST', reason: /is not signed/ },
    filesystem: { code: 'UNTRUSTED_MANIFEST', reason: /not in the whitelist/ },
  })
  t.same(refused.sort(), ['filesystem', 'memory', 'sequential-thinking'], 'each refusal is an event')
  t.same(
    node.runtime.status().map((s) => s.id),
    ['everything'],
    'nothing else was started',
  )
})

t.test(
  'operator settings cannot widen a manifest: foreign variables and arguments are refused',
  async (t) => {
    const node = new NexusNode({
      transport: 'memory',
      servers: [
        { id: 'everything', env: { NODE_OPTIONS: '--require /tmp/evil.js' }, warmPool: 0 },
        { id: 'sequential-thinking', args: ['--inspect'], warmPool: 0 },
      ],
    })
    await node.start()
    t.teardown(() => node.stop())
    t.match(node.refusedServers.get('everything')?.reason, /does not allow the variable\(s\) NODE_OPTIONS/)
    t.match(node.refusedServers.get('sequential-thinking')?.reason, /does not let the operator add arguments/)
  },
)

t.test("a manifest that declares its binds bounds the operator's", async (t) => {
  const settings = (binds: { path: string; mode: 'ro' | 'rw' }[]) =>
    WhitelistedServerSchema.parse({ id: 'filesystem', args: ['/srv'], binds })
  const writable = parseManifest({
    ...manifestOf('filesystem'),
    binds: [{ purpose: 'the shared folder', mode: 'rw' }],
  })
  t.same(launchFromManifest(writable, settings([{ path: '/srv', mode: 'rw' }])).binds, [
    { path: '/srv', mode: 'rw' },
  ])
  t.throws(
    () =>
      launchFromManifest(
        writable,
        settings([
          { path: '/a', mode: 'ro' },
          { path: '/b', mode: 'ro' },
        ]),
      ),
    /allows 1 bind\(s\), 1 of them writable \(the shared folder: rw\); the configuration asks for 2, 0 writable/,
  )
  const readOnly = parseManifest({
    ...manifestOf('filesystem'),
    binds: [{ purpose: 'documents', mode: 'ro' }],
  })
  t.throws(() => launchFromManifest(readOnly, settings([{ path: '/srv', mode: 'rw' }])), /0 of them writable/)
  t.equal(
    launchFromManifest(
      manifestOf('filesystem'),
      settings([
        { path: '/x', mode: 'rw' },
        { path: '/y', mode: 'ro' },
      ]),
    ).binds.length,
    2,
    'a manifest signed without binds leaves them to the operator',
  )
})

/** A real npm package made here: a tarball built with tar, installed into a project's node_modules. */
function installFixturePackage(): { project: string; dir: string; tarball: string } {
  const project = mkdtempSync(join(scratch, 'project-'))
  const build = join(project, 'build', 'package')
  mkdirSync(build, { recursive: true })
  writeFileSync(
    join(build, 'package.json'),
    JSON.stringify({ name: 'nexus-fixture-server', version: '1.0.0', type: 'module', bin: 'server.js' }),
  )
  writeFileSync(join(build, 'server.js'), `#!/usr/bin/env node\nimport ${JSON.stringify(FIXTURE_PATH)}\n`)
  const tarball = join(project, 'nexus-fixture-server-1.0.0.tgz')
  execFileSync('tar', ['-czf', tarball, '-C', join(project, 'build'), 'package'])
  const dir = join(project, 'node_modules', 'nexus-fixture-server')
  mkdirSync(dir, { recursive: true })
  execFileSync('tar', ['-xzf', tarball, '-C', dir, '--strip-components=1'])
  // What npm records for what it installed.
  writeFileSync(
    join(project, 'node_modules', '.package-lock.json'),
    JSON.stringify({
      packages: {
        'node_modules/nexus-fixture-server': {
          version: '1.0.0',
          integrity: tarballIntegrity(readFileSync(tarball)),
        },
      },
    }),
  )
  return { project, dir, tarball }
}

t.test('a package whose files changed after install is refused before it starts', async (t) => {
  const { project, dir, tarball } = installFixturePackage()
  const manifest = await createManifest(tarball, { id: 'fixture' })
  t.match(manifest, { id: 'fixture', version: '1.0.0', package: 'npm:nexus-fixture-server@1.0.0' })
  t.same(
    await createManifest('nexus-fixture-server', { id: 'fixture', searchFrom: [project] }),
    manifest,
    'the installed copy yields the same manifest as its tarball',
  )
  const path = join(scratch, 'fixture.json')
  writeWhitelistFile(path, [await sign({ manifest, signatures: [] }, curator)])
  const trust = { whitelist: path, curators: [curator.address], chainId: CHAIN }
  const cwd = process.cwd()
  process.chdir(project)
  t.teardown(() => process.chdir(cwd))

  const intact = new NexusNode({ transport: 'memory', servers: [{ id: 'fixture', warmPool: 1 }], trust })
  await intact.start()
  t.ok(intact.runtime.has('fixture'), 'the intact package runs')
  await intact.stop()

  appendFileSync(join(dir, 'server.js'), 'process.env.EXFILTRATE = "1"\n')
  const tampered = new NexusNode({ transport: 'memory', servers: [{ id: 'fixture', warmPool: 1 }], trust })
  const started: string[] = []
  ;(tampered.runtime as ProcessRuntime).on('process-started', ({ serverId }) => started.push(serverId))
  await tampered.start()
  t.teardown(() => tampered.stop())
  t.match(tampered.refusedServers.get('fixture'), {
    code: 'PACKAGE_TAMPERED',
    reason: /files of .* changed since the package was published/,
  })
  t.same(started, [], 'no process of it was ever started')

  const lockPath = join(project, 'node_modules', '.package-lock.json')
  const lock = JSON.parse(readFileSync(lockPath, 'utf8'))
  lock.packages['node_modules/nexus-fixture-server'].integrity =
    `sha512-${Buffer.alloc(64).toString('base64')}`
  writeFileSync(lockPath, JSON.stringify(lock))
  const otherTarball = new NexusNode({ transport: 'memory', servers: [{ id: 'fixture' }], trust })
  await otherTarball.start()
  t.teardown(() => otherTarball.stop())
  t.match(otherTarball.refusedServers.get('fixture')?.reason, /installed from a tarball with integrity/)
})

t.test('a gateway does not route to a node whose announced manifest is not whitelisted', async (t) => {
  const network = await startNetwork({ nodes: 1, servers: [fixtureServerConfig()], gateways: 0 })
  t.teardown(network.stop)
  const gateway = new NexusGateway({
    transport: 'memory',
    bootstrap: network.nodes.map((n) => n.multiaddrs[0]!),
    http: { port: 0 },
    auth: { anonymous: true },
  })
  await gateway.start()
  t.teardown(() => gateway.stop())
  const nodeId = network.nodes[0]!.peerId
  await waitFor(() => gateway.view.isLive(nodeId), gateway.view, 'change', 15_000, 'the node’s announcement')
  t.same(gateway.view.hostsOf('conformance'), [], 'the announced server is not routable')
  t.notOk(gateway.view.serverIds().includes('conformance'))
  await t.rejects(connectStreamable(gateway.serverUrl('conformance')), 'an agent cannot reach it')
})

t.test('opening a session, the gateway checks the manifest the node declares', async (t) => {
  // Hosts known from the DHT alone are admitted before their manifest is known; the accept frame settles it.
  const network = await startNetwork({ nodes: 1, servers: [fixtureServerConfig()] })
  t.teardown(network.stop)
  const { gateway } = network
  const announced = gateway.view.hostsOf('conformance')[0]!.server!
  const connect = (admits: (s: { manifestHash: string }) => boolean) =>
    connectToHost(gateway.peer, gateway.view, () => ({ sessions: 0, inFlight: 0 }), {
      serverId: 'conformance',
      sessionId: `session-${Date.now()}`,
      auth: { principal: 't' },
      handshakeTimeoutMs: 5_000,
      guard: gateway.guard,
      admits,
    })
  await t.rejects(
    connect(() => false),
    { code: 'NO_HOST', message: /runs a manifest of it that is not whitelisted/ },
  )
  const link = await connect((s) => s.manifestHash === announced.manifestHash)
  t.ok(link, 'the declared manifest is the announced one, and a whitelist that holds it admits it')
  await link.close()
})

t.test('manifest files from the CLI: create, sign, verify; tampering is caught', async (t) => {
  const { tarball } = installFixturePackage()
  const nexus = (args: string[], env: Record<string, string> = {}) =>
    execFileSync(process.execPath, [join(import.meta.dirname, '..', 'cli', 'nexus.ts'), ...args], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  const manifestPath = join(scratch, 'cli-manifest.json')
  nexus(['manifest', 'create', tarball, '--id', 'fixture', '--env', 'API_TOKEN', '-o', manifestPath])
  const created = parseManifest(JSON.parse(readFileSync(manifestPath, 'utf8')))
  t.match(created, { id: 'fixture', env: ['API_TOKEN'], integrity: tarballIntegrity(readFileSync(tarball)) })
  const signedPath = join(scratch, 'cli-signed.json')
  const key = curator.privateKey
  const out = nexus(['manifest', 'sign', manifestPath, '--chain-id', '1', '-o', signedPath], {
    NEXUS_PRIVATE_KEY: key,
  })
  t.notOk(out.includes(key.slice(2)), 'the key is not printed')
  const verified = nexus(['manifest', 'verify', signedPath, '--curator', curator.address])
  t.match(verified, /^trusted {2}fixture@1\.0\.0 {2}0x[0-9a-f]{64}/)
  const signed = JSON.parse(readFileSync(signedPath, 'utf8'))
  signed.manifest.args = ['--debug']
  writeFileSync(signedPath, JSON.stringify(signed))
  const failure = (args: string[]) => {
    try {
      nexus(args)
    } catch (err) {
      return err as { status: number; stdout: string; stderr: string }
    }
    throw new Error(`nexus ${args.join(' ')} succeeded`)
  }
  const tamperedRun = failure(['manifest', 'verify', signedPath, '--curator', curator.address])
  t.equal(tamperedRun.status, 1, 'a tampered manifest fails verification with exit code 1')
  t.match(tamperedRun.stdout, /refused {2}fixture@1\.0\.0 {2}UNTRUSTED_MANIFEST/)
  const keyless = failure(['manifest', 'sign', manifestPath])
  t.equal(keyless.status, 1)
  t.match(keyless.stderr, /no signing key/)
})
