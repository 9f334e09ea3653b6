import t from 'tap'
import { chooseHost, loadScore } from '../gateway/host-selection.ts'
import type { Host } from '../gateway/network-view.ts'
import { RetrySafety } from '../gateway/retry-safety.ts'
import { RecordValidator } from '../protocol/gossip-records.ts'

function host(peerId: string, sessions: number, capacity: number, inFlight = 0): Host {
  return {
    peerId,
    source: 'gossip',
    server: {
      id: 's',
      version: '1',
      manifestHash: `0x${'0'.repeat(64)}`,
      sessions,
      freeSlots: capacity - sessions,
    },
    load: { sessions, capacity, inFlight, cpu: 0, memory: 0 },
    openedSinceAnnouncement: 0,
  }
}
const idle = () => ({ sessions: 0, inFlight: 0 })

t.test(
  'power of two choices: the less busy of the two drawn hosts wins; full hosts are skipped',
  async (t) => {
    const busy = host('busy', 90, 100)
    const calm = host('calm', 10, 100)
    // The two draws cover both hosts whatever the random numbers, so the calm one must win.
    for (const r of [0, 0.3, 0.6, 0.99]) t.equal(chooseHost([busy, calm], idle, () => r)?.peerId, 'calm')
    const full = host('full', 5, 5)
    const counts = new Map<string, number>()
    let seed = 1
    const random = () => {
      seed = (seed * 48271) % 2147483647
      return seed / 2147483647
    }
    for (let i = 0; i < 300; i++) {
      const chosen = chooseHost([full, host('a', 10, 100), host('b', 10, 100)], idle, random)!
      counts.set(chosen.peerId, (counts.get(chosen.peerId) ?? 0) + 1)
    }
    t.notOk(counts.has('full'), 'a host without a free slot is never chosen while others have room')
    t.ok(counts.get('a')! > 100 && counts.get('b')! > 100, `equal hosts share the load (${[...counts]})`)
    t.equal(chooseHost([full], idle)?.peerId, 'full', 'with nothing else left, a full host is still tried')
    t.ok(
      loadScore(host('x', 10, 100), { sessions: 0, inFlight: 50 }) > loadScore(host('x', 10, 100), idle()),
      "the gateway's own calls in flight count",
    )
  },
)

t.test('record validator: forged, future, stale and replayed records', async (t) => {
  let now = 1_000_000
  const validator = new RecordValidator(
    (bytes) => JSON.parse(new TextDecoder().decode(bytes)),
    { maxAgeMs: 30_000, maxFutureMs: 10_000 },
    () => now,
  )
  const record = (peerId: string, seq: number, timestamp = now) =>
    new TextEncoder().encode(JSON.stringify({ peerId, seq, timestamp }))
  t.equal(validator.validate('a', record('a', 5)).result, 'accept')
  t.match(validator.validate('b', record('a', 6)), { result: 'reject', reason: /signed by b/ })
  t.match(validator.validate(undefined, record('a', 6)), { result: 'reject', reason: /unsigned/ })
  t.match(validator.validate('a', record('a', 5)), { result: 'ignore', reason: /not above 5/ })
  t.match(validator.validate('a', record('a', 7, now + 20_000)), { result: 'reject', reason: /future/ })
  t.match(validator.validate('a', record('a', 8, now - 40_000)), { result: 'ignore', reason: /stale/ })
  now += 1_000
  t.equal(validator.validate('a', record('a', 9)).result, 'accept', 'a newer record is accepted')
})

t.test('retry safety: read methods and tools annotated read-only or idempotent', async (t) => {
  const safety = new RetrySafety()
  safety.learnTools('s', {
    tools: [
      { name: 'read', annotations: { readOnlyHint: true } },
      { name: 'put', annotations: { idempotentHint: true } },
      { name: 'send', annotations: { readOnlyHint: false } },
      { name: 'bare' },
    ],
  })
  t.ok(safety.isSafe('s', 'resources/read', {}))
  t.ok(safety.isSafe('s', 'tools/call', { name: 'read' }))
  t.ok(safety.isSafe('s', 'tools/call', { name: 'put' }))
  t.notOk(safety.isSafe('s', 'tools/call', { name: 'send' }))
  t.notOk(safety.isSafe('s', 'tools/call', { name: 'bare' }), 'no annotation: not safe')
  t.notOk(safety.isSafe('s', 'tools/call', { name: 'unknown' }), 'never listed: not safe')
  t.notOk(safety.isSafe('other', 'tools/call', { name: 'read' }), 'annotations are per server')
  t.notOk(safety.isSafe('s', 'sampling/whatever', {}))
})
