import type { ComponentLogger, Logger } from '@libp2p/interface'

/**
 * libp2p's component logger when its debug output is off: one logger for every component and scope, which writes
 * nothing and makes nothing.
 *
 * libp2p's own logger makes, for every connection, upgrade, muxer and stream, a scoped logger of three `debug`
 * instances and their closures, whether or not anything will ever be written. In the 100-peer gossip bench those
 * loggers were about a seventh of what a process kept alive (V8's sampling heap profiler: 17 of 124 MB), and every
 * one is work for the garbage collector's marking, whose pauses make that bench's slowest records. 25 peers in one
 * process, all connected to each other, kept 60 MB of heap with this logger against 71 MB with libp2p's.
 *
 * libp2p's debug output is asked for with `DEBUG` (for instance `DEBUG='libp2p:*'`); when it is set at all, a peer
 * gets libp2p's own logger, which reads it, so nothing that could be logged is lost.
 */
const ignore = (): void => undefined

const silentLogger: Logger = Object.assign((_formatter: unknown, ..._args: unknown[]): void => undefined, {
  error: ignore,
  trace: ignore,
  enabled: false,
  newScope: (): Logger => silentLogger,
})

const SILENT: ComponentLogger = { forComponent: () => silentLogger }

/** The component logger for a new peer: undefined (libp2p's own) when `DEBUG` asks for debug output. */
export function libp2pComponentLogger(env: NodeJS.ProcessEnv = process.env): ComponentLogger | undefined {
  return env.DEBUG ? undefined : SILENT
}
