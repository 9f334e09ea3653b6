import { publishOn } from '../../protocol/gossip-records.ts'
import type { NexusPeer } from '../../protocol/peer.ts'

/**
 * Publishes as a hostile peer would: to every connected subscriber at once. Nexus peers publish periodic records
 * through the mesh, and there the first honest peer would judge a bad record and stop it, so the peer under test
 * would never see it.
 */
export async function floodPublish(peer: NexusPeer, topic: string, data: Uint8Array): Promise<void> {
  await publishOn(peer, topic, data, { flood: true })
}
