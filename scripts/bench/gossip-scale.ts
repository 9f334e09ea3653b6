/**
 * Announcement delivery in networks of 50 and 100 peers spread over `BENCH_GOSSIP_PROCESSES` (4) processes
 * (`gossip-group.ts`), over TCP on loopback: real libp2p, noise, yamux, gossipsub and the DHT, each process
 * with its own event loop. Every peer joined through one seed node and learnt the rest by gossip and the DHT.
 * The processes share this machine's cores, so the CPU they used and their event-loop delay are reported.
 *
 * - `steady`: once formation is over (`untilQuiet`), every announcement published in a 30 s window
 *   (`BENCH_GOSSIP_WINDOW_MS`): the share of (announcement, other peer) pairs
 *   delivered, and for each announcement the time from its timestamp until the last other peer accepted it.
 * - `join`: a node starts through a random peer (and leaves after each trial); from its start until every
 *   other peer accepted one of its announcements.
 *
 * `BENCH_GOSSIP` lists `peers:announceIntervalMs` pairs (default `50:10000,100:10000`).
 */
import { type ChildProcess, fork } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'
import { CONNECTION_TRIM_DEFAULTS } from '../../protocol/connection-trimmer.ts'
import type { Delivery, GroupReply, GroupRequest, PeerLinks } from './gossip-group.ts'
import { STALL_MIN_MS } from './stall-watch.ts'
import { distribution, round } from './stats.ts'

const CONFIGS = (process.env.BENCH_GOSSIP ?? '50:10000,100:10000').split(',').map((pair) => {
  const [peers, intervalMs] = pair.split(':').map(Number)
  return { peers: peers!, intervalMs: intervalMs! }
})
const PROCESSES = Number(process.env.BENCH_GOSSIP_PROCESSES ?? 4)
const GATEWAYS = 5
const JOIN_TRIALS = Number(process.env.BENCH_JOIN_TRIALS ?? 10)
const JOIN_TIMEOUT_MS = 30_000
const SETTLE_TIMEOUT_MS = Number(process.env.BENCH_GOSSIP_SETTLE_MS ?? 180_000)
/** Announcements published in this window count for the steady figures (`BENCH_GOSSIP_WINDOW_MS`). */
const STEADY_WINDOW_MS = Number(process.env.BENCH_GOSSIP_WINDOW_MS ?? 30_000)
/** Profiles every group process over the steady window (CPU profiles written to this folder). */
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR
/** Whether peers trim idle connections (`BENCH_GOSSIP_TRIM=0`: no, for comparison; see ConnectionTrimmer). */
const TRIM = process.env.BENCH_GOSSIP_TRIM !== '0'
/** The steady window waits for formation to end; see `untilQuiet`. */
const QUIET_CHURN_PER_PEER_MINUTE = 1
const QUIET_SAMPLE_MS = 10_000
const QUIET_TIMEOUT_MS = 180_000
/**
 * Peers trim connections idle for `idleMs`, checking every `intervalMs`: the connections of the first DHT walks are
 * trimmed that long after the walks, so formation is not over before then (see `untilQuiet`).
 */
const FIRST_TRIM_MS = CONNECTION_TRIM_DEFAULTS.idleMs + CONNECTION_TRIM_DEFAULTS.intervalMs

/** A group process and its replies, one kind at a time. */
class Group {
  readonly child: ChildProcess
  readonly replies = new EventEmitter()

  constructor(args: string[], onDeliveries: (batch: Delivery[]) => void) {
    this.child = fork(new URL('./gossip-group.ts', import.meta.url), args, { execArgv: process.execArgv })
    this.child.on('message', (reply: GroupReply) => {
      if (reply.type === 'deliveries') onDeliveries(reply.batch)
      else this.replies.emit(reply.type, reply)
    })
  }

  async next<T extends GroupReply['type']>(type: T, timeoutMs = SETTLE_TIMEOUT_MS) {
    // Both waits end with the first to finish: a wait left behind keeps its listeners on the child process.
    const done = new AbortController()
    try {
      const [reply] = await Promise.race([
        once(this.replies, type, { signal: AbortSignal.any([done.signal, AbortSignal.timeout(timeoutMs)]) }),
        once(this.child, 'exit', { signal: done.signal }).then(([code]) =>
          Promise.reject(new Error(`gossip group exited (${code})`)),
        ),
      ])
      return reply as Extract<GroupReply, { type: T }>
    } finally {
      done.abort()
    }
  }

