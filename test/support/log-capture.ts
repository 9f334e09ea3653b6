import { Writable } from 'node:stream'
import { type LevelWithSilent, type Logger, pino } from 'pino'

/** A logger whose JSON lines are kept, parsed, for a test to look into. */
export function captureLogs(level: LevelWithSilent = 'info'): {
  logger: Logger
  lines: Record<string, unknown>[]
} {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    },
  })
  return { logger: pino({ level }, sink), lines }
}
