import type { Counter } from 'prom-client'
import { collectedGauge, counter, peerRegistry, RequestMetrics } from '../protocol/metrics.ts'
import type { RequestDone } from './in-flight-requests.ts'
import type { LimitEvents } from './runtime/sandbox/cgroups.ts'
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
  readonly #requests: RequestMetrics
  readonly #kubeRequests: Counter<'verb' | 'resource' | 'code'>
  readonly #sandboxLimits: Counter<'server' | 'limit'>
  readonly #sandboxEgress: Counter<'server' | 'outcome'>
  readonly #toolDrift: Counter<'server'>

  constructor(gauges: NodeGauges) {
    const registry = this.registry
    this.#opened = counter(
      registry,
      'nexus_node_sessions_opened_total',
      'Sessions gateways opened on this node, by server',
      ['server'],
    )
    this.#refused = counter(
      registry,
      'nexus_node_sessions_refused_total',
      'Sessions this node refused, by refusal code',
      ['code'],
    )
    this.#requests = new RequestMetrics(registry, 'nexus_node', {
      requests:
        'Agent requests relayed to servers, by server, MCP method and outcome (ok, error from the server, cancelled by the agent, unanswered when the session ended)',
      duration: 'Time from a request reaching the node to the server answering it, by server and MCP method',
    })
    this.#kubeRequests = counter(
      registry,
      'nexus_node_kube_requests_total',
      'Requests to the Kubernetes API server (Kubernetes runtime), by verb, resource and HTTP status (0: unreachable)',
      ['verb', 'resource', 'code'],
    )
    this.#sandboxLimits = counter(
      registry,
      'nexus_node_sandbox_limit_events_total',
      'What sandboxed server instances ran into, counted when each ends: oom_kill (a process killed for going over the memory limit), fork_refused (the task limit), cpu_throttled (CFS periods held back at the CPU limit)',
      ['server', 'limit'],
    )
    this.#sandboxEgress = counter(
      registry,
      'nexus_node_sandbox_egress_total',
      "Connections sandboxed servers asked their egress proxy for, by outcome: allowed (a host in the manifest's egress list) or refused",
      ['server', 'outcome'],
    )
    this.#toolDrift = counter(
      registry,
      'nexus_node_tool_drift_total',
      "Servers withdrawn because they listed tools that differ from their signed manifest's pins",
      ['server'],
    )
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

  kubeRequest(record: { verb: string; resource: string; status: number }): void {
    this.#kubeRequests.inc({ verb: record.verb, resource: record.resource, code: String(record.status) })
  }

  sandboxLimits(server: string, events: LimitEvents): void {
    if (events.oomKills > 0) this.#sandboxLimits.inc({ server, limit: 'oom_kill' }, events.oomKills)
    if (events.forksRefused > 0)
      this.#sandboxLimits.inc({ server, limit: 'fork_refused' }, events.forksRefused)
    if (events.cpuThrottled > 0)
      this.#sandboxLimits.inc({ server, limit: 'cpu_throttled' }, events.cpuThrottled)
  }

  sandboxEgress(server: string, allowed: boolean): void {
    this.#sandboxEgress.inc({ server, outcome: allowed ? 'allowed' : 'refused' })
  }

  toolDrift(server: string): void {
    this.#toolDrift.inc({ server })
  }

  sessionRefused(code: string): void {
    this.#refused.inc({ code })
  }

  requestDone(server: string, done: RequestDone): void {
    const answered = done.outcome === 'ok' || done.outcome === 'error'
    this.#requests.done(server, done.method, done.outcome, answered ? done.seconds : undefined)
  }
}
