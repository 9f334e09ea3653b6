import { readFileSync, writeFileSync } from 'node:fs'
import * as z from 'zod/v4'
import { parseJsonBounded } from '../protocol/bounded-json.ts'
import { NexusError } from '../protocol/errors.ts'
import { type SignedManifest, SignedManifestSchema } from './manifest-signature.ts'

export const WHITELIST_FORMAT = 'nexus-whitelist/1'

/** A file of signed manifests: the whitelist itself offline, or the manifests a chain registry anchors. */
export const WhitelistFileSchema = z
  .object({
    format: z.literal(WHITELIST_FORMAT),
    manifests: z.array(SignedManifestSchema).max(10_000),
  })
  .strict()
export type WhitelistFile = z.infer<typeof WhitelistFileSchema>

export function parseWhitelistFile(input: unknown, where: string): WhitelistFile {
  const result = WhitelistFileSchema.safeParse(input)
  if (!result.success)
    throw new NexusError(
      'UNTRUSTED_MANIFEST',
      `invalid whitelist ${where}:\n${z.prettifyError(result.error)}`,
    )
  return result.data
}

export function readJsonFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
  const parsed = parseJsonBounded(text)
  if (!parsed.ok) throw new NexusError('INVALID_CONFIG', `cannot read ${path}: ${parsed.message}`)
  return parsed.value
}

export function readWhitelistFile(path: string): WhitelistFile {
  return parseWhitelistFile(readJsonFile(path), path)
}

export function writeWhitelistFile(path: string, manifests: SignedManifest[]): void {
  const file: WhitelistFile = { format: WHITELIST_FORMAT, manifests }
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`)
}
