import t from 'tap'
import { runConformance } from './support/conformance.ts'
import { fixtureHttpServerConfig, fixtureServerConfig, startDirectFixture } from './support/fixture-server.ts'
import { startNetwork } from './support/network.ts'

const direct = await startDirectFixture()
t.teardown(direct.stop)
const baseline = await runConformance(direct.url)
const passingDirectly = baseline.filter((r) => r.passed).map((r) => r.scenario)

t.test('the fixture passes the suite directly', async (t) => {
  t.ok(passingDirectly.length >= 25, `the fixture passes ${passingDirectly.length} scenarios directly`)
})

for (const [upstream, server] of [
  ['stdio', fixtureServerConfig()],
  ['streamable HTTP', fixtureHttpServerConfig('conformance')],
] as const) {
  t.test(
    `every scenario that passes directly also passes through gateway and node (${upstream} upstream)`,
    async (t) => {
      const network = await startNetwork({ nodes: 1, servers: [server] })
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
    },
  )
}
