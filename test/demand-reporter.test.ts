import pino from 'pino'
import t from 'tap'
import { DemandReporter, IDLE_REPORT_EVERY } from '../gateway/demand-reporter.ts'
import { type DemandReport, decodeDemandReport } from '../protocol/demand.ts'
import type { GossipRecords } from '../protocol/gossip-records.ts'

// What a gateway's demand reporter publishes, interval by interval, on a clock the test moves: reports
// with demand go out every interval; an idle gateway's empty report only every few intervals.

const INTERVAL = 2_000

function reporter() {
  const published: DemandReport[] = []
  const topic = {
    publish: async (bytes: Uint8Array) => {
      published.push(decodeDemandReport(bytes)!)
      return []
    },
  } as unknown as GossipRecords<DemandReport>
  let now = 1_000_000
  const sessions = new Map<string, number>()
  const demand = new DemandReporter(
    topic,
    'peer',
    INTERVAL,
    () => sessions,
    pino({ level: 'silent' }),
    () => [],
    () => now,
  )
  /** One interval passes and the reporter's timer fires. */
  const tick = async () => {
    now += INTERVAL
    await demand.publish()
  }
  return { demand, published, sessions, tick }
}

t.test('an idle gateway repeats its empty report every few intervals, saying so', async (t) => {
  const { published, tick } = reporter()
  for (let i = 0; i < 3 * IDLE_REPORT_EVERY; i++) await tick()
  t.equal(published.length, 3, `one report every ${IDLE_REPORT_EVERY} intervals`)
  t.ok(
    published.every((r) => r.servers.length === 0 && r.intervalMs === INTERVAL * IDLE_REPORT_EVERY),
    'each empty, and fresh for as long as the next one may take',
  )
  t.same(
    published.slice(1).map((r, i) => r.timestamp - published[i]!.timestamp),
    [INTERVAL * IDLE_REPORT_EVERY, INTERVAL * IDLE_REPORT_EVERY],
  )
})

t.test(
  'demand goes out every interval; once it is gone, one empty report at once, then the idle pace',
  async (t) => {
    const { demand, published, sessions, tick } = reporter()
    await tick()
    sessions.set('memory', 2)
    demand.countCall('memory')
    await tick()
    await tick()
    t.equal(published.length, 3, 'the first report, then every interval while there is demand')
    t.match(published[1], { servers: [{ id: 'memory', sessions: 2 }], intervalMs: INTERVAL })
    sessions.clear()
    // The calls stay in the rate's window for a few intervals: demand, reported as it falls.
    let ticks = 0
    while (published.at(-1)!.servers.length > 0) {
      const before = published.length
      await tick()
      t.equal(published.length, before + 1, 'each interval while there was demand has its report')
      ticks++
    }
    t.ok(ticks <= 4, `the last call leaves the rate within its window (${ticks} intervals)`)
    t.equal(
      published.at(-1)!.intervalMs,
      INTERVAL * IDLE_REPORT_EVERY,
      'the first report with no demand goes out at once, at the idle pace',
    )
    const drained = published.length
    for (let i = 1; i < IDLE_REPORT_EVERY; i++) await tick()
    t.equal(published.length, drained, 'then the reporter stays quiet')
    await tick()
    t.equal(published.length, drained + 1, 'until the idle pace is due')
    demand.countCall('memory')
    await tick()
    t.match(published.at(-1), { servers: [{ id: 'memory' }], intervalMs: INTERVAL }, 'new demand: at once')
  },
)
