type Schema = {
  type?: string | string[]
  enum?: unknown[]
  const?: unknown
  default?: unknown
  examples?: unknown[]
  format?: string
  minLength?: number
  minimum?: number
  exclusiveMinimum?: number
  minItems?: number
  items?: Schema
  properties?: Record<string, Schema>
  required?: string[]
  anyOf?: Schema[]
  oneOf?: Schema[]
}

/**
 * A value that a JSON schema accepts, built from the schema alone: its const, enum, default or example when
 * it has one, else the plainest value of its type (required properties only). Enough to call a read-only
 * tool once and see that it answers; not a fuzzer.
 */
export function sampleOf(schema: unknown, depth = 0): unknown {
  const s = (typeof schema === 'object' && schema !== null ? schema : {}) as Schema
  if (depth > 8) return null
  if (s.const !== undefined) return s.const
  if (s.enum !== undefined && s.enum.length > 0) return s.enum[0]
  if (s.default !== undefined) return s.default
  if (s.examples !== undefined && s.examples.length > 0) return s.examples[0]
  const variants = s.anyOf ?? s.oneOf
  if (variants !== undefined && variants.length > 0) return sampleOf(variants[0], depth + 1)
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type
  switch (type) {
    case 'string':
      if (s.format === 'uri' || s.format === 'url') return 'https://example.com/'
      if (s.format === 'date-time') return new Date(0).toISOString()
      if (s.format === 'email') return 'someone@example.com'
      return 'test'.padEnd(s.minLength ?? 0, 'x')
    case 'integer':
    case 'number':
      return s.minimum ?? (s.exclusiveMinimum === undefined ? 1 : s.exclusiveMinimum + 1)
    case 'boolean':
      return false
    case 'array':
      return Array.from({ length: s.minItems ?? 0 }, () => sampleOf(s.items, depth + 1))
    case 'null':
      return null
    default: {
      const value: Record<string, unknown> = {}
      for (const name of s.required ?? []) value[name] = sampleOf(s.properties?.[name], depth + 1)
      return value
    }
  }
}
