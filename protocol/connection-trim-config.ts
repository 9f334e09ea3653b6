import * as z from 'zod/v4'
import { CONNECTION_TRIM_DEFAULTS } from './connection-trimmer.ts'

/**
 * `connectionTrim` in node and gateway configuration: when a peer closes connections nobody uses (see
 * `ConnectionTrimmer`), or `false` to keep every connection up to `maxConnections`.
 */
export const ConnectionTrimConfigSchema = z
  .union([
    z.literal(false),
    z
      .object({
        /** Trimming starts above this many connections… */
        highWater: z.number().int().min(0).default(CONNECTION_TRIM_DEFAULTS.highWater),
        /** …and closes idle ones down to this many. */
        lowWater: z.number().int().min(0).default(CONNECTION_TRIM_DEFAULTS.lowWater),
        /** A connection opened or carrying a session within this is not idle. */
        idleMs: z.number().int().min(0).default(CONNECTION_TRIM_DEFAULTS.idleMs),
      })
      .strict()
      .refine((trim) => trim.lowWater <= trim.highWater, {
        message: 'lowWater must not be above highWater',
        path: ['lowWater'],
      }),
  ])
  .prefault({})
export type ConnectionTrimConfig = z.infer<typeof ConnectionTrimConfigSchema>
