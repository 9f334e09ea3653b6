import t from 'tap'
import { runConformance } from './support/conformance.ts'
import { fixtureServerConfig, startDirectFixture } from './support/fixture-server.ts'
import { startNetwork } from './support/network.ts'

t.test('every conformance scenario that passes directly also passes through gateway and node', async (t) => {
  const direct = await startDirectFixture()
  t.teardown(direct.stop)
  const baseline = await runConformance(direct.url)
  const passingDirectly = baseline.filter((r) => r.passed).map((r) => r.scenario)
  t.ok(passingDirectly.length >= 25, `the fixture passes ${passingDirectly.length} scenarios directly`)

  const network = await startNetwork({ nodes: 1, servers: [fixtureServerConfig()] })
  t.teardown(network.stop)
  // The suite's DNS-rebinding scenario needs a loopback name, as a browser would see it.
  const viaGateway = await runConformance(
    network.gateway.serverUrl('conformance').replace('127.0.0.1', 'localhost'),
  )
  const byName = new Map(viaGateway.map((r) => [r.scenario, r]))
  for (const scenario of passingDirectly) {
    const result = byName.get(scenario)
    t.ok(result?.passed, `${scenario} passes through the gateway`, {
      failures: result?.failures ?? ['not run'],
    })
  }
})
