import { spawnSync } from 'node:child_process'
import t from 'tap'
import { libp2pComponentLogger } from '../protocol/silent-libp2p-logger.ts'

t.test('without DEBUG, every component and scope shares one logger that writes nothing', async (t) => {
  const components = libp2pComponentLogger({})
  t.ok(components, 'a component logger is given to libp2p')
  const log = components!.forComponent('libp2p:connection')
  t.equal(components!.forComponent('libp2p:yamux'), log, 'one logger for every component')
  t.equal(log.newScope('outbound:1'), log, 'and for every scope: no logger is made per stream')
  t.equal(log.enabled, false, 'components that check `enabled` skip formatting')
  t.doesNotThrow(() => {
    log('dialled %p', 'peer')
    log.error('failed %e', new Error('x'))
    log.trace('frame %d', 1)
  })
})

t.test('with DEBUG set, libp2p keeps its own logger', async (t) => {
  t.equal(libp2pComponentLogger({ DEBUG: 'libp2p:*' }), undefined)
})

/** Starts and stops a real peer in a child process, with the given DEBUG; returns what it wrote to stderr. */
function peerStderr(debug: string | undefined): string {
  const env = { ...process.env }
  delete env.DEBUG
  if (debug !== undefined) env.DEBUG = debug
  const script = `
    import { createPeer } from ${JSON.stringify(new URL('../protocol/peer.ts', import.meta.url).href)}
    const peer = await createPeer({ transport: 'memory', topicPeers: false })
    await peer.stop()
  `
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' })
  if (child.status !== 0) throw new Error(`the peer's process failed: ${child.stderr}`)
  return child.stderr
}

t.test(
  'a real peer: silent by default, and libp2p debug output still comes when DEBUG asks for it',
  async (t) => {
    t.notMatch(peerStderr(undefined), /libp2p/, 'nothing from libp2p without DEBUG')
    t.match(peerStderr('libp2p:*'), /libp2p/, "libp2p's debug output with DEBUG=libp2p:*")
  },
)
