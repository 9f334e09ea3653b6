import type { Logger } from 'pino'
import { decodeJsonBounded } from '../../../protocol/bounded-json.ts'
import { NexusError } from '../../../protocol/errors.ts'
import { encodeJson } from '../../../protocol/session-handshake.ts'
import type { StdioProcess } from '../stdio-process.ts'

type Id = string | number
type Json = Record<string, unknown>
interface Message extends Json {
  jsonrpc: '2.0'
  id?: Id
  method?: string
  params?: Json
  result?: unknown
  error?: unknown
}

/** The revision a shared process is initialized with: every session on it speaks what it negotiated. */
export const SHARED_PROTOCOL_VERSION = '2025-11-25'
const INITIALIZE_TIMEOUT_MS = 30_000

/** What a session on a shared process receives and how it is ended. */
export interface SharedSessionPort {
  deliver(message: Uint8Array): void
  end(reason: string): void
}

/** A request a session has in flight on the process: who asked, under which id and progress token. */
interface Forwarded {
  session: SharedSessionPort
  id: Id
  progressToken?: Id
  /** The progress token it carries to the server in place of the session's. */
  upstreamToken?: Id
  /** A subscribe or unsubscribe the node sends on behalf of sessions: its answer goes nowhere else. */
  internal?: boolean
}

/**
 * One stdio server process serving many sessions (a manifest's `shared`): the node initializes it once, answers
 * each session's `initialize` from that, and rewrites what would collide — request ids and progress tokens —
 * so that every answer and every progress notification reaches the session it belongs to.
 *
 * - Resource subscriptions are counted per URI: the process is subscribed while any session is, and
 *   `resources/updated` goes to the sessions subscribed to that URI.
 * - Other notifications (list changes, log messages) concern every session and go to all of them.
 * - A shared server promises never to ask the client; a request it sends anyway goes to the one session with a
 *   request in flight, and is refused when that is not exactly one. `ping` is answered here.
 * - A session that ends cancels what it still has in flight, and leaves its subscriptions.
 */
export class SharedProcess {
  readonly process: StdioProcess
  readonly sessions = new Set<SharedSessionPort>()
  readonly #logger: Logger
  readonly #forwarded = new Map<Id, Forwarded>()
  /** Our progress token → the request that carries it. */
  readonly #progress = new Map<Id, Forwarded>()
  readonly #subscribers = new Map<string, Set<SharedSessionPort>>()
  /** The server's requests to a client → the session asked. */
  readonly #asked = new Map<Id, SharedSessionPort>()
  /** Sessions whose agent stopped reading and whose held-back output grew too large. */
  readonly #holding = new Set<SharedSessionPort>()
  #nextId = 1
  #initialized: Promise<Json>
  readonly #initializeFailed: (reason: string) => void

