import { writeFileSync } from 'node:fs'
import * as z from 'zod/v4'
import { NexusError } from '../protocol/errors.ts'
import { parseManifest } from '../protocol/manifest.ts'
import { type SignedManifest, SignedManifestSchema } from './manifest-signature.ts'
import { parseWhitelistFile, readJsonFile, WHITELIST_FORMAT } from './whitelist-file.ts'

/** A file the CLI reads: a bare manifest, one signed manifest, or a whitelist of signed manifests. */
export type ManifestDocument =
  | { kind: 'manifest'; manifests: SignedManifest[] }
  | { kind: 'signed'; manifests: SignedManifest[] }
  | { kind: 'whitelist'; manifests: SignedManifest[] }

export function readManifestDocument(path: string): ManifestDocument {
  const raw = readJsonFile(path) as Record<string, unknown>
  if (typeof raw !== 'object' || raw === null)
    throw new NexusError('INVALID_CONFIG', `${path} is not a JSON object`)
  if ('format' in raw) return { kind: 'whitelist', manifests: parseWhitelistFile(raw, path).manifests }
  if ('manifest' in raw) {
    const result = SignedManifestSchema.safeParse(raw)
    if (!result.success)
      throw new NexusError(
        'UNTRUSTED_MANIFEST',
        `invalid signed manifest ${path}:\n${z.prettifyError(result.error)}`,
      )
    return { kind: 'signed', manifests: [result.data] }
  }
  return { kind: 'signed', manifests: [{ manifest: parseManifest(raw, `manifest ${path}`), signatures: [] }] }
}

/** Writes a document back in the shape it was read (a bare manifest becomes a signed one once signed). */
export function manifestDocumentJson(document: ManifestDocument): string {
  const body =
    document.kind === 'whitelist'
      ? { format: WHITELIST_FORMAT, manifests: document.manifests }
      : document.kind === 'manifest'
        ? document.manifests[0]!.manifest
        : document.manifests[0]
  return `${JSON.stringify(body, null, 2)}\n`
}

export function writeOutput(path: string | undefined, text: string): void {
  if (path === undefined) process.stdout.write(text)
  else writeFileSync(path, text)
}
