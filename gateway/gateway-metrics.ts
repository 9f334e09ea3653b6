import type { Counter } from 'prom-client'
import { collectedGauge, counter, peerRegistry, RequestMetrics } from '../protocol/metrics.ts'
import type { RequestOutcome } from './gateway-session.ts'
import type { KeptStreamCounts } from './kept-streams.ts'

export interface GatewayGauges {
  sessionsPerServer(): Map<string, number>
  /** Sessions waiting for their agent to catch up before reading more from their node. */
  sessionsHeldBack(): number
  /** Bytes of events kept for resumption, all sessions together. */
  storedEventBytes(): number
  peers(): number
  announcements(): { accepted: number; ignored: number; rejected: number }
  /** Streams to nodes kept between modern requests: how many wait now, and what became of them. */
  keptStreams(): { waiting: number; counts: KeptStreamCounts }
}

/**
 * The gateway's Prometheus metrics, in a registry of its own (several gateways may share a process in tests).
 * Gauges read the live state when scraped; counters and the latency histogram count as things happen.
 */
export class GatewayMetrics {
  readonly registry = peerRegistry('nexus_gateway_')
  readonly #requests: RequestMetrics
  readonly #sessionsOpened: Counter<'server'>
  readonly #failovers: Counter<'server'>
  readonly #backPressure: Counter<'server'>
  readonly #slowClientCuts: Counter<'server'>
  readonly #unmet: Counter

  constructor(gauges: GatewayGauges) {
    const registry = this.registry
    const perServer = (name: string, help: string) => counter(registry, name, help, ['server'])
    this.#requests = new RequestMetrics(registry, 'nexus_gateway', {
      requests:
        'Agent requests answered, by server, MCP method and outcome (ok, error from the server, failed by the gateway)',
      duration: 'Time from an agent request to its answer, by server and MCP method',
    })
    this.#sessionsOpened = perServer(
      'nexus_gateway_sessions_opened_total',
      'Agent sessions opened, by server',
    )
    this.#failovers = perServer(
      'nexus_gateway_failovers_total',
      'Sessions moved to another node after theirs failed or drained, by server',
    )
    this.#backPressure = perServer(
      'nexus_gateway_back_pressure_total',
      'Times a session stopped reading from its node because its agent read slower than the server wrote',
    )
    this.#slowClientCuts = perServer(
      'nexus_gateway_slow_client_cuts_total',
      'Response streams closed because their client took nothing for sessions.slowClientTimeoutMs',
    )
    // Not by server: the ids are the agents' own, and a label per made-up id would grow without bound.
    this.#unmet = counter(
      registry,
      'nexus_gateway_unmet_requests_total',
      'Requests for servers no node offers: agents reaching for an unknown server, and explicit requests',
      [],
    )
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
    collectedGauge(
      this.registry,
      'nexus_gateway_kept_streams',
      'Streams to nodes waiting for the next modern request now',
      [],
      (g) => g.set(gauges.keptStreams().waiting),
    )
    collectedGauge(
      this.registry,
      'nexus_gateway_kept_stream_events',
      'Kept streams since start: kept after an answer, reused by a request, expired idle, lost (ended or misused while waiting)',
      ['event'],
      (g) => {
        for (const [event, count] of Object.entries(gauges.keptStreams().counts)) g.set({ event }, count)
      },
    )
  }

  requestDone(server: string, method: string, outcome: RequestOutcome, seconds: number): void {
    this.#requests.done(server, method, outcome, seconds)
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

  unmetRequest(): void {
    this.#unmet.inc()
  }
}
