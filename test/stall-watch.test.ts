import { once } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { StallWatch } from '../scripts/bench/stall-watch.ts'

setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

/** The watch's timer does not keep a process alive (the bench's groups exit without stopping it); this does. */
function keepAlive(t: Test): void {
  const timer = setInterval(() => undefined, 1_000)
  t.teardown(() => clearInterval(timer))
}

function busyFor(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // the event loop stands still
  }
}

t.test('a stall of the event loop is counted with its length, and not blamed on a collection', async (t) => {
  const watch = new StallWatch(150)
  watch.start()
  keepAlive(t)
  t.teardown(() => watch.stop())
  const stalled = once(watch, 'stall')
  busyFor(300)
  const [stall] = await stalled
  t.ok(stall.lateMs >= 280, `late ${stall.lateMs} ms`)
  t.equal(stall.majorGc, false)
  const taken = watch.take()
  t.equal(taken.count, 1)
  t.equal(taken.withMajorGc, 0)
  t.ok(taken.maxMs >= 280)
  t.same(watch.take(), { count: 0, withMajorGc: 0, maxMs: 0 }, 'take() starts a new count')
})

t.test('a stall that ends with a major collection is counted as the collection’s', async (t) => {
  const watch = new StallWatch(150)
  watch.start()
  keepAlive(t)
  t.teardown(() => watch.stop())
  const stalled = once(watch, 'stall')
  busyFor(200)
  collectGarbage()
  const [stall] = await stalled
  t.equal(stall.majorGc, true)
  t.equal(watch.take().withMajorGc, 1)
})

t.test('shorter delays are not stalls', async (t) => {
  const watch = new StallWatch(150)
  watch.start()
  keepAlive(t)
  t.teardown(() => watch.stop())
  busyFor(50)
  // The watch judges a stall one tick after it; two ticks later nothing has been judged a stall.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(watch.take(), { count: 0, withMajorGc: 0, maxMs: 0 })
})
