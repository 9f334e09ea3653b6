/**
 * What a node and a gateway cost with nothing to do: each in a process of its own (the node hosting the
 * fixture with one warm instance, the gateway joined to it), left alone for `BENCH_IDLE_SECONDS` (30) after
 * they settle, reporting each process's CPU time as a share of one core. The warm server instance itself is
 * not counted: it is the server's, not the node's.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { startPeerProcesses } from './peer-handle.ts'
import { round } from './stats.ts'

const SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30)

export async function benchIdle() {
  const network = await startPeerProcesses('stdio', { warmPool: 1, maxSessions: 64 })
  try {
    await network.settle()
    // Start-up work (the first announcements, DHT bootstrap) is done before the window opens.
    await delay(5_000)
    const cpu = async () => ({
      node: (await network.node.request({ type: 'cpu' })).micros,
      gateway: (await network.gateway.request({ type: 'cpu' })).micros,
    })
    const before = await cpu()
    const started = performance.now()
    await delay(SECONDS * 1_000)
    const after = await cpu()
    const wallMicros = (performance.now() - started) * 1_000
    const share = (used: number) => round((used / wallMicros) * 100, 2)
    return {
      seconds: SECONDS,
      nodePercentOfACore: share(after.node - before.node),
      gatewayPercentOfACore: share(after.gateway - before.gateway),
    }
  } finally {
    await network.stop()
  }
}
