import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { DEFAULT_MAX_JSON_DEPTH, parseJsonBounded, valueExceedsDepth } from './bounded-json.ts'
import { errorMessage, NexusError } from './errors.ts'

/** Variables of the `NEXUS_` family that are not configuration fields. */
const NOT_CONFIG = new Set(['NEXUS_LOG_LEVEL', 'NEXUS_PRIVATE_KEY', 'NEXUS_KEYSTORE_PASSWORD'])

function camel(segment: string): string {
  return segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

/** A JSON value when the text is one (numbers, booleans, arrays, objects), the text itself otherwise. */
function parseValue(text: string): unknown {
  const parsed = parseJsonBounded(text)
  return parsed.ok ? parsed.value : text
}

/**
 * Overrides configuration fields from the environment: `<prefix>HTTP__PORT=9000` sets `http.port`,
 * `<prefix>AUTH__API_KEYS=/etc/keys.json` sets `auth.apiKeys` (`__` nests, words in snake case). Values are
 * JSON when they parse as JSON. The result is validated by the configuration's schema like the file itself.
 */
export function applyEnvOverrides<T extends object>(
  config: T,
  prefix: string,
  env: NodeJS.ProcessEnv = process.env,
): T {
  const result = structuredClone(config) as Record<string, unknown>
  for (const [name, value] of Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!name.startsWith(prefix) || value === undefined || NOT_CONFIG.has(name)) continue
    const path = name.slice(prefix.length).split('__').map(camel)
    if (path.some((p) => p === '')) throw new NexusError('INVALID_CONFIG', `${name}: malformed variable name`)
    let target = result
    for (const key of path.slice(0, -1)) {
      const next = target[key]
      if (next !== undefined && (typeof next !== 'object' || next === null || Array.isArray(next)))
        throw new NexusError('INVALID_CONFIG', `${name}: ${path.join('.')} does not name a nested field`)
      target[key] ??= {}
      target = target[key] as Record<string, unknown>
    }
    target[path[path.length - 1]!] = parseValue(value)
  }
  return result as T
}

/**
 * A peer's configuration as written: the YAML file (if any) with the environment's overrides applied, not
 * yet validated (the peer validates it, naming every offending field).
 */
export function loadRawConfig(path: string | undefined, envPrefix: string): Record<string, unknown> {
  let raw: unknown = {}
  if (path !== undefined) {
    try {
      raw = parseYaml(readFileSync(path, 'utf8')) ?? {}
    } catch (err) {
      // The YAML parser recurses: a document nested thousands deep overflows its stack, which says nothing useful.
      const reason = /call stack/.test(errorMessage(err)) ? 'it nests too deep' : errorMessage(err)
      throw new NexusError('INVALID_CONFIG', `cannot read ${path}: ${reason}`, { cause: err })
    }
    if (valueExceedsDepth(raw))
      throw new NexusError(
        'INVALID_CONFIG',
        `${path}: the configuration nests deeper than ${DEFAULT_MAX_JSON_DEPTH} levels`,
      )
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new NexusError('INVALID_CONFIG', `${path}: the configuration must be a YAML mapping`)
  }
  return applyEnvOverrides(raw as Record<string, unknown>, envPrefix)
}