  constructor(process: StdioProcess, logger: Logger, clientVersion: string) {
    this.process = process
    this.#logger = logger
    const answer = Promise.withResolvers<Json>()
    this.#initialized = answer.promise
    // Awaited by each session's initialize; a process that never answers fails those, not the node.
    answer.promise.catch(() => {})
    const timer = setTimeout(
      () => answer.reject(new NexusError('UPSTREAM_UNAVAILABLE', 'the shared server did not initialize')),
      INITIALIZE_TIMEOUT_MS,
    )
    this.#initializeFailed = (reason) => {
      clearTimeout(timer)
      answer.reject(new NexusError('UPSTREAM_UNAVAILABLE', reason))
    }
    const initializeId = this.#nextId++
    this.#forwarded.set(initializeId, {
      id: initializeId,
      internal: true,
      session: {
        deliver: (bytes) => {
          clearTimeout(timer)
          const reply = parse(bytes)
          if (reply?.result === undefined)
            return answer.reject(
              new NexusError('UPSTREAM_UNAVAILABLE', 'the shared server refused initialize'),
            )
          this.#write({ jsonrpc: '2.0', method: 'notifications/initialized' })
          answer.resolve(reply.result as Json)
        },
        end: () => {},
      },
    })
    process.onMessage = (bytes) => this.#fromServer(bytes)
    this.#write({
      jsonrpc: '2.0',
      id: initializeId,
      method: 'initialize',
      params: {
        protocolVersion: SHARED_PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'nexus-node (shared)', version: clientVersion },
      },
    })
  }

  /** Resolves with the server's initialize result; rejects when it failed to initialize. */
  ready(): Promise<Json> {
    return this.#initialized
  }

  /** The process ended: an initialize still awaited fails, and every session on it ends. */
  exited(description: string): void {
    this.#initializeFailed(`the server process ${description} before it initialized`)
    for (const session of [...this.sessions]) session.end(`the server process ${description}`)
    this.sessions.clear()
  }

  attach(session: SharedSessionPort): void {
    this.sessions.add(session)
  }

  /** A session ended: its requests in flight are cancelled, its subscriptions left. */
  detach(session: SharedSessionPort): void {
    if (!this.sessions.delete(session)) return
    for (const [upstreamId, forwarded] of this.#forwarded) {
      if (forwarded.session !== session) continue
      this.#forget(upstreamId, forwarded)
      this.#write({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: upstreamId, reason: 'the session ended' },
      })
    }
    for (const [uri, subscribers] of this.#subscribers)
      if (subscribers.delete(session) && subscribers.size === 0) this.#unsubscribe(uri)
    for (const [id, asked] of this.#asked) if (asked === session) this.#asked.delete(id)
    this.hold(session, false)
  }

  /**
   * Back-pressure from one session's agent: while any session holds, the process's output is paused, as an
   * exclusive process's would be. The gateway cuts an agent's stalled response after its stall timeout, so one
   * slow agent holds up the others for at most that long.
   */
  hold(session: SharedSessionPort, holding: boolean): void {
    if (holding) this.#holding.add(session)
    else this.#holding.delete(session)
    this.process.setOutputPaused(this.#holding.size > 0)
  }

  /** A message a session sends. Returns false when the process's stdin is full (await `drained()`). */
  fromSession(session: SharedSessionPort, bytes: Uint8Array): boolean {
    const message = parse(bytes)
    if (message === undefined) return true
    if (message.method === undefined) return this.#answerToServer(session, message)
    if (message.id === undefined) return this.#notificationFromSession(session, message)
    switch (message.method) {
      case 'initialize':
        void this.#initializeSession(session, message.id)
        return true
      case 'resources/subscribe':
        return this.#subscribe(session, message)
      case 'resources/unsubscribe':
        return this.#unsubscribeSession(session, message)
      default:
        return this.#forward(session, message)
    }
  }

  async #initializeSession(session: SharedSessionPort, id: Id): Promise<void> {
    try {
      const result = await this.#initialized
      session.deliver(encodeJson({ jsonrpc: '2.0', id, result }))
    } catch (err) {
      session.deliver(
        encodeJson({ jsonrpc: '2.0', id, error: { code: -32603, message: (err as Error).message } }),
      )
    }
  }

  #forward(session: SharedSessionPort, message: Message, internal = false): boolean {
    const upstreamId = this.#nextId++
    const forwarded: Forwarded = { session, id: message.id!, internal }
    const meta = message.params?._meta as Json | undefined
    let params = message.params
    if (meta?.progressToken !== undefined) {
      forwarded.progressToken = meta.progressToken as Id
      const token = this.#nextId++
      forwarded.upstreamToken = token
      this.#progress.set(token, forwarded)
      params = { ...params, _meta: { ...meta, progressToken: token } }
    }
    this.#forwarded.set(upstreamId, forwarded)
    return this.#write({ ...message, id: upstreamId, ...(params === undefined ? {} : { params }) })
  }

  #notificationFromSession(session: SharedSessionPort, message: Message): boolean {
    if (message.method === 'notifications/initialized') return true
    if (message.method === 'notifications/cancelled') {
      const requestId = message.params?.requestId
      for (const [upstreamId, forwarded] of this.#forwarded)
        if (forwarded.session === session && forwarded.id === requestId && !forwarded.internal)
          return this.#write({ ...message, params: { ...message.params, requestId: upstreamId } })
      return true
    }
    // What a client tells its server about itself (roots changed) means nothing to a server it shares.
    if (message.method === 'notifications/roots/list_changed') return true
    return this.#write(message)
  }

  #answerToServer(session: SharedSessionPort, message: Message): boolean {
    if (message.id === undefined || this.#asked.get(message.id) !== session) return true
    this.#asked.delete(message.id)
    return this.#write(message)
  }

  #subscribe(session: SharedSessionPort, message: Message): boolean {
    const uri = String(message.params?.uri ?? '')
    const subscribers = this.#subscribers.get(uri)
    if (subscribers !== undefined && subscribers.size > 0) {
      subscribers.add(session)
      session.deliver(encodeJson({ jsonrpc: '2.0', id: message.id, result: {} }))
      return true
    }
    this.#subscribers.set(uri, new Set([session]))
    return this.#forward(session, message)
  }

  #unsubscribeSession(session: SharedSessionPort, message: Message): boolean {
    const uri = String(message.params?.uri ?? '')
    const subscribers = this.#subscribers.get(uri)
    subscribers?.delete(session)
    if (subscribers !== undefined && subscribers.size === 0) {
      this.#subscribers.delete(uri)
      return this.#forward(session, message)
    }
    session.deliver(encodeJson({ jsonrpc: '2.0', id: message.id, result: {} }))
    return true
  }

  /** The last subscriber of a URI left without asking (its session ended): the node unsubscribes for it. */
  #unsubscribe(uri: string): void {
    this.#subscribers.delete(uri)
    const nobody: SharedSessionPort = { deliver: () => {}, end: () => {} }
    this.#forward(nobody, { jsonrpc: '2.0', id: 0, method: 'resources/unsubscribe', params: { uri } }, true)
  }

  #fromServer(bytes: Uint8Array): void {
    const message = parse(bytes)
    if (message === undefined) {
      this.#logger.warn('shared server wrote a line that is not JSON-RPC')
      return
    }
    if (message.method === undefined) {
      const forwarded = message.id === undefined ? undefined : this.#forwarded.get(message.id)
      if (forwarded === undefined) return
      this.#forget(message.id!, forwarded)
      forwarded.session.deliver(encodeJson({ ...message, id: forwarded.id }))
      return
    }
    if (message.id !== undefined) this.#requestFromServer(message)
    else this.#notificationFromServer(message)
  }

  #notificationFromServer(message: Message): void {
    if (message.method === 'notifications/progress') {
      const forwarded = this.#progress.get(message.params?.progressToken as Id)
      if (forwarded === undefined || forwarded.progressToken === undefined) return
      forwarded.session.deliver(
        encodeJson({ ...message, params: { ...message.params, progressToken: forwarded.progressToken } }),
      )
      return
    }
    if (message.method === 'notifications/resources/updated') {
      const encoded = encodeJson(message)
      for (const session of this.#subscribers.get(String(message.params?.uri)) ?? []) session.deliver(encoded)
      return
    }
    if (message.method === 'notifications/cancelled') {
      const asked = this.#asked.get(message.params?.requestId as Id)
      asked?.deliver(encodeJson(message))
      return
    }
    const encoded = encodeJson(message)
    for (const session of this.sessions) session.deliver(encoded)
  }

  #requestFromServer(message: Message): void {
    if (message.method === 'ping') {
      this.#write({ jsonrpc: '2.0', id: message.id, result: {} })
      return
    }
    const askers = new Set([...this.#forwarded.values()].filter((f) => !f.internal).map((f) => f.session))
    if (askers.size !== 1) {
      this.#write({
        jsonrpc: '2.0',
        id: message.id,
        error: {
          code: -32603,
          message: `a shared server cannot ask a client (${message.method}): ${askers.size} sessions have requests in flight`,
        },
      })
      return
    }
    const [session] = askers
    this.#asked.set(message.id!, session!)
    session!.deliver(encodeJson(message))
  }

  #forget(upstreamId: Id, forwarded: Forwarded): void {
    this.#forwarded.delete(upstreamId)
    if (forwarded.upstreamToken !== undefined) this.#progress.delete(forwarded.upstreamToken)
  }

  #write(message: Message): boolean {
    return this.process.send(encodeJson(message))
  }
}

function parse(bytes: Uint8Array): Message | undefined {
  const parsed = decodeJsonBounded(bytes)
  if (!parsed.ok) return undefined
  const value = parsed.value as Message
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value.jsonrpc !== '2.0')
    return undefined
  return value
}
