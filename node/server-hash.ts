import { createHash } from 'node:crypto'
import { canonicalJson } from '../protocol/canonical-json.ts'
import type { ServerConfig } from './config.ts'

/**
 * The hash a node announces for a server: SHA-256 of the canonical JSON of what it runs (id, version,
 * transport, package or command, arguments, environment names). Operational knobs such as the warm pool size
 * do not count. The whitelist's signed manifests replace this with the manifest hash.
 */
export function serverHash(config: ServerConfig): string {
  const launch = {
    id: config.id,
    version: config.version,
    transport: config.transport,
    package: config.package,
    bin: config.bin,
    command: config.command,
    args: config.args,
    env: Object.keys(config.env).sort(),
    passEnv: config.passEnv,
    url: config.transport === 'streamable-http' ? config.url : undefined,
  }
  return `0x${createHash('sha256').update(canonicalJson(launch)).digest('hex')}`
}