  async request<T extends GroupReply['type']>(request: GroupRequest, reply: T) {
    const answer = this.next(reply)
    this.child.send(request)
    return answer
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return
    const exited = once(this.child, 'exit')
    this.child.send({ type: 'stop' } satisfies GroupRequest)
    await exited
  }
}

/** What every peer accepted, and from whom. */
class Deliveries {
  readonly seen = new Map<string, Map<string, number>>()
  readonly published = new Map<string, { publisher: string; timestamp: number }>()
  readonly holders = new Map<string, Set<string>>()
  readonly events = new EventEmitter()

  add(batch: Delivery[]): void {
    for (const [key, publisher, timestamp, receiver, at] of batch) {
      this.published.set(key, { publisher, timestamp })
      const receivers = this.seen.get(key) ?? new Map<string, number>()
      this.seen.set(key, receivers)
      if (!receivers.has(receiver)) receivers.set(receiver, at)
      const holders = this.holders.get(publisher) ?? new Set<string>()
      this.holders.set(publisher, holders)
      holders.add(receiver)
    }
    this.events.emit('delivery')
  }

  /** Resolves once `done` holds after a delivery, or rejects after the timeout. */
  until(done: () => boolean, timeoutMs: number): Promise<void> {
    if (done()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.off('delivery', check)
        reject(new Error('timed out'))
      }, timeoutMs)
      const check = () => {
        if (!done()) return
        clearTimeout(timer)
        this.events.off('delivery', check)
        resolve()
      }
      this.events.on('delivery', check)
    })
  }
}

