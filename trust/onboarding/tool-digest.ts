import { createHash } from 'node:crypto'
import { canonicalJson } from '../../protocol/canonical-json.ts'

/** A tool's definition as a server lists it; only these fields are pinned. */
export interface ToolDefinition {
  name: string
  description?: string
  inputSchema?: unknown
  outputSchema?: unknown
  annotations?: unknown
  title?: string
}

/**
 * The digest that pins a tool: sha256 of the canonical JSON of its name, title, description, input and output
 * schemas and annotations. Any change to what the model reads or what the tool accepts changes it.
 */
export function toolDigest(tool: ToolDefinition): string {
  const pinned = {
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: tool.inputSchema,
    outputSchema: tool.outputSchema,
    annotations: tool.annotations,
  }
  return `sha256:${createHash('sha256').update(canonicalJson(pinned)).digest('hex')}`
}

export function toolDigests(tools: readonly ToolDefinition[]): Record<string, string> {
  return Object.fromEntries(tools.map((tool) => [tool.name, toolDigest(tool)]))
}

/** How a live tool list differs from the pinned one. */
export interface ToolDrift {
  added: string[]
  removed: string[]
  changed: string[]
}

export function toolDrift(pinned: Record<string, string>, live: readonly ToolDefinition[]): ToolDrift {
  const now = toolDigests(live)
  return {
    added: Object.keys(now).filter((name) => !(name in pinned)),
    removed: Object.keys(pinned).filter((name) => !(name in now)),
    changed: Object.keys(now).filter((name) => name in pinned && pinned[name] !== now[name]),
  }
}

export function drifted(drift: ToolDrift): boolean {
  return drift.added.length + drift.removed.length + drift.changed.length > 0
}
