import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { type LevelWithSilent, type Logger, pino } from 'pino'

/**
 * A logger whose JSON lines are kept, parsed, for a test to look into; `events` emits each as a `line`, for a
 * test that waits for one.
 */
export function captureLogs(level: LevelWithSilent = 'info'): {
  logger: Logger
  lines: Record<string, unknown>[]
  events: EventEmitter<{ line: [Record<string, unknown>] }>
} {
  const lines: Record<string, unknown>[] = []
  const events = new EventEmitter<{ line: [Record<string, unknown>] }>()
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const text of chunk.toString().split('\n')) {
        if (text === '') continue
        const line = JSON.parse(text) as Record<string, unknown>
        lines.push(line)
        events.emit('line', line)
      }
      done()
    },
  })
  return { logger: pino({ level }, sink), lines, events }
}