async function measure(peerCount: number, intervalMs: number) {
  const deliveries = new Deliveries()
  const groupCount = Math.min(PROCESSES, peerCount)
  const nodeCount = peerCount - GATEWAYS
  const nodesIn = (g: number) => Math.floor(nodeCount / groupCount) + (g < nodeCount % groupCount ? 1 : 0)
  const gatewaysIn = (g: number) => Math.floor(GATEWAYS / groupCount) + (g < GATEWAYS % groupCount ? 1 : 0)
  const started = performance.now()
  const args = (g: number, seed: string) => [
    String(nodesIn(g)),
    String(gatewaysIn(g)),
    String(intervalMs),
    TRIM ? 'trim' : 'keep',
    seed,
  ]
  const groups: Group[] = [new Group(args(0, ''), (batch) => deliveries.add(batch))]
  try {
    const first = await groups[0]!.next('ready')
    for (let g = 1; g < groupCount; g++) groups.push(new Group(args(g, first.seed), (b) => deliveries.add(b)))
    // Settled together: one group failing to start must not leave the others' waits unhandled.
    const readies = await Promise.allSettled(groups.slice(1).map((group) => group.next('ready')))
    const failed = readies.find((r) => r.status === 'rejected')
    if (failed !== undefined) throw new Error(`a gossip group did not start: ${failed.reason}`)
    const ready = [first, ...readies.map((r) => (r as PromiseFulfilledResult<Awaited<typeof first>>).value)]
    const peers = ready.flatMap((r) => r.peers)
    const nodes = new Set<string>()
    for (const [g, r] of ready.entries()) for (const id of r.peers.slice(0, nodesIn(g))) nodes.add(id)
    const config = {
      peers: peers.length,
      nodes: nodes.size,
      gateways: GATEWAYS,
      processes: groupCount,
      announceIntervalMs: intervalMs,
    }
    const everyoneKnowsEveryNode = () =>
      [...nodes].every((node) => (deliveries.holders.get(node)?.size ?? 0) >= peers.length - 1)
    for (const group of groups) await group.request({ type: 'load' }, 'load')
    const settleStarted = performance.now()
    const settled = await deliveries.until(everyoneKnowsEveryNode, SETTLE_TIMEOUT_MS).then(
      () => true,
      () => false,
    )
    if (!settled) {
      // How far it got: the share of (node, other peer) pairs where the peer holds an announcement of the node.
      const known = [...nodes].reduce((sum, node) => sum + (deliveries.holders.get(node)?.size ?? 0), 0)
      const settleLoads = await Promise.all(groups.map((group) => group.request({ type: 'load' }, 'load')))
      const settleMs = performance.now() - settleStarted
      const links = await allLinks(groups)
      const lagging = [...nodes].filter(
        (node) => (deliveries.holders.get(node)?.size ?? 0) < peers.length - 1,
      )
      return {
        ...config,
        settled,
        settleTimeoutMs: SETTLE_TIMEOUT_MS,
        knownShare: round(known / (nodes.size * (peers.length - 1)), 4),
        cpuCoresBusy: round(settleLoads.reduce((sum, l) => sum + l.cpuMicros, 0) / 1000 / settleMs, 2),
        nodesNotKnownEverywhere: lagging.length,
        peersMissingSome: peers
          .map((peer, index) => ({
            index,
            missing: [...nodes].filter((n) => n !== peer && !deliveries.holders.get(n)?.has(peer)).length,
            unheard: (deliveries.holders.get(peer)?.size ?? 0) === 0 && nodes.has(peer),
            ...links[peer],
          }))
          .filter((p) => p.missing > 0),
      }
    }
    const settledMs = performance.now() - started
    const quietStarted = performance.now()
    const quiet = await untilQuiet(groups, peers.length)
    const quietAfterSettledMs = performance.now() - quietStarted

    const loadsBefore: Load[] = []
    for (const group of groups) loadsBefore.push(await group.request({ type: 'load' }, 'load'))
    const windowStart = Date.now() + 1_000
    const windowEnd = windowStart + STEADY_WINDOW_MS
    const loadStarted = performance.now()
    if (PROFILE_DIR) for (const group of groups) await group.request({ type: 'profile-start' }, 'profile')
    await new Promise((resolve) => setTimeout(resolve, windowEnd - Date.now() + 3 * intervalMs))
    if (PROFILE_DIR) for (const group of groups) await group.request({ type: 'profile-stop' }, 'profile')
    const loads = await Promise.all(groups.map((group) => group.request({ type: 'load' }, 'load')))
    const loadMs = performance.now() - loadStarted
    const links = Object.values(await allLinks(groups))
    const steady: number[] = []
    let pairs = 0
    let delivered = 0
    for (const [key, { publisher, timestamp }] of deliveries.published) {
      if (timestamp < windowStart || timestamp > windowEnd) continue
      const receivers = deliveries.seen.get(key)!
      const others = peers.length - 1
      pairs += others
      delivered += receivers.size
      if (receivers.size === others && !receivers.has(publisher))
        steady.push(Math.max(...receivers.values()) - timestamp)
    }

    const joins: number[] = []
    let joinsNotConverged = 0
    for (let i = 0; i < JOIN_TRIALS; i++) {
      const group = groups[i % groups.length]!
      const { peerId, startedAt } = await group.request({ type: 'join' }, 'joined')
      try {
        await deliveries.until(
          () => (deliveries.holders.get(peerId)?.size ?? 0) >= peers.length,
          JOIN_TIMEOUT_MS,
        )
        joins.push(Math.max(...firstAcceptedBy(deliveries, peerId)) - startedAt)
      } catch {
        joinsNotConverged++
      }
      await group.request({ type: 'leave' }, 'left')
    }
    return {
      ...config,
      connectionsTrimmed: TRIM,
      settled,
      networkSettledMs: round(settledMs),
      quiet,
      quietAfterSettledMs: round(quietAfterSettledMs),
      join: { ...distribution(joins), notConvergedIn30s: joinsNotConverged },
      steady: { ...distribution(steady), deliveredShare: round(delivered / Math.max(1, pairs), 5), pairs },
      cpuCoresBusy: round(loads.reduce((sum, l) => sum + l.cpuMicros, 0) / 1000 / loadMs, 2),
      eventLoopDelayP99Ms: loads.map((l) => round(l.eventLoopDelayP99Ms)),
      // Over the window and the wait after it, all processes together (see StallWatch).
      eventLoopStalls: {
        minMs: STALL_MIN_MS,
        count: loads.reduce((sum, l) => sum + l.stalls.count, 0),
        withMajorGc: loads.reduce((sum, l) => sum + l.stalls.withMajorGc, 0),
        maxMs: Math.max(...loads.map((l) => l.stalls.maxMs)),
      },
      // The simulation's: V8's heap of each process (25 peers at 100), the least in use is what a major GC marks.
      heapUsedMbPerProcess: {
        least: spread(loads.map((l) => round(l.heapUsedBytes.least / 2 ** 20, 1))),
        most: spread(loads.map((l) => round(l.heapUsedBytes.most / 2 ** 20, 1))),
      },
      // What each record costs: every mesh neighbour forwards it once more, and every connection is a handshake.
      links: Object.fromEntries(
        (['connections', 'subscribers', 'mesh'] as const).map((field) => [
          field,
          spread(links.map((l) => l[field])),
        ]),
      ),
      announcementsPerNodeInterval: announcementRate(loadsBefore, loads, nodes.size * (loadMs / intervalMs)),
      connectionsPerPeerMinute: Object.fromEntries(
        (['opened', 'closed'] as const).map((event) => [
          event,
          round(
            loads.reduce((sum, l, i) => sum + l.connections[event] - loadsBefore[i]!.connections[event], 0) /
              peers.length /
              (loadMs / 60_000),
            2,
          ),
        ]),
      ),
    }
  } finally {
    await Promise.allSettled(groups.map((group) => group.stop()))
  }
}

