/**
 * The availability soak (`test/support/availability-soak.ts`): 16 sessions calling through a gateway while a
 * node is killed, hung or partitioned every 20 s, for `BENCH_SOAK_SECONDS` (600). Reports the share of calls
 * that succeeded, every failure by kind, and the server processes and gateway heap before and after.
 */
import { availabilitySoak } from '../../test/support/availability-soak.ts'

export function benchSoak() {
  return availabilitySoak({
    durationMs: Number(process.env.BENCH_SOAK_SECONDS ?? 600) * 1_000,
    faultEveryMs: 20_000,
    sessions: 16,
    nodes: 3,
    writeEvery: 10,
  })
}
