import t from 'tap'
import * as z from 'zod/v4'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, startSlowCall } from './support/clients.ts'
import { failoverServerConfig, fixtureServerConfig } from './support/fixture-server.ts'
import { captureLogs } from './support/log-capture.ts'
import { parsePrometheus } from './support/prometheus.ts'
import { postInitialize } from './support/raw-sse.ts'

// Every log line of the network: the test checks that gateway and node lines correlate.
const { logger, lines: logLines } = captureLogs()
const network = await startNetwork({
  nodes: 1,
  servers: [fixtureServerConfig()],
  node: { ops: { port: 0 } },
  logger,
})
t.teardown(network.stop)
const { gateway } = network
const node = network.nodes[0]!

async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`)
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  return parsePrometheus(await response.text())
}

t.test('health and readiness of a gateway and a node that serve', async (t) => {
  for (const url of [gateway.url, node.opsUrl!]) {
    t.same(await (await fetch(`${url}/healthz`)).json(), { status: 'ok' })
    const ready = await fetch(`${url}/readyz`)
    t.equal(ready.status, 200, `${url} is ready`)
  }
})

t.test('a gateway alone is alive but not ready, and says why', async (t) => {
  const alone = new NexusGateway({
    transport: 'memory',
    http: { port: 0 },
    trust: { allowUnverified: true },
    auth: { anonymous: true },
  })
  await alone.start()
  t.teardown(() => alone.stop())
  t.equal((await fetch(`${alone.url}/healthz`)).status, 200)
  const ready = await fetch(`${alone.url}/readyz`)
  t.equal(ready.status, 503)
  t.same(await ready.json(), { status: 'not connected to any peer' })
})

t.test('metrics parse as Prometheus text and count what agents did', async (t) => {
  const before = await scrape(gateway.url)
  const nodeBefore = await scrape(node.opsUrl!)
  const { client } = await connectStreamable(gateway.serverUrl('conformance'))
  t.teardown(() => client.close())
  await client.listTools()
  for (let i = 0; i < 3; i++) await client.callTool({ name: 'test_simple_text', arguments: {} })
  await client.callTool({ name: 'test_error_handling', arguments: {} })
  const after = await scrape(gateway.url)
  const delta = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0)
  const calls = 'nexus_gateway_requests_total{server="conformance",method="tools/call",outcome="ok"}'
  t.equal(delta(calls), 4, 'four tools/call answered (a tool error is still a JSON-RPC result)')
  t.equal(delta('nexus_gateway_requests_total{server="conformance",method="tools/list",outcome="ok"}'), 1)
  t.equal(delta('nexus_gateway_request_duration_seconds_count{server="conformance",method="tools/call"}'), 4)
  t.equal(delta('nexus_gateway_sessions_opened_total{server="conformance"}'), 1)
  t.equal(after.get('nexus_gateway_sessions{server="conformance"}'), 1, 'one session open now')
  t.equal(after.get('nexus_gateway_peers'), 1, 'connected to the node')
  t.ok((after.get('nexus_gateway_announcements{result="accepted"}') ?? 0) >= 1)
  t.ok(after.has('nexus_gateway_process_cpu_user_seconds_total'), 'process metrics too')

  const nodeMetrics = await scrape(node.opsUrl!)
  const nodeDelta = (key: string) => (nodeMetrics.get(key) ?? 0) - (nodeBefore.get(key) ?? 0)
  t.equal(nodeDelta('nexus_node_requests_total{server="conformance",method="tools/call",outcome="ok"}'), 4)
  t.equal(nodeDelta('nexus_node_requests_total{server="conformance",method="tools/list",outcome="ok"}'), 1)
  t.equal(nodeDelta('nexus_node_request_duration_seconds_count{server="conformance",method="tools/call"}'), 4)
  t.equal(nodeMetrics.get('nexus_node_sessions{server="conformance"}'), 1)
  t.ok((nodeMetrics.get('nexus_node_sessions_opened_total{server="conformance"}') ?? 0) >= 1)
  t.ok((nodeMetrics.get('nexus_node_server_processes{server="conformance"}') ?? 0) >= 1)
  t.equal(nodeMetrics.get('nexus_node_servers_refused'), 0)
})

t.test('a method no one knows is counted as other, so agents cannot grow the label set', async (t) => {
  const { client } = await connectStreamable(gateway.serverUrl('conformance'))
  t.teardown(() => client.close())
  await t.rejects(client.request({ method: 'made/up-method-1234', params: {} }, z.any()))
  const metrics = await scrape(gateway.url)
  t.notOk(
    [...metrics.keys()].some((k) => k.includes('made/up')),
    'the unknown method is not a label',
  )
  t.ok(
    (metrics.get('nexus_gateway_requests_total{server="conformance",method="other",outcome="error"}') ?? 0) >=
      1,
  )
  const nodeMetrics = await scrape(node.opsUrl!)
  t.notOk(
    [...nodeMetrics.keys()].some((k) => k.includes('made/up')),
    'nor on the node',
  )
  t.ok(
    (nodeMetrics.get('nexus_node_requests_total{server="conformance",method="other",outcome="error"}') ??
      0) >= 1,
  )
})

t.test('a request leaves one line on the gateway and one on the node, under the same ids', async (t) => {
  const { client, transport } = await connectStreamable(gateway.serverUrl('conformance'))
  t.teardown(() => client.close())
  await client.callTool({ name: 'test_simple_text', arguments: {} })
  const lines = logLines.filter((l) => l.msg === 'request done' && l.sessionId === transport.sessionId)
  const call = (component: string) =>
    lines.find((l) => l.component === component && l.method === 'tools/call')
  const [onGateway, onNode] = [call('gateway'), call('node')]
  t.match(onGateway, { serverId: 'conformance', principal: 'anonymous', outcome: 'ok', node: node.peerId })
  t.match(onNode, { serverId: 'conformance', principal: 'anonymous', outcome: 'ok' })
  t.equal(onGateway?.rpcId, onNode?.rpcId, 'the JSON-RPC id correlates the two lines')
  t.type(onGateway?.ms, 'number')
})

t.test(
  'graceful shutdown: calls in flight finish or get an error, none is lost; new sessions get 503',
  async (t) => {
    const net = await startNetwork({
      nodes: 1,
      servers: [failoverServerConfig()],
      gateway: { shutdownTimeoutMs: 1_500 },
    })
    t.teardown(net.stop)
    const url = net.gateway.serverUrl('failover')
    const [{ client: a }, { client: b }] = await Promise.all([connectStreamable(url), connectStreamable(url)])
    t.teardown(() => Promise.all([a.close(), b.close()]))
    // Each tool reports progress once it runs on the server: then the call is surely in flight.
    const quick = startSlowCall(a, 'slow_read', 800)
    const slow = startSlowCall(b, 'slow_read', 20_000)
    await Promise.all([quick.running, slow.running])
    const stopping = net.gateway.stop()
    const refused = await postInitialize(url, 'late')
    t.equal(refused.status, 503, 'a new session during shutdown is refused')
    t.equal(refused.headers.get('retry-after'), '1')
    t.match(
      await quick.outcome,
      { ok: true, value: { content: [{ text: /slow_read done/ }] } },
      'a call that finishes in time is answered',
    )
    t.match(await slow.outcome, {
      ok: false,
      error: { code: -32012, message: /the gateway shut down before the server answered/ },
    })
    await stopping
  },
)
