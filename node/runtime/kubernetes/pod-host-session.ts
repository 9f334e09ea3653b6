import { randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import { errorMessage, NexusError, type NexusErrorCode } from '../../../protocol/errors.ts'
import {
  ClosingSchema,
  decodeJson,
  OpenReplySchema,
  openFrame,
  parseFrame,
} from '../../../protocol/session-handshake.ts'
import { SocketFrames } from '../../pod-host/socket-frames.ts'
import type { UpstreamSession } from '../upstream.ts'

/** The first byte of a `closing` frame's canonical encoding: `{"nexus"`; JSON-RPC messages never start so. */
const CONTROL_PREFIX = Buffer.from('{"nexus"')

function isControlFrame(frame: Uint8Array): boolean {
  return (
    frame.byteLength >= CONTROL_PREFIX.byteLength &&
    CONTROL_PREFIX.equals(frame.subarray(0, CONTROL_PREFIX.byteLength))
  )
}

/**
 * One session with a stdio server in a pod, through the pod's host: the node's end of the TCP connection.
 * The pod host's `closing` frame (the server exited) becomes `onEnd` with its code; a connection that breaks
 * becomes UPSTREAM_UNAVAILABLE.
 */
export class PodHostSession implements UpstreamSession {
  onMessage: ((message: Uint8Array) => void) | undefined
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  readonly #frames: SocketFrames
  readonly #release: () => void
  #closed = false

  private constructor(frames: SocketFrames, release: () => void) {
    this.#frames = frames
    this.#release = release
    frames.onFrame((frame) => {
      if (!isControlFrame(frame)) return this.onMessage?.(frame)
      const closing = ClosingSchema.safeParse(decodeJson(frame))
      if (closing.success) this.#fail(closing.data.code as NexusErrorCode, closing.data.message)
    })
    frames.onEnd((error) =>
      this.#fail(
        'UPSTREAM_UNAVAILABLE',
        `the connection to the server's pod ${error === undefined ? 'ended' : `failed: ${error.message}`}`,
      ),
    )
  }

  /** Connects to a pod host and opens a session with `serverId`; rejects with the pod's refusal, if any. */
  static async open(
    address: string,
    port: number,
    serverId: string,
    release: () => void,
    timeoutMs = 10_000,
  ): Promise<PodHostSession> {
    const socket = connect({ host: address, port })
    const frames = new SocketFrames(socket)
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs)
        socket.once('connect', () => {
          clearTimeout(timer)
          resolve()
        })
        socket.once('error', (err) => {
          clearTimeout(timer)
          reject(err)
        })
      })
      frames.sendJson(openFrame(serverId, randomUUID(), { principal: 'nexus-node' }))
      const reply = parseFrame(OpenReplySchema, await frames.nextFrame(timeoutMs), 'open reply')
      if (reply.type === 'refused')
        throw new NexusError(
          'UPSTREAM_UNAVAILABLE',
          `the pod refused the session (${reply.code}): ${reply.message}`,
        )
    } catch (err) {
      socket.destroy()
      release()
      if (err instanceof NexusError) throw err
      throw new NexusError(
        'UPSTREAM_UNAVAILABLE',
        `cannot reach the pod at ${address}:${port}: ${errorMessage(err)}`,
      )
    }
    return new PodHostSession(frames, release)
  }

  send(message: Uint8Array): boolean {
    return this.#frames.send(message)
  }

  drained(): Promise<void> {
    return this.#frames.drained()
  }

  setOutputPaused(paused: boolean): void {
    if (paused) this.#frames.pause()
    else this.#frames.resume()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#release()
    await this.#frames.close()
  }

  #fail(code: NexusErrorCode, reason: string): void {
    if (this.#closed) return
    this.onEnd?.(code, reason)
    void this.close()
  }
}
