import { NetworkState } from './allocator/network-state.ts'
import { demoServers } from './node/demo-servers.ts'
import { startNetwork } from './test/support/network.ts'

const orig = NetworkState.prototype.snapshot
NetworkState.prototype.snapshot = function (...args) {
  const r = orig.apply(this, args)
  ;(this as any).__last = r
  return r
}
const network = await startNetwork({
  nodes: [0, 1, 2].map((i) => ({
    servers: demoServers({ warmPool: 0 }),
    labels: { operator: `operator-${i}` },
  })),
  node: {
    allocation: {
      enabled: true,
      epochMs: 1_000,
      settleMs: 300,
      joinDelayMs: 1500,
      policy: { sessionsPerReplica: 4 },
    },
    announceIntervalMs: 500,
  },
  gateway: { demandIntervalMs: 250 },
  readyTimeoutMs: 30_000,
})
const byEpoch = new Map<number, any[]>()
network.nodes.forEach((n, i) =>
  n.on('assignment', (a) => {
    const input = (n.allocation!.state as any).__last
    const list = byEpoch.get(a.epoch) ?? []
    list.push({ i, hash: a.hash, input })
    byEpoch.set(a.epoch, list)
    if (list.length === 3 && new Set(list.map((x) => x.hash)).size > 1) {
      console.log('DIVERGED', a.epoch)
      for (const x of list)
        console.log(
          x.i,
          JSON.stringify({
            nodes: x.input.nodes.map((n: any) => [
              n.id.slice(-4),
              n.eligible.length,
              n.capacity,
              n.cpu,
              n.memoryMiB,
            ]),
            current: x.input.current,
            demand: x.input.demand,
          }),
        )
    }
  }),
)
await new Promise((r) => setTimeout(r, 12000))
await network.stop()
