/**
 * Parses Prometheus text exposition format (version 0.0.4) strictly: every line must be a HELP or TYPE
 * comment or a sample `name{label="value",...} number`. Returns the samples keyed by `name{labels}` exactly as
 * written, so tests can look up what they expect.
 */
export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  const sample =
    /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '' || /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue
    const match = sample.exec(line)
    if (match === null) throw new Error(`line ${i + 1} is not Prometheus text: ${line}`)
    samples.set(`${match[1]}${match[2] ?? ''}`, Number(match[3]))
  }
  return samples
}
