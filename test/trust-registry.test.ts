import { once } from 'node:events'
import { Wallet } from 'ethers'
import { pino } from 'pino'
import t from 'tap'
import { demoServers } from '../node/demo-servers.ts'
import type { ServerRefusal } from '../node/hosted-servers.ts'
import { NexusNode } from '../node/nexus-node.ts'
import { manifestHash } from '../protocol/manifest.ts'
import { startNetwork } from '../testing/network.ts'
import { startLocalRegistry } from '../trust/local-registry.ts'
import { Registry } from '../trust/registry.ts'
import { compileRegistry, registryArtifact } from '../trust/registry-artifact.ts'
import { RegistryFollower } from '../trust/registry-follower.ts'
import { DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { readWhitelistFile } from '../trust/whitelist-file.ts'
import { connectStreamable } from './support/clients.ts'
import { waitFor, withTimeout } from './support/wait.ts'

t.test('the committed registry artifact is what the pinned solc makes of the source', async (t) => {
  const compiled = compileRegistry()
  const committed = registryArtifact()
  t.equal(committed.sourceSha256, compiled.sourceSha256, 'compiled from the current source')
  t.equal(committed.compiler, compiled.compiler)
  t.same(committed.abi, compiled.abi)
  t.equal(committed.bytecode, compiled.bytecode, 'same creation bytecode')
  t.equal(committed.deployedBytecode, compiled.deployedBytecode, 'same runtime bytecode')
})

const reference = readWhitelistFile(DEFAULT_WHITELIST_PATH).manifests
const pick = (...ids: string[]) => reference.filter((m) => ids.includes(m.manifest.id))

t.test('registry on anvil: only governance publishes and revokes; versions are immutable', async (t) => {
  const local = await startLocalRegistry(pick('everything'))
  t.teardown(local.stop)
  const { registry, chain } = local
  const outsider = chain.wallet(5)
  const asOutsider = new Registry(registry.address, outsider)
  const hash = manifestHash(reference[0]!.manifest)
  const notGovernance = new RegExp(`NotGovernance\\(${outsider.address}\\)`)
  await t.rejects(asOutsider.publish('evil', '1.0.0', hash), notGovernance, 'an outsider cannot publish')
  await t.rejects(asOutsider.revoke('everything', reference[0]!.manifest.version, 'x'), notGovernance)
  await t.rejects(asOutsider.addCurator(outsider.address), notGovernance, 'nor pick curators')
  await t.rejects(
    registry.publish('everything', reference[0]!.manifest.version, `0x${'1'.repeat(64)}`),
    /AlreadyPublished/,
    'a published version cannot be re-pointed to another manifest',
  )
  await t.rejects(registry.revoke('never', '1.0.0', 'x'), /NotActive/)
  t.match(await registry.get('everything', reference[0]!.manifest.version), {
    status: 'active',
    manifestHash: hash,
  })

  // Governance moves in two steps: a wrong address cannot lock the registry.
  const next = chain.wallet(6)
  await registry.transferGovernance(next.address)
  await t.rejects(asOutsider.acceptGovernance(), /NotPendingGovernance/)
  await new Registry(registry.address, next).acceptGovernance()
  t.equal(await registry.governance(), next.address)
  await t.rejects(registry.publish('x', '1.0.0', hash), /NotGovernance/, 'the old governance lost its rights')
  t.same(await registry.curators(), [local.curator.address])
})

t.test(
  'revocation on chain: nodes stop the server, gateways stop routing, a restarted node replays it',
  async (t) => {
    const local = await startLocalRegistry(pick('everything', 'memory'), { pollIntervalMs: 100 })
    t.teardown(local.stop)
    const servers = demoServers({ warmPool: 1 }).filter((s) => s.id === 'everything' || s.id === 'memory')
    const network = await startNetwork({ nodes: 2, servers, trust: local.trust, readyTimeoutMs: 30_000 })
    t.teardown(network.stop)
    for (const node of network.nodes)
      t.same(node.refusedServers.size, 0, 'every manifest is published and signed')

    const { client } = await connectStreamable(network.gateway.serverUrl('memory'))
    t.teardown(() => client.close())
    const before = await client.callTool({ name: 'read_graph', arguments: {} })
    t.notOk(before.isError, 'the memory server works before its revocation')

    const withdrawn = network.nodes.map((node) => once(node, 'server-withdrawn') as Promise<[ServerRefusal]>)
    const gatewaySaw = once(network.gateway.whitelist, 'change')
    const version = pick('memory')[0]!.manifest.version
    const started = Date.now()
    const receipt = await local.registry.revoke('memory', version, 'CVE-2026-0001: path traversal')
    const refusals = await withTimeout(Promise.all(withdrawn), 10_000, 'both nodes to withdraw the server')
    t.comment(
      `nodes withdrew the server ${Date.now() - started} ms after the revoke call (block ${receipt.blockNumber})`,
    )
    for (const [refusal] of refusals)
      t.match(refusal, { id: 'memory', code: 'SERVER_REVOKED', reason: /CVE-2026-0001/ })
    for (const node of network.nodes) t.notOk(node.runtime.has('memory'), 'the node no longer runs it')
    await withTimeout(gatewaySaw, 10_000, 'the gateway to see the revocation')
    t.same(network.gateway.view.hostsOf('memory'), [], 'the gateway routes to no host of it')
    t.notOk(network.gateway.view.serverIds().includes('memory'))

    await t.rejects(
      client.callTool({ name: 'read_graph', arguments: {} }),
      'the open session does not go on with a revoked server',
    )
    await t.rejects(connectStreamable(network.gateway.serverUrl('memory')), 'nor can a new one start')
    const { client: other } = await connectStreamable(network.gateway.serverUrl('everything'))
    t.teardown(() => other.close())
    t.match(await other.callTool({ name: 'echo', arguments: { message: 'still here' } }), {
      content: [{ text: /still here/ }],
    })

    // A node that was down during the revocation replays the registry's events when it comes back.
    const restarted = new NexusNode({ transport: 'memory', servers, trust: local.trust })
    await restarted.start()
    t.teardown(() => restarted.stop())
    t.match(restarted.refusedServers.get('memory'), { code: 'SERVER_REVOKED', reason: /CVE-2026-0001/ })
    t.ok(restarted.runtime.has('everything'))
    t.notOk(restarted.runtime.has('memory'))
  },
)

t.test('a chain reorganisation undoes what it took away: a publication and a revocation', async (t) => {
  const local = await startLocalRegistry(pick('everything'))
  t.teardown(local.stop)
  const { chain, registry } = local
  const follower = new RegistryFollower({
    provider: chain.provider,
    address: registry.address,
    pollIntervalMs: 50,
    logger: pino({ level: 'silent' }),
  })
  const state = await follower.start()
  t.teardown(() => follower.stop())
  const statusOf = (key: string) => state.records.get(key)?.status
  const everything = `everything@${pick('everything')[0]!.manifest.version}`
  const until = (check: () => boolean, what: string) => waitFor(check, follower, 'update', 10_000, what)

  // A publication on a branch that the chain then abandons.
  const fork = (await chain.provider.send('evm_snapshot', [])) as string
  await registry.publish('ghost', '1.0.0', `0x${'2'.repeat(64)}`)
  await until(() => statusOf('ghost@1.0.0') === 'active', 'the follower to see the publication')
  await chain.provider.send('evm_revert', [fork])
  await chain.provider.send('anvil_mine', ['0x3'])
  await until(() => !state.records.has('ghost@1.0.0'), 'the publication to be undone')
  t.pass('a publication reorganised away is forgotten')

  // A revocation on a branch that the chain then abandons.
  const before = (await chain.provider.send('evm_snapshot', [])) as string
  await registry.revoke('everything', pick('everything')[0]!.manifest.version, 'mistake')
  await until(() => statusOf(everything) === 'revoked', 'the follower to see the revocation')
  await chain.provider.send('evm_revert', [before])
  await chain.provider.send('anvil_mine', ['0x1'])
  await until(() => statusOf(everything) === 'active', 'the revocation to be undone')
  t.pass('a revocation reorganised away is undone')
  t.ok(state.curators.has(local.curator.address), 'the curator set is rebuilt too')
})

t.test('a curator removed on chain: the manifests only it signed stop being trusted', async (t) => {
  const local = await startLocalRegistry(pick('sequential-thinking'), { pollIntervalMs: 100 })
  t.teardown(local.stop)
  const node = new NexusNode({
    transport: 'memory',
    servers: [{ id: 'sequential-thinking', warmPool: 0 }],
    trust: local.trust,
  })
  await node.start()
  t.teardown(() => node.stop())
  t.ok(node.runtime.has('sequential-thinking'))
  const withdrawn = once(node, 'server-withdrawn') as Promise<[ServerRefusal]>
  await local.registry.removeCurator(local.curator.address)
  const [refusal] = await withTimeout(withdrawn, 10_000, 'the node to withdraw the server')
  t.match(refusal, { code: 'UNTRUSTED_MANIFEST', reason: /not a trusted curator/ })
  await waitFor(() => !node.runtime.has('sequential-thinking'), node, 'server-withdrawn', 1_000)
  t.notOk(node.runtime.has('sequential-thinking'))
})

t.test('a node whose chain cannot be reached does not start', async (t) => {
  const node = new NexusNode({
    transport: 'memory',
    servers: [{ id: 'everything' }],
    trust: { chainRpc: 'http://127.0.0.1:9', registry: Wallet.createRandom().address },
  })
  await t.rejects(node.start(), { code: 'CHAIN_UNAVAILABLE' })
})
