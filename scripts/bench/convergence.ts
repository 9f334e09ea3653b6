/**
 * Announcement convergence in networks of peers in this process (libp2p's memory transport: real libp2p,
 * noise, yamux, gossipsub and DHT, no sockets), each `peers:announceIntervalMs` of `BENCH_CONVERGENCE`. Every
 * peer joined through one node, as in a deployment, and learnt the rest through gossip and the DHT. All peers
 * share this process's one core, so the process's CPU use and event-loop delay are reported with each run:
 * they say whether the simulated network had the CPU it needed.
 *
 * - `join`: one more node starts (the 51st peer, which leaves again after each trial); from its start until every
 *   other peer holds its announcement.
 * - `steady`: every announcement the nodes publish in a window; from its timestamp until the last of the
 *   other peers accepted it, and the share of (announcement, peer) pairs delivered at all.
 */
import { EventEmitter } from 'node:events'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { NexusNode } from '../../node/nexus-node.ts'
import { decodeAnnouncement } from '../../protocol/announcement.ts'
import { ANNOUNCE_TOPIC } from '../../protocol/names.ts'
import type { NexusPeer } from '../../protocol/peer.ts'
import { fixtureServerConfig } from '../../test/support/fixture-server.ts'
import { waitFor } from '../../test/support/wait.ts'
import { startNetwork } from '../../testing/network.ts'
import { distribution, round } from './stats.ts'

/** `peers:announceIntervalMs` pairs, one network each. */
const CONFIGS = (process.env.BENCH_CONVERGENCE ?? '20:2000,50:10000').split(',').map((pair) => {
  const [peers, intervalMs] = pair.split(':').map(Number)
  return { peers: peers!, intervalMs: intervalMs! }
})
const GATEWAYS = 5
const JOIN_TRIALS = Number(process.env.BENCH_JOIN_TRIALS ?? 10)
const JOIN_TIMEOUT_MS = 30_000
const SETTLE_TIMEOUT_MS = 120_000
const STEADY_WINDOW_MS = 10_000
// Nodes host the fixture without starting a process until a session asks for one.
const SERVER = { ...fixtureServerConfig(), warmPool: 0 }

/** When each peer first accepted each announcement: `publisher/seq` → receiver → Date.now(). */
class Deliveries {
  readonly seen = new Map<string, Map<string, number>>()
  readonly published = new Map<string, { peerId: string; timestamp: number }>()
  /** Publisher → the peers that hold some announcement of it. */
  readonly holders = new Map<string, Set<string>>()
  /** Fires after every delivery; waiters re-check their condition. */
  readonly events = new EventEmitter()

  watch(peer: NexusPeer): void {
    const receiver = peer.peerId.toString()
    peer.services.pubsub.addEventListener('message', (evt) => {
      if (evt.detail.topic !== ANNOUNCE_TOPIC) return
      const announcement = decodeAnnouncement(evt.detail.data)
      if (announcement === undefined) return
      const key = `${announcement.peerId}/${announcement.seq}`
      this.published.set(key, { peerId: announcement.peerId, timestamp: announcement.timestamp })
      const receivers = getOrCreate(this.seen, key, () => new Map<string, number>())
      if (!receivers.has(receiver)) receivers.set(receiver, Date.now())
      getOrCreate(this.holders, announcement.peerId, () => new Set<string>()).add(receiver)
      this.events.emit('delivery')
    })
  }
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key)
  if (value === undefined) {
    value = create()
    map.set(key, value)
  }
  return value
}

/** The process's CPU use (in cores) and event-loop delay while `during` runs. */
async function processLoad(during: () => Promise<void>) {
  const lag = monitorEventLoopDelay({ resolution: 10 })
  lag.enable()
  const cpuBefore = process.cpuUsage()
  const wallBefore = performance.now()
  await during()
  const cpu = process.cpuUsage(cpuBefore)
  lag.disable()
  return {
    cpuCoresBusy: round((cpu.user + cpu.system) / 1000 / (performance.now() - wallBefore), 2),
    eventLoopDelayP50Ms: round(lag.percentile(50) / 1e6),
    eventLoopDelayP99Ms: round(lag.percentile(99) / 1e6),
  }
}

