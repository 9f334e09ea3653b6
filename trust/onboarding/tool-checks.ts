import type { Finding } from './findings.ts'
import type { ToolDefinition } from './tool-digest.ts'

/**
 * Text in a tool's description that speaks to the model rather than describing the tool: the marks of tool
 * poisoning (OWASP MCP Top 10: tool poisoning, prompt injection through metadata). Each pattern names why.
 */
const POISON: readonly [RegExp, string][] = [
  [
    /\b(ignore|disregard|forget)\b.{0,40}\b(previous|prior|above|earlier|other)\b.{0,20}\b(instructions?|rules?|prompts?)\b/i,
    'tells the model to ignore its instructions',
  ],
  [/<\s*(important|system|instructions?|secret|hidden)\s*>/i, 'hides instructions in a pseudo-tag'],
  [
    /\b(do not|don't|never)\b.{0,30}\b(tell|inform|mention|show|reveal)\b.{0,30}\b(user|human)\b/i,
    'asks the model to keep something from the user',
  ],
  [
    /\b(before|after|instead of)\b.{0,40}\b(call(ing)?|us(e|ing)|invok(e|ing))\b.{0,40}\btools?\b/i,
    'directs how the model uses other tools',
  ],
  [
    /\b(read|send|upload|include|pass)\b.{0,60}(\.ssh|id_rsa|\.env\b|credentials|api[_ ]?keys?|passwords?|private keys?)/i,
    'asks for secrets',
  ],
  [/https?:\/\/\S+/i, 'carries a URL the model could be steered to'],
  [/[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]|[\u{e0000}-\u{e007f}]/u, 'contains invisible characters'],
]

/** Parameter names that take code, commands or paths: an unbounded string there is a broad capability. */
const POWERFUL = /^(command|cmd|code|script|query|sql|path|url|expression|shell|exec)$/i

function describe(tool: ToolDefinition): string {
  return `${tool.title ?? ''}\n${tool.description ?? ''}`
}

/** Every string in a JSON schema that the model reads: descriptions and titles of the tool's parameters. */
function schemaTexts(schema: unknown, found: string[] = []): string[] {
  if (typeof schema !== 'object' || schema === null) return found
  for (const [key, value] of Object.entries(schema)) {
    if ((key === 'description' || key === 'title') && typeof value === 'string') found.push(value)
    else schemaTexts(value, found)
  }
  return found
}

/** The checks a definition allows without running anything: poisoned descriptions, over-broad schemas. */
export function checkTools(tools: readonly ToolDefinition[]): Finding[] {
  const findings: Finding[] = []
  for (const tool of tools) {
    for (const text of [describe(tool), ...schemaTexts(tool.inputSchema)]) {
      for (const [pattern, why] of POISON) {
        const match = pattern.exec(text)
        if (match === null) continue
        const urlOnly = why.startsWith('carries a URL')
        // Steering the use of other tools is common in honest descriptions too: a curator reads it.
        const steering = why.startsWith('directs how')
        findings.push({
          stage: 'tools',
          id: `tools.${urlOnly ? 'url-in-description' : steering ? 'steering-description' : 'poisoned-description'}:${tool.name}`,
          severity: urlOnly ? 'low' : steering ? 'medium' : 'high',
          title: `tool ${tool.name}: its description ${why}`,
          evidence: JSON.stringify(
            text.slice(Math.max(0, match.index - 40), match.index + match[0].length + 40),
          ),
        })
      }
    }
    const schema = (tool.inputSchema ?? {}) as {
      type?: unknown
      properties?: Record<string, { type?: unknown; maxLength?: unknown; enum?: unknown; pattern?: unknown }>
      additionalProperties?: unknown
    }
    if (schema.type !== 'object')
      findings.push({
        stage: 'tools',
        id: `tools.schema-not-object:${tool.name}`,
        severity: 'medium',
        title: `tool ${tool.name}: its input schema is not an object schema`,
        evidence: JSON.stringify(tool.inputSchema ?? null).slice(0, 200),
      })
    else if (
      schema.additionalProperties === true ||
      (schema.properties === undefined && schema.additionalProperties !== false)
    )
      findings.push({
        stage: 'tools',
        id: `tools.open-schema:${tool.name}`,
        severity: 'medium',
        title: `tool ${tool.name}: its input schema accepts any property`,
      })
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      const unbounded =
        property.type === 'string' &&
        property.maxLength === undefined &&
        property.enum === undefined &&
        property.pattern === undefined
      if (POWERFUL.test(name) && unbounded)
        findings.push({
          stage: 'tools',
          id: `tools.broad-parameter:${tool.name}.${name}`,
          severity: 'low',
          title: `tool ${tool.name}: parameter ${name} takes any string (code, a command or a path)`,
        })
    }
  }
  return findings
}
