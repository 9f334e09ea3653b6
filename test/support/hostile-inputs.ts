/**
 * Seeded generators of hostile input for the fuzz tests and `npm run bench` (suite `fuzz`): JSON documents
 * and byte strings derived from a valid one by the mutations that have hurt JSON-RPC peers — nesting far past
 * any limit, wrong types in every field, huge strings and arrays, invalid UTF-8, truncation, numbers JSON
 * cannot hold, keys that reach prototypes. The same seed gives the same inputs on every run.
 */

import { parseJsonBounded } from '../../protocol/bounded-json.ts'

export type Random = () => number

export function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!
}

export function integer(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1))
}

/** `{"a":{"a":…}}` or `[[…]]`, `levels` deep, around `inner`. */
export function nestedText(levels: number, inner = '1', kind: 'object' | 'array' = 'object'): string {
  return kind === 'object'
    ? `${'{"a":'.repeat(levels)}${inner}${'}'.repeat(levels)}`
    : `${'['.repeat(levels)}${inner}${']'.repeat(levels)}`
}

/** Values that break code expecting something else in a field. */
const ODD_VALUES: readonly string[] = [
  'null',
  'true',
  '-1',
  '1e400',
  '-0',
  '9007199254740993',
  '""',
  '"\\u0000"',
  '"\\ud800"',
  '[]',
  '{}',
  '[null]',
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  '"toString"',
  '"__proto__"',
]

/** A JSON text derived from `base` by one hostile mutation; at most about `maxBytes` long. */
export function mutateJson(random: Random, base: Record<string, unknown>, maxBytes = 256 * 1024): string {
  const text = JSON.stringify(base)
  const keys = Object.keys(base)
  const withField = (key: string, valueText: string) => {
    const rest = JSON.stringify({ ...base, [key]: undefined }).slice(1, -1)
    return `{${rest}${rest === '' ? '' : ','}${JSON.stringify(key)}:${valueText}}`
  }
  switch (integer(random, 0, 13)) {
    case 0: // deep nesting in a field: the stack overflow of issue 19
      return withField(pick(random, [...keys, 'params', 'x']), nestedText(integer(random, 100, 20_000)))
    case 1: // deep arrays at the top
      return nestedText(integer(random, 100, 20_000), text, 'array')
    case 2: // an odd value in an existing field
      return withField(pick(random, keys), pick(random, ODD_VALUES))
    case 3: // a field removed
      return JSON.stringify({ ...base, [pick(random, keys)]: undefined })
    case 4: // a huge string
      return withField(
        pick(random, [...keys, 'pad']),
        JSON.stringify('x'.repeat(integer(random, 1, maxBytes))),
      )
    case 5: // a huge array
      return withField(
        'params',
        `[${Array(integer(random, 1, maxBytes / 4))
          .fill('0')
          .join(',')}]`,
      )
    case 6: // truncated
      return text.slice(0, integer(random, 0, Math.max(0, text.length - 1)))
    case 7: // a batch of copies
      return `[${Array(integer(random, 0, 200))
        .fill(text)
        .join(',')}]`
    case 8: // not an object at all
      return pick(random, ODD_VALUES)
    case 9: // many keys
      return withField(
        'params',
        `{${Array.from({ length: integer(random, 1, 20_000) }, (_, i) => `"k${i}":${i}`).join(',')}}`,
      )
    case 10: // duplicated keys, the last of which is odd
      return `${text.slice(0, -1)},${JSON.stringify(pick(random, keys))}:${pick(random, ODD_VALUES)}}`
    case 11: // garbage characters spliced in
      return splice(random, text, pick(random, ['\u0000', '\uffff', '\\', '"', '}', ']', '\n', '\ud800']))
    case 12: // a long method name or id
      return withField(
        pick(random, ['method', 'id']),
        JSON.stringify('m'.repeat(integer(random, 256, 70_000))),
      )
    default: // several mutations at once
      return mutateJson(random, safeParseObject(mutateJson(random, base, maxBytes)) ?? base, maxBytes)
  }
}

function splice(random: Random, text: string, insert: string): string {
  const at = integer(random, 0, text.length)
  return text.slice(0, at) + insert + text.slice(at)
}

/** The object a mutation left, when it is one that the next mutation can still serialise. */
function safeParseObject(text: string): Record<string, unknown> | undefined {
  if (text.length > 100_000) return undefined
  const parsed = parseJsonBounded(text)
  if (!parsed.ok) return undefined
  const value = parsed.value
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined
}

/** Bytes that are no JSON at all: random bytes, invalid UTF-8, a text with its tail cut off. */
export function hostileBytes(random: Random, maxBytes = 64 * 1024): Uint8Array {
  switch (integer(random, 0, 2)) {
    case 0:
      return Uint8Array.from({ length: integer(random, 0, maxBytes) }, () => integer(random, 0, 255))
    case 1:
      return Uint8Array.from({ length: integer(random, 1, 64) }, (_, i) => (i % 2 === 0 ? 0xc3 : 0x28))
    default:
      return new TextEncoder().encode(
        nestedText(integer(random, 1, 50_000)).slice(0, integer(random, 1, 100_000)),
      )
  }
}
