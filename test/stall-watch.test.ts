import { once } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { StallWatch } from '../scripts/bench/stall-watch.ts'
import { blockEventLoop } from './support/block-event-loop.ts'

setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

/**
 * A watch counting stalls of 250 ms or more (as the bench does), stopped when the test ends. Its timer does not keep
 * a process alive (the bench's groups exit without stopping it), so the test keeps one of its own while it waits.
 */
function startedWatch(t: Test): StallWatch {
  const watch = new StallWatch(250)
  watch.start()
  const keepAlive = setInterval(() => undefined, 1_000)
  t.teardown(() => {
    watch.stop()
    clearInterval(keepAlive)
  })
  return watch
}

t.test('a stall of the event loop is counted with its length, and not blamed on a collection', async (t) => {
  const watch = startedWatch(t)
  const stalled = once(watch, 'stall')
  blockEventLoop(400)
  const [stall] = await stalled
  t.ok(stall.lateMs >= 380, `late ${stall.lateMs} ms`)
  t.equal(stall.majorGc, false)
  const taken = watch.take()
  t.equal(taken.count, 1)
  t.equal(taken.withMajorGc, 0)
  t.ok(taken.maxMs >= 380)
  t.same(watch.take(), { count: 0, withMajorGc: 0, maxMs: 0 }, 'take() starts a new count')
})

t.test('a stall that ends with a major collection is counted as the collection’s', async (t) => {
  const watch = startedWatch(t)
  const stalled = once(watch, 'stall')
  blockEventLoop(300)
  collectGarbage()
  const [stall] = await stalled
  t.equal(stall.majorGc, true)
  t.equal(watch.take().withMajorGc, 1)
})

t.test('shorter delays are not stalls', async (t) => {
  const watch = startedWatch(t)
  blockEventLoop(100)
  const shortDelayEnded = performance.now()
  // A timer due after the watch's next tick: the watch has seen the 100 ms delay when it fires.
  await new Promise((resolve) => setTimeout(resolve, 40))
  const stalled = once(watch, 'stall')
  blockEventLoop(400)
  const [stall] = await stalled
  const taken = watch.take()
  t.equal(taken.count, 1, 'the 400 ms stall, not the 100 ms delay before it')
  t.ok(taken.maxMs >= 380, `longest ${taken.maxMs} ms`)
  // Not an upper bound on the length, which a loaded machine stretches: the stall is measured from a tick after
  // the short delay had ended, so the two were not added up.
  t.ok(stall.since >= shortDelayEnded, 'measured from a tick after the short delay')
})
