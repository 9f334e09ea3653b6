import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Sandbox } from '../node/runtime/sandbox/sandbox.ts'
import { startNetwork } from '../testing/network.ts'
import { connectStreamable, textOf, waitUntil } from './support/clients.ts'
import { captureLogs } from './support/log-capture.ts'
import { withTimeout } from './support/wait.ts'

// A hostile server, started by a node in its sandbox (bubblewrap, control groups), tries what a compromised
// server would: read the node's secrets and another server's files, write outside its scratch folder, reach
// the network, fork without end, eat memory, spin every core. Each attempt is blocked or contained, the
// node reports what it saw, and an agent using another server on the same node sees no error throughout.

const { sandbox: probe, unavailable } = Sandbox.create('preferred')
probe?.dispose()
if (probe === undefined) {
  if (process.env.NEXUS_REQUIRE_SANDBOX === '1')
    throw new Error(`the sandbox is required here: ${unavailable}`)
  t.comment(`SKIPPED: ${unavailable} (install bubblewrap; .ci/run requires it)`)
  t.pass('no sandbox on this machine')
  t.end()
} else {
  await sandboxTests()
}

async function sandboxTests() {
  // The operator's folder: the node's peer key and a keystore, which no server may read.
  const operator = mkdtempSync(join(tmpdir(), 'nexus-operator-'))
  const peerKey = join(operator, 'node.key')
  const keystore = join(operator, 'keystore.json')
  writeFileSync(peerKey, 'PEER-KEY-SECRET', { mode: 0o600 })
  writeFileSync(keystore, '{"crypto":"KEYSTORE-SECRET"}', { mode: 0o600 })
  const { logger, lines: logs, events: logged } = captureLogs('info')
  const HOSTILE = join(import.meta.dirname, 'fixtures', 'hostile-server.ts')
  const hostile = (id: string) => ({
    id,
    transport: 'stdio' as const,
    command: process.execPath,
    args: [HOSTILE],
    // Its own task limit (a manifest's `resources.processes`), below the node's default of 256.
    resources: { cpu: 0.5, memoryMiB: 192, processes: 64 },
    warmPool: 1,
  })
  // "Outside": an HTTP server on the machine, which one server's manifest names as its only egress host.
  const outside = createServer((_req, res) => res.end('outside answered'))
  await new Promise<void>((resolve) => outside.listen(0, '127.0.0.1', resolve))
  t.teardown(() => outside.close())
  const outsidePort = (outside.address() as AddressInfo).port
  const network = await startNetwork({
    nodes: [
      {
        sandbox: { mode: 'required' },
        identityFile: peerKey,
        servers: [
          hostile('hostile'),
          hostile('neighbour'),
          { ...hostile('hostile-http'), transport: 'streamable-http' as const, args: [HOSTILE, '--http'] },
          { ...hostile('egress'), egress: ['127.0.0.1'] },
          { id: 'everything', warmPool: 1 },
        ],
      },
    ],
    logger,
  })
  t.teardown(network.stop)
  const [node] = network.nodes
  const url = (id: string) => network.gateway.serverUrl(id)

  // An agent on another server of the same node calls throughout; none of its calls may fail.
  const bystander = await connectStreamable(url('everything'))
  t.teardown(() => bystander.client.close())
  let bystanderCalls = 0
  const bystanderErrors: unknown[] = []
  let stopBystander = false
  const bystanding = (async () => {
    while (!stopBystander) {
      try {
        const result = await bystander.client.callTool({ name: 'echo', arguments: { message: 'still here' } })
        if (textOf(result) !== 'Echo: still here') bystanderErrors.push(result)
        bystanderCalls++
      } catch (err) {
        bystanderErrors.push(err)
      }
    }
  })()

  const { client } = await connectStreamable(url('hostile'))
  // biome-ignore lint/suspicious/noExplicitAny: the fixture's JSON answers, probed field by field
  const call = async (name: string, args: Record<string, unknown> = {}): Promise<any> =>
    JSON.parse(textOf(await client.callTool({ name, arguments: args })))

  await t.test('the node says how its servers are confined', async (t) => {
    t.match(node!.runtime, { sandbox: /^bubblewrap, (cgroup v[12]|rlimits)$/ })
  })

  await t.test("the node's peer key, the keystore and another server's files are out of sight", async (t) => {
    t.match(await call('read_file', { path: peerKey }), { ok: false, error: 'ENOENT' })
    t.match(await call('read_file', { path: keystore }), { ok: false, error: 'ENOENT' })
    t.match(await call('read_file', { path: '/etc/shadow' }), { ok: false, error: 'ENOENT' })
    const neighbour = await connectStreamable(url('neighbour'))
    t.teardown(() => neighbour.client.close())
    const where = JSON.parse(textOf(await neighbour.client.callTool({ name: 'whereami', arguments: {} })))
    const secret = join(where.home, 'notes.txt')
    const wrote = JSON.parse(
      textOf(
        await neighbour.client.callTool({ name: 'write_file', arguments: { path: secret, text: 'mine' } }),
      ),
    )
    t.match(wrote, { ok: true }, 'a server writes in its own scratch folder')
    t.match(
      await call('read_file', { path: secret }),
      { ok: false, error: 'ENOENT' },
      'the other cannot see it',
    )
    t.not((await call('whereami')).home, where.home, 'each instance has a scratch folder of its own')
  })

  await t.test('writing outside its scratch folder fails', async (t) => {
    const own = (await call('whereami')).home
    t.match(await call('write_file', { path: join(own, 'ok.txt'), text: 'x' }), { ok: true })
    for (const path of [
      join(import.meta.dirname, '..', 'node_modules', 'planted.js'),
      '/usr/planted',
      join(operator, 'planted'),
    ])
      t.match(await call('write_file', { path, text: 'x' }), { ok: false }, path)
  })

  await t.test('no network: neither the gateway on loopback nor an outside address', async (t) => {
    const port = Number(new URL(network.gateway.serverUrl('hostile')).port)
    const loopback = await call('connect', { host: '127.0.0.1', port })
    t.match(loopback, { ok: false }, `127.0.0.1:${port} refused (${loopback.error})`)
    const outside = await call('connect', { host: '192.0.2.1', port: 443 })
    t.match(outside, { ok: false }, `192.0.2.1:443 unreachable (${outside.error})`)
  })

  await t.test('an HTTP server has no network either: the node reaches it through its relay', async (t) => {
    const http = await connectStreamable(url('hostile-http'))
    t.teardown(() => http.client.close())
    const port = Number(new URL(network.gateway.serverUrl('hostile')).port)
    const attempt = async (host: string, p: number) =>
      JSON.parse(textOf(await http.client.callTool({ name: 'connect', arguments: { host, port: p } })))
    t.match(await attempt('127.0.0.1', port), { ok: false }, 'the gateway on loopback')
    t.match(await attempt('192.0.2.1', 443), { ok: false }, 'an outside address')
  })

  await t.test('declared egress hosts are reached through the proxy, and only they', async (t) => {
    const egress = await connectStreamable(url('egress'))
    t.teardown(() => egress.client.close())
    const tool = async (name: string, args: Record<string, unknown>) =>
      JSON.parse(textOf(await egress.client.callTool({ name, arguments: args })))
    t.match(
      await tool('fetch_url', { url: `http://127.0.0.1:${outsidePort}/` }),
      { ok: true, body: 'outside answered' },
      'the allowed host answers',
    )
    t.match(
      await tool('fetch_url', { url: `http://localhost:${outsidePort}/` }),
      { ok: false },
      'another name for it is refused (the proxy answers 403 to its CONNECT)',
    )
    t.match(
      await tool('connect', { host: '127.0.0.1', port: outsidePort }),
      { ok: false },
      'and no way around the proxy',
    )
    const text = await node!.metrics.registry.metrics()
    t.match(text, /nexus_node_sandbox_egress_total\{server="egress",outcome="allowed"\} 1/)
    t.match(text, /nexus_node_sandbox_egress_total\{server="egress",outcome="refused"\} 1/)
    t.ok(
      logs.some((l) => l.msg === 'refused egress outside the manifest' && l.host === 'localhost'),
      'the refusal is logged',
    )
  })

  await t.test('a fork bomb stops at the task limit', async (t) => {
    const bomb = await call('fork_bomb', { count: 500 })
    t.match(bomb, { ok: false }, `refused after ${bomb.started} processes (${bomb.error})`)
    t.ok(bomb.started < 64, 'fewer processes than the limit')
    t.equal((await call('whereami')).home !== undefined, true, 'the server still answers')
  })

  await t.test('spinning every core gets no more CPU than the limit', async (t) => {
    // The limit is one core (the least an instance gets); two threads spinning would take two unconfined.
    const spun = await call('spin', { threads: 2, ms: 1_500 })
    t.ok(
      spun.cpuMs < spun.wallMs * 1.3,
      `${Math.round(spun.cpuMs)} ms of CPU in ${Math.round(spun.wallMs)} ms, with a limit of one core`,
    )
  })

  await t.test(
    'allocating far beyond the memory limit ends that instance only, and is reported',
    async (t) => {
      await t.rejects(
        withTimeout(
          client.callTool({ name: 'allocate', arguments: { mib: 2048 } }),
          60_000,
          'the allocation',
        ),
        'the call fails: its process was killed',
      )
      await client.close().catch(() => {})
      const reported = (l: Record<string, unknown>) =>
        l.msg === 'a sandboxed server instance hit its limits' &&
        l.server === 'hostile' &&
        Number(l.oomKills) > 0
      const line = await waitUntil<Record<string, unknown>>(
        30_000,
        'the node to report the kill',
        (check) => {
          for (const l of logs) check(l)
          logged.on('line', check)
        },
        reported,
      )
      t.match(line, { exit: /SIGKILL|code 137/ }, 'the node logs it, with how the process ended')
      t.ok(Number(line.forksRefused) > 0, 'and the forks the task limit refused, earlier in that instance')
      t.ok(Number(line.cpuThrottled) > 0, 'and the periods it was held at its CPU limit')
      const text = await node!.metrics.registry.metrics()
      t.match(
        text,
        /nexus_node_sandbox_limit_events_total\{server="hostile",limit="oom_kill"\} [1-9]/,
        'nexus_node_sandbox_limit_events_total counts it',
      )
      const again = await connectStreamable(url('hostile'))
      t.teardown(() => again.client.close())
      t.match(
        JSON.parse(textOf(await again.client.callTool({ name: 'whereami', arguments: {} }))),
        {
          pid: Number,
        },
        'the server serves a new session on a fresh instance',
      )
    },
  )

  await t.test(
    'a bind of a folder that does not exist keeps the server from starting, naming it',
    async (t) => {
      await t.rejects(
        startNetwork({
          nodes: [
            {
              sandbox: { mode: 'required' },
              servers: [{ ...hostile('misbound'), binds: [{ path: '/nonexistent/folder', mode: 'rw' }] }],
            },
          ],
          readyTimeoutMs: 5_000,
        }),
        /misbound: the folder to bind, \/nonexistent\/folder, does not exist/,
      )
    },
  )

  await t.test('the agent on the other server saw no error throughout', async (t) => {
    stopBystander = true
    await bystanding
    t.same(bystanderErrors, [], `${bystanderCalls} calls, none failed`)
    t.ok(bystanderCalls > 10)
  })
}
