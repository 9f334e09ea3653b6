import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import type { GatewayConfigInput } from '../gateway/config.ts'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import type { NodeConfigInput, ServerConfigInput } from '../node/config.ts'
import { NexusNode } from '../node/nexus-node.ts'
import type { PeerTransport } from '../protocol/peer.ts'
import type { TrustConfigInput } from '../trust/trust-config.ts'
import { Partitions } from './partitions.ts'

export interface NetworkOptions {
  /** How many nodes, each hosting `servers`; or one configuration per node. */
  nodes?: number | NodeConfigInput[]
  servers?: ServerConfigInput[]
  gateways?: number
  transport?: PeerTransport
  /** Overrides for every gateway's configuration. */
  gateway?: GatewayConfigInput
  /** Overrides for every node's configuration. */
  node?: Omit<NodeConfigInput, 'servers'>
  logger?: Logger
  /**
   * `every-node` (default): each gateway dials every node. `first-node`: every peer joins through the first
   * node only, so the rest of the network is reached through gossip and the DHT, as in a real deployment.
   */
  joinThrough?: 'every-node' | 'first-node'
  /**
   * Whitelist settings for every peer. By default the embedded whitelist is enforced; when some node hosts a
   * server by launch configuration (a test fixture, not a signed manifest), unverified servers are allowed.
   */
  trust?: TrustConfigInput
  /** How long to wait for every gateway to learn about every server. */
  readyTimeoutMs?: number
}

export interface TestNetwork {
  nodes: NexusNode[]
  gateways: NexusGateway[]
  /** The first gateway. */
  gateway: NexusGateway
  /** Waits until every gateway knows a live host for each server. */
  waitForServers(serverIds: string[], timeoutMs?: number): Promise<void>
  /**
   * Cuts two peers of the network apart, as a network partition would: their connections drop at once and
   * neither can reach the other (directly) until `heal()`.
   */
  partition(a: NetworkPeer, b: NetworkPeer): void
  /** Ends every partition; the peers find each other again by their own means. */
  heal(): void
  stop(): Promise<void>
}

export type NetworkPeer = NexusNode | NexusGateway

/** A fresh identity for a peer, and the gater that lets test partitions cut it off from others. */
async function identity(partitions: Partitions) {
  const privateKey = await generateKeyPair('Ed25519')
  return { privateKey, connectionGater: partitions.gaterFor(peerIdFromPrivateKey(privateKey).toString()) }
}

/**
 * Starts a whole Nexus network in this process — nodes hosting real MCP servers and gateways serving HTTP on
 * loopback — joined over real libp2p (the in-memory transport by default), and waits until it is ready.
 * `stop()` releases everything: peers, servers, sockets, timers.
 */
export async function startNetwork(options: NetworkOptions = {}): Promise<TestNetwork> {
  const transport = options.transport ?? 'memory'
  const nodeConfigs =
    typeof options.nodes === 'object'
      ? options.nodes
      : Array.from(
          { length: options.nodes ?? 1 },
          (): NodeConfigInput => ({ servers: options.servers ?? [] }),
        )
  const unverified = nodeConfigs.some((c) => (c.servers ?? []).some((s) => 'transport' in s))
  const trust = options.trust ?? (unverified ? { allowUnverified: true } : {})
  const nodes: NexusNode[] = []
  const gateways: NexusGateway[] = []
  const partitions = new Partitions()
  const stop = async () => {
    await Promise.allSettled(gateways.map((g) => g.stop()))
    await Promise.allSettled(nodes.map((n) => n.stop()))
  }
  try {
    const throughFirst = options.joinThrough === 'first-node'
    for (const config of nodeConfigs) {
      const bootstrap = throughFirst && nodes.length > 0 ? [nodes[0]!.multiaddrs[0]!] : []
      const node = new NexusNode(
        {
          trust,
          ...options.node,
          ...config,
          transport,
          bootstrap: [...bootstrap, ...(config.bootstrap ?? [])],
        },
        { logger: options.logger?.child({ component: 'node' }), ...(await identity(partitions)) },
      )
      nodes.push(node)
      await node.start()
    }
    const bootstrap = throughFirst
      ? nodes.slice(0, 1).map((n) => n.multiaddrs[0]!)
      : nodes.map((n) => n.multiaddrs[0]!)
    for (let i = 0; i < (options.gateways ?? 1); i++) {
      const gateway = new NexusGateway(
        {
          trust,
          // The helper is for tests and the local demo: agents come in anonymously, without rate limits, unless
          // a test sets auth or limits.
          auth: { anonymous: true },
          limits: { requestsPerSecond: 0, sessionsPerPrincipal: 1_000_000 },
          shutdownTimeoutMs: 2_000,
          ...options.gateway,
          transport,
          bootstrap,
          http: { port: 0, ...options.gateway?.http },
        },
        { logger: options.logger?.child({ component: 'gateway' }), ...(await identity(partitions)) },
      )
      gateways.push(gateway)
      await gateway.start()
    }
    const waitForServers = async (serverIds: string[], timeoutMs = options.readyTimeoutMs ?? 15_000) => {
      await Promise.all(gateways.flatMap((g) => serverIds.map((id) => g.view.waitForServer(id, timeoutMs))))
    }
    const served = [...new Set(nodeConfigs.flatMap((c) => (c.servers ?? []).map((s) => s.id)))]
    await waitForServers(served)
    return {
      nodes,
      gateways,
      gateway: gateways[0]!,
      waitForServers,
      partition: (a, b) => partitions.cut(a.peer, b.peer),
      heal: () => partitions.heal(),
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
