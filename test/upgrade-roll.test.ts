import { execFile } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { ProcessRuntime } from '../node/runtime/process-runtime.ts'
import { manifestHash } from '../protocol/manifest.ts'
import { startNetwork } from '../testing/network.ts'
import { startLocalRegistry } from '../trust/local-registry.ts'
import { signManifest } from '../trust/manifest-signature.ts'
import { onboard } from '../trust/onboarding/onboard.ts'
import { onboardUpgrade } from '../trust/onboarding/upgrade.ts'
import { readWhitelistFile, writeWhitelistFile } from '../trust/whitelist-file.ts'
import { miniServer } from './fixtures/onboarding/mini-server.ts'
import { connectStreamable, textOf } from './support/clients.ts'
import { startNpmRegistry } from './support/npm-registry.ts'
import { waitFor, withTimeout } from './support/wait.ts'

// An upgrade rolled over a live network: version 1.0.0 of a server is onboarded, signed, published on a
// registry on chain (anvil) and hosted; an agent calls it in a loop. Version 1.1.0 goes through the pipeline,
// the operator installs it, the curator signs it and governance publishes it. The node starts the new version
// beside the old one, the agent's session goes on without a failed call, a new session gets 1.1.0, and the
// old version stops once its last session ends.

const run = promisify(execFile)
const pkg = (version: string) => ({
  name: 'nexus-roll-server',
  version,
  bin: 'server.js',
  files: { 'server.js': miniServer({ name: 'nexus-roll-server', version }) },
})
const npm = await startNpmRegistry([pkg('1.0.0'), pkg('1.1.0')])
t.teardown(npm.stop)

t.test('a new version published on chain rolls over the network without a failed call', async (t) => {
  const v1 = await onboard({ spec: 'npm:nexus-roll-server@1.0.0', id: 'roll', registry: npm.url })
  t.equal(v1.verdict, 'approved')
  const chain = await startLocalRegistry([{ manifest: v1.manifest, signatures: [] }], { pollIntervalMs: 100 })
  t.teardown(chain.stop)
  const project = mkdtempSync(join(tmpdir(), 'nexus-roll-'))
  writeFileSync(join(project, 'package.json'), '{"private":true}')
  const install = (version: string) =>
    run(
      'npm',
      ['install', `nexus-roll-server@${version}`, '--registry', npm.url, '--no-audit', '--no-fund'],
      {
        cwd: project,
      },
    )
  await install('1.0.0')
  const cwd = process.cwd()
  process.chdir(project)
  t.teardown(() => process.chdir(cwd))
  const network = await startNetwork({ nodes: 1, servers: [{ id: 'roll', warmPool: 1 }], trust: chain.trust })
  t.teardown(network.stop)
  const runtime = network.nodes[0]!.runtime as ProcessRuntime

  const { client: agent, transport: agentTransport } = await connectStreamable(
    network.gateway.serverUrl('roll'),
  )
  t.equal(agent.getServerVersion()?.version, '1.0.0')
  let calls = 0
  const progress = new EventEmitter()
  const failures: unknown[] = []
  let stop = false
  t.teardown(() => {
    stop = true
  })
  const calling = (async () => {
    while (!stop) {
      try {
        const text = textOf(await agent.callTool({ name: 'greet', arguments: { name: 'Ada' } }))
        if (text !== 'Hello, Ada from 1.0.0') failures.push(text)
        calls++
      } catch (err) {
        failures.push(err)
      }
      progress.emit('call')
    }
  })()

  // The upgrade: the pipeline with a diff, then the operator installs it, the curator signs, governance publishes.
  const v2 = await onboardUpgrade(v1.manifest, '1.1.0', { registry: npm.url })
  t.equal(v2.verdict, 'approved')
  t.match(v2.upgrade, { tools: { added: [], removed: [], changed: [] }, dependencies: { changed: [] } })
  await install('1.1.0')
  const bundle = readWhitelistFile(chain.bundlePath).manifests
  writeWhitelistFile(chain.bundlePath, [
    ...bundle,
    await signManifest({ manifest: v2.manifest, signatures: [] }, chain.curator, chain.chain.chainId),
  ])
  await chain.registry.publish('roll', '1.1.0', manifestHash(v2.manifest))
  await waitFor(
    () => runtime.status().find((s) => s.id === 'roll')?.version === '1.1.0',
    runtime,
    'servers-applied',
    20_000,
    'the node to start 1.1.0',
  )
  // The gateway reads the registry on its own, and routes to the node once it trusts what the node announces.
  await waitFor(
    () =>
      network.gateway.whitelist
        .entries()
        .some((e) => e.manifest.id === 'roll' && e.manifest.version === '1.1.0'),
    network.gateway.whitelist,
    'change',
    20_000,
    'the gateway to whitelist 1.1.0',
  )
  await waitFor(
    () => network.gateway.view.hostsOf('roll').length > 0,
    network.gateway.view,
    'change',
    20_000,
    'the gateway to route to the node again',
  )
  const { client: newcomer } = await connectStreamable(network.gateway.serverUrl('roll'))
  t.teardown(() => newcomer.close())
  t.equal(newcomer.getServerVersion()?.version, '1.1.0', 'a new session gets the new version')
  t.equal(
    textOf(await newcomer.callTool({ name: 'greet', arguments: { name: 'Bo' } })),
    'Hello, Bo from 1.1.0',
  )

  const before = calls
  await waitFor(() => calls >= before + 20, progress, 'call', 10_000, '20 more calls on the old session')
  stop = true
  await calling
  t.same(failures, [], `${calls} calls on the old version's session during the roll, none failed`)
  t.ok(calls > before, 'and the session kept working after the new version started')
  const drained = once(runtime, 'version-drained')
  // The agent ends its session (DELETE), as a client that is done does.
  await agentTransport.terminateSession()
  await agent.close()
  const [event] = await withTimeout(drained, 15_000, 'the old version to stop')
  t.same(event, { serverId: 'roll', version: '1.0.0' }, 'the old version stopped once its last session ended')

  // Revoking the old version, which has a published successor, leaves the successor serving.
  const node = network.nodes[0]!
  await chain.registry.revoke('roll', '1.0.0', 'superseded by 1.1.0')
  await waitFor(
    () => !node.whitelist.entries().some((e) => e.manifest.version === '1.0.0'),
    node.whitelist,
    'change',
    10_000,
    'the revocation to reach the node',
  )
  t.equal(runtime.status().find((s) => s.id === 'roll')?.version, '1.1.0', 'the node serves the successor')
  t.equal(
    textOf(await newcomer.callTool({ name: 'greet', arguments: { name: 'Cy' } })),
    'Hello, Cy from 1.1.0',
    'and its session goes on',
  )
})
