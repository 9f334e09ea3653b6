import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium as playwright } from 'playwright-core'
import t from 'tap'
import { createApiKey } from '../gateway/api-keys.ts'
import { demoServers } from '../node/demo-servers.ts'
import { startNetwork } from '../testing/network.ts'
import { browserSuite } from './support/browser.ts'

// The network page in a real browser (Debian's Chromium, driven by playwright-core), against a real
// in-process network of three nodes whose servers the allocator places: the page shows the nodes and servers,
// and follows, without a reload, a node being killed and the allocator moving its servers to the others.
// Then the page behind API keys: it asks for one, and shows nothing until it has it.

await browserSuite('the network page', async (executablePath) => {
  const browser = await playwright.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] })
  t.teardown(() => browser.close())

  t.test('the page shows the nodes and servers, and follows a node killed and servers moved', async (t) => {
    const network = await startNetwork({
      nodes: [0, 1, 2].map((i) => ({
        servers: demoServers({ warmPool: 0 }),
        labels: { operator: `op-${i}` },
      })),
      node: {
        allocation: {
          enabled: true,
          epochMs: 1_000,
          settleMs: 300,
          joinDelayMs: 1_000,
          policy: { minReplicas: 1, idleReplicas: 1 },
        },
        announceIntervalMs: 500,
      },
      readyTimeoutMs: 30_000,
    })
    t.teardown(network.stop)
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
    t.teardown(() => page.close())
    const problems: string[] = []
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text())
    })
    page.on('pageerror', (err) => problems.push(err.message))
    await page.goto(`${network.gateway.url}/network`)
    await page.waitForFunction(() => document.getElementById('nodeCount')?.textContent === '3', undefined, {
      timeout: 30_000,
    })
    // Each server placed once (minReplicas 1) once the allocation settles.
    await page.waitForFunction(
      () => {
        const rows = [...document.querySelectorAll('#hosting tbody tr')] as HTMLElement[]
        return rows.length === 4 && rows.every((r) => r.dataset.hosts?.split(' ').length === 1)
      },
      undefined,
      { timeout: 30_000 },
    )
    t.equal(await page.locator('#serverCount').textContent(), '4')
    t.equal(await page.locator('#nodes tr').count(), 3, 'a row per node')
    t.equal(await page.locator('#graph [data-peer]').count(), 4, 'the gateway and three nodes in the graph')
    t.ok((await page.locator('#graph line').count()) >= 3, 'their links')
    t.match(await page.locator('#agree').textContent(), /every node agrees/)
    t.ok((await page.locator('#sessionsPlot polyline').count()) >= 1, 'plots are drawn')

    // The node that hosts `everything` is killed (no goodbye): the page shows it leave, and the allocator move
    // what it hosted to the two others — pushed, without a reload.
    const hostOf = (id: string) =>
      page.locator(`#hosting tr[data-server="${id}"]`).getAttribute('data-hosts') as Promise<string>
    const victimId = await hostOf('everything')
    const victim = network.nodes.find((n) => n.peerId === victimId)!
    const moved = network.nodes
      .filter((n) => n.peerId === victimId)
      .flatMap((n) => n.runtime.status().map((s) => s.id))
    const snapshotsBefore = Number(await page.evaluate(() => document.body.dataset.snapshots))
    await victim.crash()
    await page.waitForFunction(() => document.getElementById('nodeCount')?.textContent === '2', undefined, {
      timeout: 30_000,
    })
    await page.locator('#events li[data-kind="node-left"]').first().waitFor({ timeout: 10_000 })
    await page.waitForFunction(
      (gone) =>
        ([...document.querySelectorAll('#hosting tbody tr')] as HTMLElement[]).every(
          (r) => r.dataset.hosts !== '' && !r.dataset.hosts?.includes(gone),
        ) && document.querySelectorAll('#hosting tbody tr').length === 4,
      victimId,
      { timeout: 30_000 },
    )
    for (const id of moved) t.not(await hostOf(id), victimId, `${id} moved off the killed node`)
    t.ok(
      (await page.locator('#events li[data-kind="server-placed"]').count()) >= moved.length,
      'placements logged',
    )
    t.ok(
      Number(await page.evaluate(() => document.body.dataset.snapshots)) > snapshotsBefore,
      'the page was updated by pushed snapshots (it never reloaded)',
    )
    if (process.env.NEXUS_SCREENSHOT !== undefined)
      await page.screenshot({ path: process.env.NEXUS_SCREENSHOT })
    t.same(problems, [], 'no script error or blocked resource (the page runs under its content policy)')
  })

  t.test('behind API keys the page shows nothing until given a key', async (t) => {
    const keysFile = join(mkdtempSync(join(tmpdir(), 'nexus-page-')), 'keys.json')
    const key = createApiKey(keysFile, 'operator', ['server:*']).key
    const network = await startNetwork({
      nodes: 1,
      servers: [demoServers({ warmPool: 0 })[0]!],
      gateway: { auth: { apiKeys: keysFile } },
    })
    t.teardown(network.stop)
    const stream = await fetch(`${network.gateway.url}/network/events`)
    t.equal(stream.status, 401, 'the stream is behind the API auth')
    const page = await browser.newPage()
    t.teardown(() => page.close())
    await page.goto(`${network.gateway.url}/network`)
    await page.locator('#login.shown').waitFor({ timeout: 10_000 })
    t.equal(await page.locator('#nodeCount').textContent(), '–', 'no data without a key')
    await page.fill('#token', key)
    await page.click('#login button')
    await page.waitForFunction(() => document.getElementById('nodeCount')?.textContent === '1', undefined, {
      timeout: 15_000,
    })
    t.equal(await page.locator('#statusText').textContent(), 'live')
  })
})
