import { once } from 'node:events'
import { createServer } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import t from 'tap'
import { ISOLATED_RETRY_MS } from '../protocol/bootstrap-keeper.ts'
import { createPeer } from '../protocol/peer.ts'

t.test(
  'a peer with no connection redials its bootstrap peer within ISOLATED_RETRY_MS, not 60 s',
  async (t) => {
    // A port that accepts TCP and closes at once: every dial to it fails fast, as to a peer refusing connections.
    const refuser = createServer((socket) => socket.destroy())
    refuser.listen(0, '127.0.0.1')
    await once(refuser, 'listening')
    t.teardown(() => refuser.close())
    const { port } = refuser.address() as { port: number }
    const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const retries: number[] = []
    const enough = Promise.withResolvers<void>()
    const logger = pino(
      { level: 'warn' },
      {
        write(line: string) {
          const entry = JSON.parse(line) as { msg: string; retryInMs?: number }
          if (entry.msg !== 'bootstrap peer unreachable' || entry.retryInMs === undefined) return
          retries.push(entry.retryInMs)
          if (retries.length >= 4) enough.resolve()
        },
      },
    )
    const peer = await createPeer({
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${absent}`],
      logger,
    })
    t.teardown(() => peer.stop())
    const timeout = setTimeout(() => enough.reject(new Error(`only ${retries.length} dials in 30 s`)), 30_000)
    await enough.promise
    clearTimeout(timeout)
    t.same(retries.slice(0, 3), [1_000, 2_000, 4_000], 'the back-off doubles from 1 s')
    t.equal(
      retries[3],
      ISOLATED_RETRY_MS,
      'and stops at ISOLATED_RETRY_MS while the peer has no connection (8 s otherwise)',
    )
    t.equal(peer.getConnections().length, 0, 'no connection was made meanwhile')
  },
)
