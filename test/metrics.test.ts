import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { collectedGauge, peerRegistry } from '../protocol/metrics.ts'

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
