import { EventEmitter } from 'node:events'
import type { FramedStream } from '../protocol/framed-stream.ts'

export interface KeptStreamsOptions {
  /** How long a stream may wait for its next request before it is closed. */
  idleMs: number
  /** Streams kept per node at most; one more is closed rather than kept. */
  maxPerNode?: number
}

interface Idle {
  framed: FramedStream
  since: number
}

/** What the pool did, for metrics and the benchmark. */
export interface KeptStreamCounts {
  /** Streams a request took from the pool. */
  reused: number
  /** Streams given back after an answer. */
  kept: number
  /** Kept streams closed for having waited `idleMs`. */
  expired: number
  /** Kept streams that ended or misbehaved while they waited. */
  lost: number
}

/**
 * Streams to nodes that served a modern request and stay open for the next one (`keep` in the handshake):
 * opening a libp2p stream costs both peers a protocol negotiation and peer-store writes, more than a small
 * request itself. A stream waits here between requests; the most recently used is taken first, so a burst's
 * surplus goes idle and expires. A stream that ends, or sends anything, while it waits is dropped.
 */
export class KeptStreams extends EventEmitter<{ lost: []; expired: [] }> {
  readonly #idleMs: number
  readonly #maxPerNode: number
  readonly #byNode = new Map<string, Idle[]>()
  #sweeper: NodeJS.Timeout | undefined
  readonly counts: KeptStreamCounts = { reused: 0, kept: 0, expired: 0, lost: 0 }

  constructor(options: KeptStreamsOptions) {
    super()
    this.#idleMs = options.idleMs
    this.#maxPerNode = options.maxPerNode ?? 256
  }

  get enabled(): boolean {
    return this.#idleMs > 0
  }

  /** How many streams wait, over all nodes. */
  get size(): number {
    let n = 0
    for (const list of this.#byNode.values()) n += list.length
    return n
  }

  /** A waiting stream to `peerId`, now the caller's, with no handlers attached; undefined when none waits. */
  take(peerId: string): FramedStream | undefined {
    const list = this.#byNode.get(peerId)
    const idle = list?.pop()
    if (list?.length === 0) this.#byNode.delete(peerId)
    if (idle === undefined) return undefined
    idle.framed.detach()
    this.counts.reused++
    return idle.framed
  }

  /** Keeps a stream whose request is answered, or closes it when it cannot wait (ended, pool full, disabled). */
  give(peerId: string, framed: FramedStream): void {
    const list = this.#byNode.get(peerId) ?? []
    if (!this.enabled || !framed.writable || framed.ended || list.length >= this.#maxPerNode) {
      void framed.close()
      return
    }
    this.#byNode.set(peerId, list)
    const idle: Idle = { framed, since: Date.now() }
    list.push(idle)
    this.counts.kept++
    // Nothing may arrive between requests: a frame now is a confused or hostile node.
    framed.onFrame(() => this.#drop(peerId, idle, true))
    framed.onEnd(() => this.#drop(peerId, idle, false))
    this.#sweeper ??= setInterval(() => this.#sweep(), Math.max(1_000, this.#idleMs / 4)).unref()
  }

  /** Closes every waiting stream (the gateway stops). */
  closeAll(): void {
    for (const [peerId, list] of this.#byNode)
      for (const idle of [...list]) this.#drop(peerId, idle, true, false)
    clearInterval(this.#sweeper)
    this.#sweeper = undefined
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#idleMs
    for (const [peerId, list] of this.#byNode)
      for (const idle of list.filter((i) => i.since <= cutoff)) {
        this.counts.expired++
        this.#drop(peerId, idle, true, false)
        this.emit('expired')
      }
    if (this.#byNode.size === 0) {
      clearInterval(this.#sweeper)
      this.#sweeper = undefined
    }
  }

  #drop(peerId: string, idle: Idle, close: boolean, lost = true): void {
    const list = this.#byNode.get(peerId)
    const at = list?.indexOf(idle) ?? -1
    if (at < 0) return
    list!.splice(at, 1)
    if (list!.length === 0) this.#byNode.delete(peerId)
    idle.framed.detach()
    if (close) void idle.framed.close()
    if (!lost) return
    this.counts.lost++
    this.emit('lost')
  }
}
