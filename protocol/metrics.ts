import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'

/** A registry of a peer's own (several peers may share a process), with the process metrics under `prefix`. */
export function peerRegistry(prefix: string): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix })
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
