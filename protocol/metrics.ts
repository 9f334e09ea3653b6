import perfHooks from 'node:perf_hooks'
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client'

/** The process's own metrics (CPU, memory, event loop, GC), collected once per process and prefix. */
const processRegistries = new Map<string, Registry>()

/**
 * How often the event-loop delay is sampled, in ms. prom-client samples every 10 ms by default: a timer waking
 * every process a hundred times a second, for a figure scraped every few seconds. That was half of what an idle
 * node and gateway cost (`idle` bench: node 0.90–1.07 % and gateway 0.97–1.12 % of a core at 10 ms, 0.46–0.52 %
 * and 0.54–0.63 % at 100 ms), invisible in a JavaScript profile since the sampling timer is native. At 100 ms a
 * stall is still seen (`test/metrics.test.ts`), unless it begins within one sampling interval of a scrape: each
 * scrape starts a new window, whose first interval is not recorded (a tenth of a second after each scrape).
 */
const EVENT_LOOP_SAMPLE_MS = 100

/**
 * prom-client reads its event-loop histogram at every scrape and then empties it. A scrape that comes before the
 * next sample (two scrapers, or a second scrape within a sampling interval) finds it empty: the mean and the
 * deviation are NaN, which prom-client writes as `Nan` (not Prometheus text), and the minimum is 2^63 ns. Here
 * the histogram it makes is only emptied when it has samples, and an empty one reads 0.
 */
function withEmptyEventLoopWindowsReadingZero(register: () => void): void {
  const monitor = perfHooks.monitorEventLoopDelay
  perfHooks.monitorEventLoopDelay = (options) => readsZeroWhenEmpty(monitor(options))
  try {
    register()
  } finally {
    perfHooks.monitorEventLoopDelay = monitor
  }
}

type EventLoopHistogram = ReturnType<typeof perfHooks.monitorEventLoopDelay>

function readsZeroWhenEmpty(histogram: EventLoopHistogram): EventLoopHistogram {
  return new Proxy(histogram, {
    get(target, property) {
      if (target.count === 0 && (property === 'mean' || property === 'stddev' || property === 'min')) return 0
      if (property === 'reset') return () => target.count > 0 && target.reset()
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

function processMetrics(prefix: string): Registry {
  let registry = processRegistries.get(prefix)
  if (registry === undefined) {
    registry = new Registry()
    const register = registry
    withEmptyEventLoopWindowsReadingZero(() =>
      collectDefaultMetrics({ register, prefix, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS }),
    )
    processRegistries.set(prefix, registry)
  }
  return registry
}

/**
 * A registry of a peer's own (several peers may share a process: tests, the in-process network helper), with
 * the process metrics under `prefix`. Those are collected once per process and shown by every peer's registry:
 * collecting them per peer left a GC observer per peer, for good, that kept the peer's registry, its gauges
 * and through their callbacks the whole stopped peer alive (the availability soak's heap grew with every
 * node it replaced).
 */
export function peerRegistry(prefix: string): Registry {
  const registry = new Registry()
  // Typed as plain metric objects, they are the metric instances themselves.
  for (const metric of processMetrics(prefix).getMetricsAsArray())
    registry.registerMetric(metric as unknown as Metric)
  return registry
}

/** A gauge that reads the live state when scraped, rather than being kept up to date. */
export function collectedGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  collect: (gauge: Gauge) => void,
): Gauge {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      collect(this)
    },
  })
}

/** MCP methods an agent may call; anything else is counted as `other`, so a client cannot grow the label set. */
const KNOWN_METHODS = new Set([
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
  'tasks/get',
  'tasks/list',
  'tasks/result',
  'tasks/cancel',
])

/** A request's method as a metric label: MCP's own, or `other`. */
export function methodLabel(method: string): string {
  return KNOWN_METHODS.has(method) ? method : 'other'
}

/** A counter in a peer's registry. */
export function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]) {
  return new Counter<L>({ name, help, labelNames, registers: [registry] })
}

/** Latency buckets from half a millisecond (a relayed ping) to half a minute (a long tool call). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * Agent requests by server, MCP method and outcome, and their latency: what gateways and nodes both count,
 * as `<prefix>_requests_total` and `<prefix>_request_duration_seconds`.
 */
export class RequestMetrics {
  readonly #requests: Counter<'server' | 'method' | 'outcome'>
  readonly #latency: Histogram<'server' | 'method'>

  constructor(registry: Registry, prefix: string, help: { requests: string; duration: string }) {
    this.#requests = counter(registry, `${prefix}_requests_total`, help.requests, [
      'server',
      'method',
      'outcome',
    ])
    this.#latency = new Histogram({
      name: `${prefix}_request_duration_seconds`,
      help: help.duration,
      labelNames: ['server', 'method'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    })
  }

  /** A request ended; its latency counts only when `seconds` is given (an answer, not an abandonment). */
  done(server: string, method: string, outcome: string, seconds?: number): void {
    const label = methodLabel(method)
    this.#requests.inc({ server, method: label, outcome })
    if (seconds !== undefined) this.#latency.observe({ server, method: label }, seconds)
  }
}
