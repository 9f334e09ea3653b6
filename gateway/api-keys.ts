import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import * as z from 'zod/v4'
import { parseJsonBounded } from '../protocol/bounded-json.ts'
import { NexusError } from '../protocol/errors.ts'

/**
 * API keys: `nxk_<id>_<secret>`, 32 random bytes of secret. Only SHA-256 of the whole key is stored (the key
 * has 256 bits of entropy, so a fast hash is enough), next to the principal it proves and its scopes. The
 * key itself is shown once, when it is created.
 */
const KEY_PATTERN = /^nxk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/

export const ApiKeyRecordSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  principal: z.string().min(1).max(256),
  scopes: z.array(z.string().max(256)).max(256),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  revokedAt: z.string().optional(),
})
export type ApiKeyRecord = z.infer<typeof ApiKeyRecordSchema>

const KeyFileSchema = z.object({ keys: z.array(ApiKeyRecordSchema) })

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

export function readKeyFile(path: string): ApiKeyRecord[] {
  if (!existsSync(path)) return []
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot read API key file ${path}: ${(err as Error).message}`)
  }
  const parsed = parseJsonBounded(text)
  if (!parsed.ok)
    throw new NexusError('INVALID_CONFIG', `cannot read API key file ${path}: ${parsed.message}`)
  const result = KeyFileSchema.safeParse(parsed.value)
  if (!result.success)
    throw new NexusError('INVALID_CONFIG', `invalid API key file ${path}:\n${z.prettifyError(result.error)}`)
  return result.data.keys
}

function writeKeyFile(path: string, keys: ApiKeyRecord[]): void {
  // Written whole and renamed into place, so a gateway never reads half a file.
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 })
  renameSync(temporary, path)
}

/** Creates a key, stores its hash, and returns the key: the only time it is ever seen. */
export function createApiKey(
  path: string,
  principal: string,
  scopes: string[],
): { key: string; record: ApiKeyRecord } {
  const id = randomBytes(8).toString('hex')
  const key = `nxk_${id}_${randomBytes(32).toString('base64url')}`
  const record: ApiKeyRecord = {
    id,
    principal,
    scopes,
    sha256: sha256(key),
    createdAt: new Date().toISOString(),
  }
  writeKeyFile(path, [...readKeyFile(path), record])
  return { key, record }
}

export function revokeApiKey(path: string, id: string): ApiKeyRecord {
  const keys = readKeyFile(path)
  const record = keys.find((k) => k.id === id)
  if (record === undefined) throw new NexusError('INVALID_CONFIG', `no API key ${id} in ${path}`)
  record.revokedAt ??= new Date().toISOString()
  writeKeyFile(path, keys)
  return record
}

/** The key file as the gateway sees it: re-read when it changes, so revocations apply without a restart. */
export class ApiKeyStore {
  readonly #path: string
  #version = ''
  #byId = new Map<string, ApiKeyRecord>()

  constructor(path: string) {
    this.#path = path
    this.#reload()
  }

  /** The key's record, or why it is refused. */
  verify(key: string): { record: ApiKeyRecord } | { error: string } {
    const match = KEY_PATTERN.exec(key)
    if (match === null) return { error: 'malformed API key' }
    this.#refresh()
    const record = this.#byId.get(match[1]!)
    const expected = Buffer.from(record?.sha256 ?? '0'.repeat(64), 'hex')
    const actual = Buffer.from(sha256(key), 'hex')
    if (record === undefined || !timingSafeEqual(expected, actual)) return { error: 'unknown API key' }
    if (record.revokedAt !== undefined) return { error: 'revoked API key' }
    return { record }
  }

  /** A stat per request (microseconds): a revoked key stops working at once. */
  #refresh(): void {
    if (this.#fileVersion() !== this.#version) this.#reload()
  }

  #fileVersion(): string {
    if (!existsSync(this.#path)) return 'none'
    const stat = statSync(this.#path)
    return `${stat.mtimeMs}:${stat.size}:${stat.ino}`
  }

  #reload(): void {
    this.#version = this.#fileVersion()
    this.#byId = new Map(readKeyFile(this.#path).map((k) => [k.id, k]))
  }
}
