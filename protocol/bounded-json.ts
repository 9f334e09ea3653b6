import { NexusError } from './errors.ts'

/**
 * JSON from outside the process, parsed with a bound on its nesting depth.
 *
 * V8's `JSON.parse` is iterative and takes any depth, but nearly everything that later walks the value is
 * recursive — `JSON.stringify`, canonical JSON, zod, pino — and throws `RangeError: Maximum call stack size
 * exceeded` somewhere far from where the input came in (a few thousand levels are enough). So every JSON
 * document that crosses a trust boundary is measured before it is parsed, and one that nests deeper than
 * its limit is refused there, with an error that says so.
 *
 * The depth scan skips the insides of strings with native `indexOf`, so it costs little next to the parse
 * itself (strings are most of the bytes of large MCP messages).
 */

/** Far beyond any real MCP message or JSON Schema, far below what recursive walkers survive. */
export const DEFAULT_MAX_JSON_DEPTH = 128

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const COLON = 0x3a

export type JsonParse =
  | { ok: true; value: unknown }
  | {
      ok: false
      reason: 'malformed' | 'too-deep'
      /** Says what was wrong, never an exception's text. */
      message: string
      /** The top-level `id` of a JSON-RPC message that was too deep, so that it can still be answered. */
      id?: string | number
    }

/** Parses `text` when it is JSON nested at most `maxDepth` levels; otherwise says why not. */
export function parseJsonBounded(text: string, maxDepth = DEFAULT_MAX_JSON_DEPTH): JsonParse {
  if (text.length > 2 * maxDepth && exceedsDepth(text, maxDepth)) {
    return {
      ok: false,
      reason: 'too-deep',
      message: `the JSON nests deeper than ${maxDepth} levels`,
      id: topLevelId(text),
    }
  }
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch {
    return { ok: false, reason: 'malformed', message: 'the text is not valid JSON' }
  }
}

const decoder = new TextDecoder()

export function decodeJsonBounded(bytes: Uint8Array, maxDepth = DEFAULT_MAX_JSON_DEPTH): JsonParse {
  return parseJsonBounded(decoder.decode(bytes), maxDepth)
}

/** Like `parseJsonBounded`, but throws a `NexusError` (code `MALFORMED_INPUT`) naming `what` was refused. */
export function parseJsonOrThrow(text: string, what: string, maxDepth = DEFAULT_MAX_JSON_DEPTH): unknown {
  const parsed = parseJsonBounded(text, maxDepth)
  if (parsed.ok) return parsed.value
  throw new NexusError('MALFORMED_INPUT', `${what}: ${parsed.message}`)
}

/**
 * Whether brackets outside strings nest deeper than `maxDepth`. Meant for text about to be parsed: on text
 * that is not JSON its answer does not matter, since the parse refuses it anyway.
 */
export function exceedsDepth(text: string, maxDepth: number): boolean {
  let depth = 0
  const length = text.length
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      i = closingQuote(text, i)
      if (i < 0) return false
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) return true
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
    }
  }
  return false
}

/** The index of the quote that ends the string opened at `open`, or -1 when it never ends. */
function closingQuote(text: string, open: number): number {
  let from = open + 1
  for (;;) {
    const quote = text.indexOf('"', from)
    if (quote < 0) return -1
    // A quote preceded by an odd run of backslashes is escaped. Each backslash is counted for one quote only.
    let backslashes = 0
    for (let j = quote - 1; text.charCodeAt(j) === BACKSLASH; j--) backslashes++
    if (backslashes % 2 === 0) return quote
    from = quote + 1
  }
}

/**
 * The value of the `"id"` member of the top-level object, read without parsing the rest (which may nest
 * without bound): a string or a number, else undefined.
 */
function topLevelId(text: string): string | number | undefined {
  let depth = 0
  const length = text.length
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      const end = closingQuote(text, i)
      if (end < 0) return undefined
      if (depth === 1 && end - i === 3 && text.startsWith('"id"', i)) {
        const colon = skipSpace(text, end + 1)
        if (text.charCodeAt(colon) === COLON) return scalarAt(text, skipSpace(text, colon + 1))
      }
      i = end
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
    }
  }
  return undefined
}

function skipSpace(text: string, from: number): number {
  let i = from
  while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++
  return i
}

/** A JSON string or number starting at `at` (at most 256 characters long), else undefined. */
function scalarAt(text: string, at: number): string | number | undefined {
  let end: number
  if (text.charCodeAt(at) === QUOTE) {
    end = closingQuote(text, at) + 1
    if (end <= 0) return undefined
  } else {
    end = at
    while (end < text.length && '-+.eE0123456789'.includes(text[end]!)) end++
  }
  if (end === at || end - at > 256) return undefined
  try {
    const value: unknown = JSON.parse(text.slice(at, end))
    return typeof value === 'string' || typeof value === 'number' ? value : undefined
  } catch {
    return undefined
  }
}

/**
 * Whether a value already parsed (from YAML, say) nests deeper than `maxDepth`, found without recursion: for
 * inputs whose parser gives no chance to measure the text first.
 */
export function valueExceedsDepth(value: unknown, maxDepth = DEFAULT_MAX_JSON_DEPTH): boolean {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }]
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop()!
    if (typeof current !== 'object' || current === null) continue
    if (depth + 1 > maxDepth) return true
    for (const child of Object.values(current)) stack.push({ value: child, depth: depth + 1 })
  }
  return false
}
