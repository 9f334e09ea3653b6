import { once } from 'node:events'
import type { Stream } from '@libp2p/interface'
import t, { type Test } from 'tap'
import { createPeer } from '../protocol/peer.ts'
import { windowUpdatePatchApplies } from '../protocol/yamux-window-updates.ts'

const PROTOCOL = '/nexus/test/window/1.0.0'
/** Yamux frame type 1 (RFC-like spec of hashicorp/yamux): a window update. */
const WINDOW_UPDATE = 1

/**
 * Two real peers (memory transport: noise and yamux as over TCP); the reader counts the window-update frames its
 * side of the stream sends while the writer sends `messages`.
 */
async function exchange(t: Test, messages: Uint8Array[]) {
  const total = messages.reduce((sum, m) => sum + m.byteLength, 0)
  let windowUpdates = 0
  let received = 0
  let patchApplies = false
  const reader = await createPeer({ transport: 'memory' })
  t.teardown(() => reader.stop())
  const all = new Promise<void>((resolve) =>
    reader.handle(PROTOCOL, (inbound: Stream) => {
      patchApplies = windowUpdatePatchApplies(inbound as never)
      const frames = inbound as unknown as {
        sendFrame: (header: { type: number }, body?: unknown) => boolean
      }
      const sendFrame = frames.sendFrame
      frames.sendFrame = (header, body) => {
        if (header.type === WINDOW_UPDATE) windowUpdates++
        return sendFrame(header, body)
      }
      inbound.addEventListener('message', (evt) => {
        received += evt.data.byteLength
        if (received >= total) resolve()
      })
    }),
  )
  const writer = await createPeer({ transport: 'memory', bootstrap: [reader.getMultiaddrs()[0]!.toString()] })
  t.teardown(() => writer.stop())
  const outbound = await writer.dialProtocol(reader.peerId, PROTOCOL)
  for (const message of messages) if (!outbound.send(message)) await once(outbound, 'drain')
  await all
  t.ok(patchApplies, 'the installed yamux has what the patch changes')
  return { windowUpdates, received }
}

t.test('small messages do not each cost a window update', async (t) => {
  const messages = Array.from({ length: 200 }, () => new Uint8Array(100))
  const { windowUpdates, received } = await exchange(t, messages)
  t.equal(received, 200 * 100, 'every byte arrived')
  t.ok(
    windowUpdates <= 1,
    `200 messages, ${windowUpdates} window updates (yamux 8 alone sends one per frame)`,
  )
})

t.test('a stream larger than many windows keeps flowing: the reader still gives credit', async (t) => {
  const messages = Array.from({ length: 96 }, () => new Uint8Array(64 * 1024))
  const { windowUpdates, received } = await exchange(t, messages)
  t.equal(received, 96 * 64 * 1024, '6 MiB arrived through a 256 KiB initial window')
  t.ok(windowUpdates >= 2, `credit was given as the window was used (${windowUpdates} updates)`)
  t.ok(windowUpdates < 96, 'but not once per frame')
})
