import type { ServerResponse } from 'node:http'
import type { FailoverEvent } from '../gateway-session.ts'
import { sendHttpError } from '../http-responses.ts'
import type { NetworkView } from '../network-view.ts'
import {
  allocationOf,
  changesBetween,
  hostingOf,
  type NetworkEvent,
  type NetworkSnapshot,
  type NodeView,
  nodeView,
  short,
} from './network-snapshot.ts'

const MAX_EVENTS = 100
const MAX_WATCHERS = 32
/** Pushed at least this often, so that the page's plots advance while nothing changes. */
const TICK_MS = 1_000
/** Changes closer together than this go out as one snapshot. */
const SETTLE_MS = 200

export interface NetworkFeedSource {
  view: NetworkView
  peerId: () => string
  links: () => string[]
  sessions: () => number
  onFailover: (listener: (event: FailoverEvent) => void) => () => void
}

/**
 * What the network page watches: snapshots of the network as this gateway sees it, pushed as server-sent
 * events when it changes and once a second, with a log of what happened (failovers, refusals, nodes and
 * placements coming and going). Bounded: 100 events kept, 32 watchers at once.
 */
export class NetworkFeed {
  readonly #source: NetworkFeedSource
  readonly #events: NetworkEvent[] = []
  readonly #watchers = new Set<ServerResponse>()
  #nodes: NodeView[] = []
  #timer: NodeJS.Timeout | undefined
  #pending: NodeJS.Timeout | undefined
  readonly #detach: (() => void)[] = []

  constructor(source: NetworkFeedSource) {
    this.#source = source
    const onChange = () => this.#changed()
    const onRefused = (r: { node: string; server: string; reason: string }) =>
      this.#log({
        at: Date.now(),
        kind: 'refused',
        text: `${r.server} on node ${short(r.node)} refused: ${r.reason}`,
      })
    source.view.on('change', onChange)
    source.view.on('refused', onRefused)
    this.#detach.push(
      () => source.view.off('change', onChange),
      () => source.view.off('refused', onRefused),
      source.onFailover((e) =>
        this.#log({
          at: Date.now(),
          kind: 'failover',
          text: `${e.session.serverId} session moved from node ${short(e.from)} to ${short(e.to)} (${e.reason.code}; ${e.retried} retried, ${e.failed} failed)`,
        }),
      ),
    )
    this.#nodes = this.#currentNodes()
  }

  snapshot(): NetworkSnapshot {
    const nodes = this.#currentNodes()
    return {
      at: Date.now(),
      gateway: {
        peerId: this.#source.peerId(),
        links: this.#source.links(),
        sessions: this.#source.sessions(),
      },
      nodes,
      servers: hostingOf(nodes),
      allocation: allocationOf(nodes),
      events: [...this.#events],
    }
  }

  /** `/network/events`: a stream of snapshots until the page goes. */
  watch(res: ServerResponse): void {
    if (this.#watchers.size >= MAX_WATCHERS) {
      sendHttpError(res, 503, -32000, `Service unavailable: ${MAX_WATCHERS} pages watch already`, {
        'retry-after': '5',
      })
      return
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    })
    this.#watchers.add(res)
    res.once('close', () => {
      this.#watchers.delete(res)
      if (this.#watchers.size === 0) this.#stopTicking()
    })
    this.#send(res, this.snapshot())
    this.#timer ??= setInterval(() => this.#broadcast(), TICK_MS).unref()
  }

  close(): void {
    for (const detach of this.#detach) detach()
    this.#stopTicking()
    for (const res of this.#watchers) res.end()
    this.#watchers.clear()
  }

  #currentNodes(): NodeView[] {
    return this.#source.view
      .liveAnnouncements()
      .map(nodeView)
      .sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  #changed(): void {
    const nodes = this.#currentNodes()
    for (const event of changesBetween(this.#nodes, nodes, Date.now())) this.#log(event, false)
    this.#nodes = nodes
    if (this.#watchers.size > 0) this.#pending ??= setTimeout(() => this.#broadcast(), SETTLE_MS).unref()
  }

  #log(event: NetworkEvent, push = true): void {
    this.#events.push(event)
    if (this.#events.length > MAX_EVENTS) this.#events.shift()
    if (push && this.#watchers.size > 0)
      this.#pending ??= setTimeout(() => this.#broadcast(), SETTLE_MS).unref()
  }

  #broadcast(): void {
    clearTimeout(this.#pending)
    this.#pending = undefined
    if (this.#watchers.size === 0) return
    const snapshot = this.snapshot()
    for (const res of this.#watchers) this.#send(res, snapshot)
  }

  #send(res: ServerResponse, snapshot: NetworkSnapshot): void {
    // A page that stopped reading is not waited for: it gets the next snapshot once it drains.
    if (res.writableNeedDrain) return
    res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`)
  }

  #stopTicking(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    clearTimeout(this.#pending)
    this.#pending = undefined
  }
}
