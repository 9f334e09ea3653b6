import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { type GossipSub, gossipsub } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import { identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { memory } from '@libp2p/memory'
import { type Ping, ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { errorMessage, NexusError } from './errors.ts'

/** `memory` runs whole networks inside one process (tests); `tcp` is for real deployments. */
export type PeerTransport = 'tcp' | 'memory'

export interface PeerOptions {
  transport?: PeerTransport
  /** Multiaddrs to listen on; defaults to an ephemeral loopback TCP port or a unique memory address. */
  listen?: string[]
  /** Multiaddrs (with /p2p/<peer-id>) dialled at start. */
  bootstrap?: string[]
  privateKey?: PrivateKey
  maxConnections?: number
}

export type NexusServices = { identify: Identify; ping: Ping; pubsub: GossipSub }
export type NexusPeer = Libp2p<NexusServices>

let memoryAddressCounter = 0

function defaultListen(transport: PeerTransport): string[] {
  if (transport === 'memory') return [`/memory/nexus-${process.pid}-${++memoryAddressCounter}-${Date.now()}`]
  return ['/ip4/127.0.0.1/tcp/0']
}

/** Creates and starts the libp2p peer that nodes and gateways share: noise, yamux, identify, ping, gossipsub. */
export async function createPeer(options: PeerOptions = {}): Promise<NexusPeer> {
  const transport = options.transport ?? 'tcp'
  const peer = await createLibp2p({
    privateKey: options.privateKey,
    addresses: { listen: options.listen ?? defaultListen(transport) },
    transports: [transport === 'memory' ? memory() : tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { maxConnections: options.maxConnections ?? 300 },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // Announcements are small and frequent; flood-publishing our own gets them to direct peers at once.
        floodPublish: true,
      }),
    },
  })
  for (const address of options.bootstrap ?? []) {
    try {
      await peer.dial(multiaddr(address), { signal: AbortSignal.timeout(10_000) })
    } catch (err) {
      await peer.stop()
      throw new NexusError('INVALID_CONFIG', `cannot reach bootstrap peer ${address}: ${errorMessage(err)}`, {
        cause: err,
      })
    }
  }
  return peer
}
