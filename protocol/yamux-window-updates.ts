import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/**
 * Yamux window updates as the protocol's reference implementation (hashicorp/yamux) sends them: once the reader
 * has used half its receive window, not after every data frame.
 *
 * `@chainsafe/libp2p-yamux` 8 answers every data frame it receives with a window-update frame. An MCP message is
 * one data frame, so every request and every response made the other side encrypt and write a second frame:
 * in the relay's profile, a sixth of each peer's CPU per call went to window updates and their syscalls. Waiting
 * for half the window keeps the sender's credit at least half a window (128 KiB at first, growing to
 * `maxStreamWindowSize`), so a stream that is read keeps flowing, and one that is not read (paused) still
 * receives at most one window: back-pressure is unchanged.
 *
 * The stream class is the package's own (its `./stream` export); only this one method's timing changes. Frames
 * that carry flags (a stream's first answer, SYN/ACK) and paused streams go through the original as before.
 * `test/yamux-window-updates.test.ts` checks the patch still applies to the installed version.
 */
type WindowState = { state: StreamState; recvWindow: number; recvWindowCapacity: number }

const original = YamuxStream.prototype.sendWindowUpdate
let installed = false

export function sendWindowUpdatesAtHalfWindow(): void {
  if (installed) return
  installed = true
  YamuxStream.prototype.sendWindowUpdate = function sendWindowUpdateAtHalfWindow(this: YamuxStream) {
    const stream = this as unknown as WindowState
    const carriesNoFlags =
      stream.state === StreamState.Established ||
      stream.state === StreamState.SYNSent ||
      stream.state === StreamState.Finished
    if (carriesNoFlags && stream.recvWindowCapacity > stream.recvWindow / 2) return
    original.call(this)
  }
}

/** Whether the installed yamux still has the fields and method this relies on (for the test). */
export function windowUpdatePatchApplies(stream: YamuxStream): boolean {
  const fields = stream as unknown as Partial<WindowState>
  return (
    typeof original === 'function' &&
    typeof fields.recvWindow === 'number' &&
    typeof fields.recvWindowCapacity === 'number' &&
    typeof fields.state === 'number'
  )
}
