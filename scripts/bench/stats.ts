/** Small statistics for benchmark reports. */

export const round = (x: number, digits = 3) => {
  const scale = 10 ** digits
  return Math.round(x * scale) / scale
}

/** The p-th percentile of values sorted in ascending order (nearest rank); NaN when there are none. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** The median of values in any order. */
export const median = (values: number[]) =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  )

export interface Distribution {
  count: number
  minMs: number
  medianMs: number
  p99Ms: number
  maxMs: number
}

/** Summarises durations in milliseconds. */
export function distribution(durations: number[]): Distribution {
  const sorted = [...durations].sort((a, b) => a - b)
  return {
    count: sorted.length,
    minMs: round(sorted[0] ?? Number.NaN),
    medianMs: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? Number.NaN),
  }
}
