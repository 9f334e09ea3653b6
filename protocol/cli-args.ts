import { type ParseArgsConfig, parseArgs } from 'node:util'

/** Parses command-line options, printing usage and exiting on --help or on a malformed command line. */
export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(usage: string, options: T) {
  try {
    const parsed = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    })
    if ((parsed.values as { help?: boolean }).help) {
      process.stdout.write(`${usage.trim()}\n`)
      process.exit(0)
    }
    return parsed
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage.trim()}\n`)
    process.exit(2)
  }
}

/** Stops `service` on SIGINT/SIGTERM, once; a second signal forces the exit. */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (signal: string) => {
    if (stopping) process.exit(130)
    stopping = true
    process.stderr.write(`\n${signal}: shutting down…\n`)
    stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`shutdown failed: ${(err as Error).message}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}
