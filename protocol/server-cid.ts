import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

/**
 * The DHT key under which nodes provide a server: one per `server-id@version`, and one per server id for
 * gateways that do not know which version the network runs.
 */
export async function serverCid(serverId: string, version?: string): Promise<CID> {
  const name = version === undefined ? `nexus/server/${serverId}` : `nexus/server/${serverId}@${version}`
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(name)))
}
