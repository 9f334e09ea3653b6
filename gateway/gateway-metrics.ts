import { Counter, Histogram } from 'prom-client'
import { collectedGauge, methodLabel, peerRegistry } from '../protocol/metrics.ts'
import type { RequestOutcome } from './gateway-session.ts'

export interface GatewayGauges {
  sessionsPerServer(): Map<string, number>
  /** Sessions waiting for their agent to catch up before reading more from their node. */
  sessionsHeldBack(): number
  /** Bytes of events kept for resumption, all sessions together. */
  storedEventBytes(): number
  peers(): number
  announcements(): { accepted: number; ignored: number; rejected: number }
}

/**
 * The gateway's Prometheus metrics, in a registry of its own (several gateways may share a process in tests).
 * Gauges read the live state when scraped; counters and the latency histogram count as things happen.
 */
export class GatewayMetrics {
  readonly registry = peerRegistry('nexus_gateway_')
  readonly #calls: Counter<'server' | 'method' | 'outcome'>
  readonly #latency: Histogram<'server' | 'method'>
  readonly #sessionsOpened: Counter<'server'>
  readonly #failovers: Counter<'server'>
  readonly #backPressure: Counter<'server'>
  readonly #slowClientCuts: Counter<'server'>

  constructor(gauges: GatewayGauges) {
    const registers = [this.registry]
    this.#calls = new Counter({
      name: 'nexus_gateway_requests_total',
      help: 'Agent requests answered, by server, MCP method and outcome (ok, error from the server, failed by the gateway)',
      labelNames: ['server', 'method', 'outcome'],
      registers,
    })
    this.#latency = new Histogram({
      name: 'nexus_gateway_request_duration_seconds',
      help: 'Time from an agent request to its answer, by server and MCP method',
      labelNames: ['server', 'method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    })
    this.#sessionsOpened = new Counter({
      name: 'nexus_gateway_sessions_opened_total',
      help: 'Agent sessions opened, by server',
      labelNames: ['server'],
      registers,
    })
    this.#failovers = new Counter({
      name: 'nexus_gateway_failovers_total',
      help: 'Sessions moved to another node after theirs failed or drained, by server',
      labelNames: ['server'],
      registers,
    })
    this.#backPressure = new Counter({
      name: 'nexus_gateway_back_pressure_total',
      help: 'Times a session stopped reading from its node because its agent read slower than the server wrote',
      labelNames: ['server'],
      registers,
    })
    this.#slowClientCuts = new Counter({
      name: 'nexus_gateway_slow_client_cuts_total',
      help: 'Response streams closed because their client took nothing for sessions.slowClientTimeoutMs',
      labelNames: ['server'],
      registers,
    })
    collectedGauge(
      this.registry,
      'nexus_gateway_sessions_held_back',
      'Sessions waiting for their agent to catch up before reading more from their node',
      [],
      (g) => g.set(gauges.sessionsHeldBack()),
    )
    collectedGauge(
      this.registry,
      'nexus_gateway_stored_event_bytes',
      'Bytes of SSE events kept for Last-Event-ID resumption, all sessions together',
      [],
      (g) => g.set(gauges.storedEventBytes()),
    )
    collectedGauge(
      this.registry,
      'nexus_gateway_sessions',
      'Agent sessions open now, by server',
      ['server'],
      (g) => {
        g.reset()
        for (const [server, count] of gauges.sessionsPerServer()) g.set({ server }, count)
      },
    )
    collectedGauge(this.registry, 'nexus_gateway_peers', 'libp2p connections open now', [], (g) =>
      g.set(gauges.peers()),
    )
    collectedGauge(
      this.registry,
      'nexus_gateway_announcements',
      'Node announcements received since start, by what validation decided',
      ['result'],
      (g) => {
        for (const [result, count] of Object.entries(gauges.announcements())) g.set({ result }, count)
      },
    )
  }

  requestDone(server: string, method: string, outcome: RequestOutcome, seconds: number): void {
    const label = methodLabel(method)
    this.#calls.inc({ server, method: label, outcome })
    this.#latency.observe({ server, method: label }, seconds)
  }

  sessionOpened(server: string): void {
    this.#sessionsOpened.inc({ server })
  }

  failover(server: string): void {
    this.#failovers.inc({ server })
  }

  backPressure(server: string): void {
    this.#backPressure.inc({ server })
  }

  slowClientCut(server: string): void {
    this.#slowClientCuts.inc({ server })
  }
}
