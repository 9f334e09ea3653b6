import type { ConnectionGater, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { NexusPeer } from '../protocol/peer.ts'

/**
 * Network partitions for failure tests: pairs of peers that cannot reach each other until healed. Each peer
 * of a test network gets a connection gater from here, so a cut pair can neither dial nor accept the other,
 * whatever transport, service (gossipsub, DHT, identify) or redial loop tries.
 */
export class Partitions {
  readonly #cut = new Set<string>()

  /** The gater for the peer `self`: it refuses every connection to or from a peer cut off from it. */
  gaterFor(self: string): ConnectionGater {
    const denied = (remote: PeerId) => this.isCut(self, remote.toString())
    return {
      denyDialPeer: denied,
      denyInboundEncryptedConnection: denied,
      denyOutboundEncryptedConnection: denied,
    }
  }

  isCut(a: string, b: string): boolean {
    return this.#cut.has(pairKey(a, b))
  }

  /** Cuts two peers apart: no new connection between them, and the open ones drop at once, like a cable. */
  cut(a: NexusPeer, b: NexusPeer): void {
    this.#cut.add(pairKey(a.peerId.toString(), b.peerId.toString()))
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const connection of from.getConnections(peerIdFromString(to.peerId.toString())))
        connection.abort(new Error('network partition'))
    }
  }

  /** Lets every cut pair reach each other again; they reconnect by their own means (redial, gossip, DHT). */
  heal(): void {
    this.#cut.clear()
  }
}

const pairKey = (a: string, b: string) => (a < b ? `${a} ${b}` : `${b} ${a}`)
