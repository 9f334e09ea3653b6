import { drifted, type ToolDefinition, type ToolDrift, toolDrift } from '../trust/onboarding/tool-digest.ts'

/**
 * The tools a server's signed manifest pins, checked against what the server lists: a tool added, or one whose
 * definition changed since it was reviewed, is drift (a "rug pull"). Each page of `tools/list` is checked as it
 * passes; a tool missing from the list is not drift (it cannot be used).
 */
export class ToolPins {
  readonly #pinned: Record<string, string>

  constructor(pinned: Record<string, string>) {
    this.#pinned = pinned
  }

  /** The drift one `tools/list` result shows, or undefined when every tool listed is as pinned. */
  check(result: unknown): ToolDrift | undefined {
    const tools = (result as { tools?: unknown } | undefined)?.tools
    if (!Array.isArray(tools)) return undefined
    const drift = toolDrift(this.#pinned, tools as ToolDefinition[])
    drift.removed = []
    return drifted(drift) ? drift : undefined
  }
}

/** A drift in words, for logs and the agent's error. */
export function describeDrift(drift: ToolDrift): string {
  const parts = [
    drift.changed.length > 0 ? `changed: ${drift.changed.join(', ')}` : '',
    drift.added.length > 0 ? `added: ${drift.added.join(', ')}` : '',
  ].filter(Boolean)
  return parts.join('; ')
}