type Load = Extract<GroupReply, { type: 'load' }>

/**
 * Waits until the network has stopped forming: fewer than `QUIET_CHURN_PER_PEER_MINUTE` connections opening, and as
 * few closing, a minute per peer over `QUIET_SAMPLE_MS`, or `QUIET_TIMEOUT_MS` (false). Every peer holding every
 * node's record is not the end of formation: 100 peers started together on two cores are still in their first DHT
 * walks then (every walk pings the new contacts it finds, opening connections: 200–600 opened per 10 s, against
 * under 10 once done), and steady windows that overlapped them ran at 1.6 cores instead of 1.4, with a p99 of 2.4 s
 * instead of 0.7 s. Nor is it over before peers trimmed the connections the walks left idle, a minute after them
 * (`FIRST_TRIM_MS` after the network settled at the earliest), and closes count: a 50-peer window that began 10 s
 * after it settled saw 25 connections a minute per peer open and 37 close. A network of operators' nodes is never
 * started all at once; their joins are measured apart.
 */
async function untilQuiet(groups: Group[], peerCount: number): Promise<boolean> {
  const churn = async () => {
    const loads = await Promise.all(groups.map((group) => group.request({ type: 'load' }, 'load')))
    return {
      opened: loads.reduce((sum, l) => sum + l.connections.opened, 0),
      closed: loads.reduce((sum, l) => sum + l.connections.closed, 0),
    }
  }
  // Each connection opens and closes on both of its peers.
  const perPeerMinute = (count: number) => count / 2 / peerCount / (QUIET_SAMPLE_MS / 60_000)
  const deadline = performance.now() + QUIET_TIMEOUT_MS
  let before = await churn()
  const firstTrimDone = performance.now() + (TRIM ? FIRST_TRIM_MS : 0)
  while (performance.now() < deadline) {
    await delay(QUIET_SAMPLE_MS)
    const now = await churn()
    const opened = perPeerMinute(now.opened - before.opened)
    const closed = perPeerMinute(now.closed - before.closed)
    const calm = opened < QUIET_CHURN_PER_PEER_MINUTE && closed < QUIET_CHURN_PER_PEER_MINUTE
    if (calm && performance.now() >= firstTrimDone) return true
    before = now
  }
  return false
}

/** Smallest, mean and largest of per-peer counts. */
function spread(values: number[]) {
  const mean = values.reduce((sum, v) => sum + v, 0) / Math.max(1, values.length)
  return { min: Math.min(...values), mean: round(mean, 1), max: Math.max(...values) }
}

/** Every peer's links, from every group. */
async function allLinks(groups: Group[]): Promise<Record<string, PeerLinks>> {
  const replies = await Promise.all(groups.map((group) => group.request({ type: 'links' }, 'links')))
  return Object.assign({}, ...replies.map((r) => r.peers))
}

/** Announcements made between two loads of every group, by cause, per node and interval (1 periodic is the floor). */
function announcementRate(before: Load[], after: Load[], nodeIntervals: number) {
  const rate: Record<string, number> = {}
  for (const cause of Object.keys(after[0]!.announcements) as (keyof Load['announcements'])[]) {
    const made = after.reduce(
      (sum, l, i) => sum + l.announcements[cause] - before[i]!.announcements[cause],
      0,
    )
    rate[cause] = round(made / nodeIntervals, 2)
  }
  return rate
}

/** When each peer first accepted any announcement of `publisher`. */
function firstAcceptedBy(deliveries: Deliveries, publisher: string): number[] {
  const first = new Map<string, number>()
  for (const [key, receivers] of deliveries.seen) {
    if (!key.startsWith(`${publisher}/`)) continue
    for (const [receiver, at] of receivers) first.set(receiver, Math.min(first.get(receiver) ?? at, at))
  }
  return [...first.values()]
}

export async function benchGossip() {
  const runs = []
  // A network that cannot even form here is a result too, not the end of the suite.
  for (const { peers, intervalMs } of CONFIGS)
    runs.push(
      await measure(peers, intervalMs).catch((err: Error) => ({
        peers,
        announceIntervalMs: intervalMs,
        failed: err.message,
      })),
    )
  return { transport: `tcp on loopback, peers in ${PROCESSES} processes`, runs }
}
