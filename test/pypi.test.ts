import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Wallet } from 'ethers'
import t from 'tap'
import { NexusNode } from '../node/nexus-node.ts'
import { parseManifest } from '../protocol/manifest.ts'
import { startNetwork } from '../testing/network.ts'
import { signManifest } from '../trust/manifest-signature.ts'
import { onboard } from '../trust/onboarding/onboard.ts'
import { writeWhitelistFile } from '../trust/whitelist-file.ts'
import { connectStreamable, textOf } from './support/clients.ts'

// A real PyPI server end to end: `mcp-server-time` from PyPI is onboarded (its tree installed with pip and
// locked by sha256, run in a sandbox, its tools pinned), signed, and hosted by a node, which installs exactly
// the locked tree with pip's --require-hashes; an agent calls it through the gateway. A lock whose hash does
// not match what PyPI serves is refused.

const SPEC = 'pypi:mcp-server-time==2026.10.19'
const scratch = mkdtempSync(join(tmpdir(), 'nexus-pypi-'))
process.env.NEXUS_PYTHON_CACHE = join(scratch, 'python')
const report = await onboard({ spec: SPEC })

t.test('mcp-server-time is onboarded from PyPI: locked by hash, run sandboxed, tools pinned', async (t) => {
  t.equal(report.verdict, 'approved', JSON.stringify(report.blocking))
  t.match(report.manifest, {
    id: 'time',
    version: '2026.10.19',
    package: SPEC,
    transport: 'stdio',
    tools: { get_current_time: /^sha256:/, convert_time: /^sha256:/ },
  })
  const lock = report.manifest.pythonLock ?? []
  t.ok(lock.length > 10, `${lock.length} distributions locked`)
  t.ok(lock.some((l) => /^mcp-server-time==2026\.10\.19 --hash=sha256:[0-9a-f]{64}$/.test(l)))
  t.match(report.dynamic, { protocolVersion: '2025-11-25', serverInfo: { name: 'mcp-time' } })
  t.equal(report.dependencies.packages, lock.length)
})

t.test(
  'a node installs the locked tree and serves it; a lock that does not match PyPI is refused',
  async (t) => {
    const curator = Wallet.createRandom()
    const tampered = parseManifest({
      ...report.manifest,
      id: 'time-tampered',
      pythonLock: (report.manifest.pythonLock ?? []).map((line, i) =>
        i === 0 ? line.replace(/sha256:[0-9a-f]{64}/, `sha256:${'0'.repeat(64)}`) : line,
      ),
    })
    const whitelist = join(scratch, 'whitelist.json')
    writeWhitelistFile(whitelist, [
      await signManifest({ manifest: report.manifest, signatures: [] }, curator, 1),
      await signManifest({ manifest: tampered, signatures: [] }, curator, 1),
    ])
    const trust = { whitelist, curators: [curator.address], chainId: 1 }
    const network = await startNetwork({
      nodes: 1,
      servers: [{ id: 'time', warmPool: 1 }],
      trust,
      readyTimeoutMs: 120_000,
    })
    t.teardown(network.stop)
    const { client } = await connectStreamable(network.gateway.serverUrl('time'))
    t.teardown(() => client.close())
    const answer = await client.callTool({ name: 'get_current_time', arguments: { timezone: 'UTC' } })
    t.match(textOf(answer), /"timezone": "UTC"/, 'the PyPI server answers through gateway and node')

    const other = new NexusNode({
      transport: 'memory',
      servers: [{ id: 'time-tampered', warmPool: 1 }],
      trust,
    })
    await other.start()
    t.teardown(() => other.stop())
    t.match(other.refusedServers.get('time-tampered'), {
      code: 'PACKAGE_TAMPERED',
      reason: /pip could not install its locked tree/,
    })
    t.notOk(other.runtime.has('time-tampered'), 'nothing of it runs')
  },
)
