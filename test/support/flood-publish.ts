import type { NexusPeer } from '../../protocol/peer.ts'

/**
 * Publishes as a hostile peer would: to every connected subscriber at once. Nexus peers publish periodic records
 * through the mesh, and there the first honest peer would judge a bad record and stop it, so the peer under test
 * would never see it. (The service takes per-call options; the interface libp2p publishes for it omits them.)
 */
export async function floodPublish(peer: NexusPeer, topic: string, data: Uint8Array): Promise<void> {
  const pubsub = peer.services.pubsub as unknown as {
    publish(topic: string, data: Uint8Array, opts: { floodPublish: boolean }): Promise<unknown>
  }
  await pubsub.publish(topic, data, { floodPublish: true })
}
