import { type Logger, pino } from 'pino'

/** JSON logs on stderr; level from NEXUS_LOG_LEVEL (default info, silent under the test runner). */
export function createLogger(component: string): Logger {
  const level = process.env.NEXUS_LOG_LEVEL ?? (process.env.TAP === '1' ? 'silent' : 'info')
  return pino({ level, base: { component } }, pino.destination(2))
}
