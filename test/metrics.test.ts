import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { collectedGauge, peerRegistry } from '../protocol/metrics.ts'
import { blockEventLoop } from './support/block-event-loop.ts'

setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

t.test('a peer registry shows the process metrics, and is collected once the peer is gone', async (t) => {
  const first = peerRegistry('nexus_test_')
  const second = peerRegistry('nexus_test_')
  t.match(
    await first.metrics(),
    /nexus_test_process_cpu_seconds_total/,
    'the process metrics, under the prefix',
  )
  t.match(await second.metrics(), /nexus_test_nodejs_gc_duration_seconds/, 'in every peer registry')
  // A peer that stopped: its registry, its gauges and what their callbacks hold must not stay alive. The process
  // metrics were once collected per peer, and their GC observer kept every stopped peer of a process.
  const gone = await stoppedPeer()
  for (let i = 0; i < 5 && gone.deref() !== undefined; i++) {
    await new Promise(setImmediate)
    collectGarbage()
  }
  t.equal(gone.deref(), undefined, 'nothing of the stopped peer is left')
})

/** A peer with a gauge over its state, scraped once, then dropped; a weak reference to its state. */
async function stoppedPeer(): Promise<WeakRef<Uint8Array>> {
  const registry = peerRegistry('nexus_test_')
  const state = new Uint8Array(1024)
  collectedGauge(registry, 'nexus_test_state_bytes', 'bytes of state', [], (g) => g.set(state.length))
  await registry.metrics()
  return new WeakRef(state)
}

t.test(
  'the event-loop delay, sampled every 100 ms to spare idle processes, still shows a stall',
  async (t) => {
    const registry = peerRegistry('nexus_test_')
    await registry.metrics() // starts a fresh sampling window
    // The sampler does not record the first interval of a window (below), so the stall comes after it.
    await new Promise((resolve) => setTimeout(resolve, 250))
    blockEventLoop(300)
    // Scraped until the stall shows. A scrape starts a new window, and the sampler does not record the first
    // interval of a window: scraped at once, the stall would be lost, and scraped every few ms no delay would
    // ever show. So each scrape comes two and a half sampling intervals after the one before.
    const maxDelay = async () =>
      /^nexus_test_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(await registry.metrics())
    const deadline = performance.now() + 3_000
    let max: RegExpExecArray | null
    do {
      await new Promise((resolve) => setTimeout(resolve, 250))
      max = await maxDelay()
    } while (max !== null && Number(max[1]) < 0.25 && performance.now() < deadline)
    t.ok(max !== null, 'the event-loop delay is among the process metrics')
    t.ok(Number(max?.[1]) >= 0.25, `the 300 ms stall is seen: max delay ${max?.[1]} s`)
  },
)

t.test('scrapes closer together than the sampling interval read 0, never NaN', async (t) => {
  const registry = peerRegistry('nexus_test_')
  for (let i = 0; i < 3; i++) {
    const text = await registry.metrics()
    const lines = text.split('\n').filter((line) => line.startsWith('nexus_test_nodejs_eventloop_lag_'))
    t.equal(lines.length, 8, `scrape ${i + 1}: the eight event-loop figures`)
    for (const line of lines) {
      const value = Number(line.split(' ')[1])
      if (!Number.isFinite(value) || value < 0 || value > 60) t.fail(`scrape ${i + 1}: ${line}`)
    }
  }
})
