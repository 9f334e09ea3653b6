import t from 'tap'
import { AnnouncedLinks, CHANGED_AFTER, REFRESH_AFTER } from '../node/announced-links.ts'
import type { Announcement } from '../protocol/announcement.ts'
import { startNetwork } from '../testing/network.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { waitFor } from './support/wait.ts'

t.test(
  'links go out first, for newcomers, and then at most once in CHANGED_AFTER announcements',
  async (t) => {
    const links = new AnnouncedLinks()
    t.same(links.next(['a', 'b'], false), ['a', 'b'], 'the first announcement carries them')
    t.equal(links.next(['b', 'a'], false), undefined, 'the same set, in another order: left out')
    t.same(links.next(['a', 'b'], true), ['a', 'b'], 'for newcomers: sent though unchanged')
    const carried = (sets: string[][]) =>
      sets.map((set, i) => (links.next(set, false) === undefined ? 0 : i + 1)).filter(Boolean)
    // The set changes with the second announcement after the last links went; it goes out with the sixth.
    t.same(
      carried([['a', 'b'], ...Array.from({ length: 2 * CHANGED_AFTER }, () => ['a', 'c'])]),
      [CHANGED_AFTER],
      `a changed set goes out ${CHANGED_AFTER} announcements after the last links, not at once`,
    )
    t.same(links.next(['a'], true), ['a'], 'for newcomers: sent at once though just sent')
    t.same(
      carried(Array.from({ length: 2 * REFRESH_AFTER }, () => ['a'])),
      [REFRESH_AFTER, 2 * REFRESH_AFTER],
      `unchanged, they still go out every ${REFRESH_AFTER}th announcement`,
    )
  },
)

t.test("a gateway keeps a node's last links through the announcements that leave them out", async (t) => {
  // Two nodes and a gateway announcing every 100 ms: most announcements leave the links out.
  const network = await startNetwork({
    nodes: 2,
    gateways: 1,
    servers: [{ ...fixtureServerConfig(), warmPool: 0 }],
    node: { announceIntervalMs: 100 },
  })
  t.teardown(network.stop)
  const view = network.gateway.view
  const [first, second] = network.nodes.map((n) => n.peerId)
  let withoutLinks = 0
  view.announcements.on('record', (a: Announcement) => {
    if (a.peerId === first && a.links === undefined) withoutLinks++
  })
  const linksOfFirst = () => view.liveAnnouncements().find((a) => a.peerId === first)?.links ?? []
  await waitFor(
    () => withoutLinks >= 3 && linksOfFirst().includes(second!),
    view,
    'change',
    20_000,
    'records of the first node without links, and its links known',
  )
  t.ok(withoutLinks >= 3, `${withoutLinks} of its records came without links`)
  t.ok(linksOfFirst().includes(second!), 'the view still shows its link to the other node')
})
