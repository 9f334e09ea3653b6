import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { errorMessage } from './errors.ts'
import { counter } from './metrics.ts'

/**
 * Where input from outside the process comes in. Each is a trust boundary: what crosses it may be hostile.
 * - `agent`: HTTP requests from agents (gateway).
 * - `node-stream`: session frames from nodes (gateway).
 * - `gateway-stream`: session frames from gateways (node).
 * - `server`: messages from a hosted MCP server (node).
 * - `gossip`: gossiped records (every peer).
 * - `timer`: periodic work (sweeps, epochs) driven by the state inputs left behind.
 */
export type Boundary = 'agent' | 'node-stream' | 'gateway-stream' | 'server' | 'gossip' | 'timer'

/** At most this many log lines per boundary and kind per second; the rest are counted, then summed up. */
const LOG_LINES_PER_SECOND = 5

/**
 * What a peer does with input it refuses, and with an exception one input caused: the input alone is answered
 * or dropped, the event is counted (`<prefix>_refused_inputs_total`, `<prefix>_input_failures_total`, by
 * boundary) and logged — with a cap on log lines per second, so that a flood of bad input cannot flood the
 * log too. Nothing escapes into the process.
 */
export class InputGuard {
  readonly #logger: Logger
  readonly #refused
  readonly #failures
  readonly #windows = new Map<string, { start: number; lines: number; suppressed: number }>()

  constructor(registry: Registry, prefix: string, logger: Logger) {
    this.#logger = logger
    this.#refused = counter(
      registry,
      `${prefix}_refused_inputs_total`,
      'Inputs refused at a trust boundary (malformed, too deep, too large, out of protocol), by boundary',
      ['boundary'],
    )
    this.#failures = counter(
      registry,
      `${prefix}_input_failures_total`,
      'Exceptions one input caused in its handler, contained to that input, by boundary',
      ['boundary'],
    )
  }

  /** An input refused on purpose: counted, logged at warn (rate-limited). */
  refused(boundary: Boundary, reason: string, context: Record<string, unknown> = {}): void {
    this.#refused.inc({ boundary })
    if (this.#mayLog(`refused:${boundary}`))
      this.#logger.warn({ boundary, ...context, reason }, 'input refused')
  }

  /** An exception a handler threw for one input: counted, logged at error with its stack (rate-limited). */
  failed(boundary: Boundary, err: unknown, context: Record<string, unknown> = {}): void {
    this.#failures.inc({ boundary })
    if (this.#mayLog(`failed:${boundary}`))
      this.#logger.error({ boundary, ...context, err }, `handler failed on one input: ${errorMessage(err)}`)
  }

  /** Runs `handle` for one input; an exception it throws is contained: counted, logged, then `onError`. */
  run(boundary: Boundary, handle: () => void, onError?: (err: unknown) => void): void {
    try {
      handle()
    } catch (err) {
      this.#contain(boundary, err, onError)
    }
  }

  /** Like `run` for async work: a rejection is contained the same way. */
  runAsync(boundary: Boundary, handle: () => Promise<void>, onError?: (err: unknown) => void): void {
    try {
      handle().catch((err: unknown) => this.#contain(boundary, err, onError))
    } catch (err) {
      this.#contain(boundary, err, onError)
    }
  }

  #contain(boundary: Boundary, err: unknown, onError: ((err: unknown) => void) | undefined): void {
    this.failed(boundary, err)
    onError?.(err)
  }

  #mayLog(key: string): boolean {
    const now = Date.now()
    let window = this.#windows.get(key)
    if (window === undefined || now - window.start >= 1_000) {
      if (window !== undefined && window.suppressed > 0)
        this.#logger.warn(
          { kind: key, suppressed: window.suppressed },
          'more inputs like these were not logged',
        )
      window = { start: now, lines: 0, suppressed: 0 }
      this.#windows.set(key, window)
    }
    if (window.lines < LOG_LINES_PER_SECOND) {
      window.lines++
      return true
    }
    window.suppressed++
    return false
  }
}