async function measure(peerCount: number, intervalMs: number) {
  const deliveries = new Deliveries()
  const startedAt = performance.now()
  const network = await startNetwork({
    nodes: peerCount - GATEWAYS,
    gateways: GATEWAYS,
    servers: [SERVER],
    joinThrough: 'first-node',
    node: { announceIntervalMs: intervalMs },
    readyTimeoutMs: SETTLE_TIMEOUT_MS,
  })
  const config = {
    peers: peerCount,
    nodes: network.nodes.length,
    gateways: GATEWAYS,
    announceIntervalMs: intervalMs,
  }
  try {
    const peers = [...network.nodes.map((n) => n.peer), ...network.gateways.map((g) => g.peer)]
    for (const peer of peers) deliveries.watch(peer)
    const nodeCount = network.nodes.length
    const settled = await Promise.all(
      network.gateways.map((g) =>
        waitFor(() => g.view.hostsOf(SERVER.id).length === nodeCount, g.view, 'change', SETTLE_TIMEOUT_MS),
      ),
    ).then(
      () => true,
      () => false,
    )
    if (!settled) return { ...config, settled, settleTimeoutMs: SETTLE_TIMEOUT_MS }
    const settledMs = performance.now() - startedAt

    // Steady state: every announcement published in the window, to every other peer.
    const windowStart = Date.now() + 1_000
    const windowEnd = windowStart + STEADY_WINDOW_MS
    const load = await processLoad(
      () => new Promise((resolve) => setTimeout(resolve, windowEnd - Date.now() + 3 * intervalMs)),
    )
    const steady: number[] = []
    let pairs = 0
    let delivered = 0
    for (const [key, { peerId, timestamp }] of deliveries.published) {
      if (timestamp < windowStart || timestamp > windowEnd) continue
      const receivers = deliveries.seen.get(key)!
      const others = peers.length - 1
      pairs += others
      delivered += receivers.size
      if (receivers.size === others && !receivers.has(peerId))
        steady.push(Math.max(...receivers.values()) - timestamp)
    }

    // Joins: one more node bootstraps through a random existing one; time until every other peer holds its
    // record. It leaves again before the next one joins, so the network keeps its size.
    const joins: number[] = []
    let joinsNotConverged = 0
    for (let i = 0; i < JOIN_TRIALS; i++) {
      const through = network.nodes[Math.floor(Math.random() * network.nodes.length)]!
      const node = new NexusNode({
        transport: 'memory',
        trust: { allowUnverified: true },
        bootstrap: [through.multiaddrs[0]!],
        announceIntervalMs: intervalMs,
        servers: [SERVER],
      })
      const t0 = performance.now()
      await node.start()
      try {
        const id = node.peerId
        await waitFor(
          () => peers.every((p) => deliveries.holders.get(id)?.has(p.peerId.toString())),
          deliveries.events,
          'delivery',
          JOIN_TIMEOUT_MS,
        )
        joins.push(performance.now() - t0)
      } catch {
        joinsNotConverged++
      } finally {
        await node.stop()
      }
    }
    return {
      ...config,
      settled,
      networkSettledMs: round(settledMs),
      join: { ...distribution(joins), notConvergedIn30s: joinsNotConverged },
      steady: { ...distribution(steady), deliveredShare: round(delivered / Math.max(1, pairs), 4) },
      process: load,
    }
  } finally {
    await network.stop()
  }
}

export async function benchConvergence() {
  const runs = []
  for (const { peers, intervalMs } of CONFIGS) runs.push(await measure(peers, intervalMs))
  return { transport: 'memory (every peer in one process)', runs }
}
