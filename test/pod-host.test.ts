import { connect } from 'node:net'
import t from 'tap'
import { StdioServerConfigSchema } from '../node/config.ts'
import { PodHost } from '../node/pod-host/pod-host.ts'
import { SocketFrames } from '../node/pod-host/socket-frames.ts'
import { PodHostSession } from '../node/runtime/kubernetes/pod-host-session.ts'
import { freePort } from '../node/runtime/ports.ts'
import { createLogger } from '../protocol/logger.ts'
import { decodeJson } from '../protocol/session-handshake.ts'
import { RawSession } from './kube/raw-session.ts'
import { withTimeout } from './support/wait.ts'

// The pod host is the Kubernetes runtime's process inside a stdio server's pod; these tests run it alone,
// on loopback, with the real reference server, and drive it as the node does (PodHostSession) and as a
// confused or hostile peer would (raw frames).

const logger = createLogger('pod-host')
const everything = StdioServerConfigSchema.parse({
  id: 'everything',
  transport: 'stdio',
  package: '@modelcontextprotocol/server-everything',
  args: ['stdio'],
  warmPool: 1,
})
const host = new PodHost({
  server: everything,
  host: '127.0.0.1',
  port: 0,
  logger,
  maxSessions: 2,
  handshakeTimeoutMs: 500,
})
await host.start()
t.teardown(() => host.stop())
const released: string[] = []
const open = (serverId = 'everything') =>
  PodHostSession.open('127.0.0.1', host.port, serverId, () => released.push(serverId))

t.test('a session through the pod host reaches the server and back, and ends cleanly', async (t) => {
  const session = new RawSession(await open())
  await session.initialize()
  t.equal(await session.echo('hello pod'), 'Echo: hello pod')
  t.equal(host.sessions, 1, 'the pod host holds one session')
  await session.session.close()
  t.same(released, ['everything'], 'the node side releases its slot once')
})

t.test('the pod host refuses a session for another server, naming both', async (t) => {
  await t.rejects(open('memory'), {
    code: 'UPSTREAM_UNAVAILABLE',
    message: /refused the session \(UNKNOWN_SERVER\): this pod runs everything, not memory/,
  })
})

t.test('a full pod refuses with NODE_FULL, so that the node picks another pod', async (t) => {
  const sessions = [await open(), await open()]
  t.teardown(() => Promise.all(sessions.map((s) => s.close())))
  await t.rejects(open(), { message: /NODE_FULL.*no free session slot/ })
})

t.test('a first frame that is not an open frame is refused as a protocol violation', async (t) => {
  const frames = new SocketFrames(connect({ host: '127.0.0.1', port: host.port }))
  frames.sendJson({ jsonrpc: '2.0', id: 1, method: 'tools/list' })
  const reply = decodeJson(await frames.nextFrame(5_000)) as { type: string; code: string }
  t.match(reply, { type: 'refused', code: 'PROTOCOL_VIOLATION' })
  await withTimeout(
    new Promise<void>((resolve) => frames.onEnd(() => resolve())),
    5_000,
    'the connection to end',
  )
})

t.test('a peer that never sends its open frame is dropped after the handshake timeout', async (t) => {
  const frames = new SocketFrames(connect({ host: '127.0.0.1', port: host.port }))
  const reply = decodeJson(await frames.nextFrame(5_000)) as { type: string; code: string; message: string }
  t.match(reply, { type: 'refused', code: 'PROTOCOL_VIOLATION', message: /no frame within 500 ms/ })
})

t.test('a server that exits ends its session with a closing frame the node turns into onEnd', async (t) => {
  const crashing = new PodHost({
    server: StdioServerConfigSchema.parse({
      id: 'crasher',
      transport: 'stdio',
      command: process.execPath,
      args: ['-e', 'process.stdin.once("data", () => process.exit(3))'],
      warmPool: 0,
    }),
    host: '127.0.0.1',
    port: 0,
    logger,
  })
  await crashing.start()
  t.teardown(() => crashing.stop())
  const session = new RawSession(await PodHostSession.open('127.0.0.1', crashing.port, 'crasher', () => {}))
  session.request('initialize', {}).catch(() => {})
  const ended = await withTimeout(session.ended, 10_000, 'the session to end')
  t.equal(ended.code, 'UPSTREAM_EXITED', 'the code travels from the pod host')
  t.match(ended.reason, /exit/, 'with the reason')
})

t.test('a pod that does not answer is reported as unreachable', async (t) => {
  const port = await freePort()
  await t.rejects(
    PodHostSession.open('127.0.0.1', port, 'everything', () => {}),
    {
      code: 'UPSTREAM_UNAVAILABLE',
      message: new RegExp(`cannot reach the pod at 127\\.0\\.0\\.1:${port}`),
    },
  )
})
