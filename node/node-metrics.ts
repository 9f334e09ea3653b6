import { Counter, Histogram } from 'prom-client'
import { collectedGauge, methodLabel, peerRegistry } from '../protocol/metrics.ts'
import type { RequestDone } from './in-flight-requests.ts'
import type { UpstreamStatus } from './runtime/upstream.ts'

export interface NodeGauges {
  sessionsPerServer(): Map<string, number>
  servers(): UpstreamStatus[]
  peers(): number
  announcements(): { accepted: number; ignored: number; rejected: number }
  refusedServers(): number
  divergences(): number
}

/** The node's Prometheus metrics, in a registry of its own; gauges read the live state when scraped. */
export class NodeMetrics {
  readonly registry = peerRegistry('nexus_node_')
  readonly #opened: Counter<'server'>
  readonly #refused: Counter<'code'>
  readonly #requests: Counter<'server' | 'method' | 'outcome'>
  readonly #latency: Histogram<'server' | 'method'>

  constructor(gauges: NodeGauges) {
    const registers = [this.registry]
    this.#opened = new Counter({
      name: 'nexus_node_sessions_opened_total',
      help: 'Sessions gateways opened on this node, by server',
      labelNames: ['server'],
      registers,
    })
    this.#refused = new Counter({
      name: 'nexus_node_sessions_refused_total',
      help: 'Sessions this node refused, by refusal code',
      labelNames: ['code'],
      registers,
    })
    this.#requests = new Counter({
      name: 'nexus_node_requests_total',
      help: 'Agent requests relayed to servers, by server, MCP method and outcome (ok, error from the server, cancelled by the agent, unanswered when the session ended)',
      labelNames: ['server', 'method', 'outcome'],
      registers,
    })
    this.#latency = new Histogram({
      name: 'nexus_node_request_duration_seconds',
      help: 'Time from a request reaching the node to the server answering it, by server and MCP method',
      labelNames: ['server', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
    const gauge = (
      name: string,
      help: string,
      labels: string[],
      collect: Parameters<typeof collectedGauge>[4],
    ) => collectedGauge(this.registry, name, help, labels, collect)
    gauge('nexus_node_sessions', 'Sessions open now, by server', ['server'], (g) => {
      g.reset()
      for (const [server, count] of gauges.sessionsPerServer()) g.set({ server }, count)
    })
    gauge(
      'nexus_node_server_processes',
      'Processes of each hosted server, pooled or in session',
      ['server'],
      (g) => {
        g.reset()
        for (const s of gauges.servers()) g.set({ server: s.id }, s.pids.length)
      },
    )
    gauge('nexus_node_server_restarts', 'Restarts of each hosted server after a crash', ['server'], (g) => {
      g.reset()
      for (const s of gauges.servers()) g.set({ server: s.id }, s.restarts)
    })
    gauge('nexus_node_peers', 'libp2p connections open now', [], (g) => g.set(gauges.peers()))
    gauge(
      'nexus_node_announcements',
      'Announcements received since start, by validation result',
      ['result'],
      (g) => {
        for (const [result, count] of Object.entries(gauges.announcements())) g.set({ result }, count)
      },
    )
    gauge('nexus_node_servers_refused', 'Configured or assigned servers refused by the whitelist', [], (g) =>
      g.set(gauges.refusedServers()),
    )
    gauge(
      'nexus_node_allocation_divergences',
      'Peers that computed another assignment for an epoch',
      [],
      (g) => g.set(gauges.divergences()),
    )
  }

  sessionOpened(server: string): void {
    this.#opened.inc({ server })
  }

  sessionRefused(code: string): void {
    this.#refused.inc({ code })
  }

  requestDone(server: string, done: RequestDone): void {
    const method = methodLabel(done.method)
    this.#requests.inc({ server, method, outcome: done.outcome })
    if (done.outcome === 'ok' || done.outcome === 'error')
      this.#latency.observe({ server, method }, done.seconds)
  }
}
