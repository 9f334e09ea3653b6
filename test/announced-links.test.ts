import t from 'tap'
import { AnnouncedLinks, REFRESH_EVERY } from '../node/announced-links.ts'
import type { Announcement } from '../protocol/announcement.ts'
import { startNetwork } from '../testing/network.ts'
import { fixtureServerConfig } from './support/fixture-server.ts'
import { waitFor } from './support/wait.ts'

t.test('links go out when they change, for newcomers, and every fifth announcement', async (t) => {
  const links = new AnnouncedLinks()
  t.same(links.next(['a', 'b'], false), ['a', 'b'], 'the first announcement carries them')
  t.equal(links.next(['b', 'a'], false), undefined, 'the same set, in another order: left out')
  t.same(links.next(['a', 'c'], false), ['a', 'c'], 'another set: sent')
  t.same(links.next(['a', 'c'], true), ['a', 'c'], 'for newcomers: sent though unchanged')
  const sent = Array.from({ length: 2 * REFRESH_EVERY }, () => links.next(['a', 'c'], false) !== undefined)
  t.same(
    sent.map((s, i) => (s ? i + 1 : 0)).filter(Boolean),
    [REFRESH_EVERY, 2 * REFRESH_EVERY],
    `unchanged, they still go out every ${REFRESH_EVERY}th announcement`,
  )
})

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
