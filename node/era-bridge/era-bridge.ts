import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { errorMessage } from '../../protocol/errors.ts'
import {
  encodeRequestState,
  META_CLIENT_CAPABILITIES,
  META_CLIENT_INFO,
  META_SERVER_INFO,
  META_SUBSCRIPTION_ID,
  MODERN_VERSIONS,
  parseRequestState,
  requestMeta,
} from '../../protocol/modern-era.ts'
import type { Runtime } from '../runtime/runtime.ts'
import {
  BridgeSession,
  invalidParams,
  type ModernRequest,
  type RequestSink,
  serverUnavailable,
} from './bridge-session.ts'
import { forwardModern } from './modern-forward.ts'

type Json = Record<string, unknown>

export interface EraBridgeOptions {
  runtime: Runtime
  /** This node's peer id: follow-ups of suspended calls name it, so gateways route them back here. */
  peerId: () => string
  logger: Logger
  /** Idle legacy sessions kept per server and kind of client, ready for the next request (default 64). */
  maxIdle?: number
  /** Legacy sessions per server and kind of client at most; more requests wait for one (default 32). */
  maxSessions?: number
  /** How long an idle legacy session is kept before it is closed (default 60 s). */
  idleTimeoutMs?: number
  /** How long a call may wait for the client's follow-up before its session is dropped. */
  suspendTimeoutMs?: number
}

/** An open `subscriptions/listen` stream. */
interface Listener {
  serverId: string
  id: ModernRequest['id']
  honored: Json
  sink: RequestSink
  session: BridgeSession
}

interface Pool {
  /** Idle sessions, the most recently used last, with when each became idle. */
  idle: BridgeSession[]
  idleSince: Map<BridgeSession, number>
  /** Sessions of this pool that exist (idle, busy or being opened). */
  size: number
  /** Requests waiting for a session, first come first served. */
  waiting: ((session: BridgeSession | Error) => void)[]
}

/**
 * Makes a legacy server (one that speaks only the `initialize` era) usable by modern clients: each modern
 * request runs on a legacy session the node keeps for that server and that kind of client (the client
 * capabilities from `_meta` decide what the session declares). Sessions are pooled and reused; a call that
 * needs the client's input is suspended, its session set aside under the `requestState` the client gets, and
 * the follow-up carrying that state resumes it here.
 */
export class EraBridge {
  readonly #options: EraBridgeOptions
  readonly #pools = new Map<string, Pool>()
  /** Sessions whose call waits for the client's input, by the token in their `requestState`. */
  readonly #suspended = new Map<string, { session: BridgeSession; serverId: string; timer: NodeJS.Timeout }>()
  readonly #all = new Set<BridgeSession>()
  readonly #listeners = new Set<Listener>()
  #sweeper: NodeJS.Timeout | undefined

  constructor(options: EraBridgeOptions) {
    this.#options = options
  }

  /** Serves one modern request for `serverId`; the answer goes to `sink`. Returns how to cancel it. */
  async handle(
    serverId: string,
    request: ModernRequest,
    sink: RequestSink,
  ): Promise<(reason: string) => void> {
    // A server that speaks the revision itself gets the request as it is: no bridge, its own requestState.
    const native = this.#options.runtime.modernEndpoint?.(serverId)
    if (native !== undefined) return forwardModern(native, request, sink)
    const state = parseRequestState(request.params?.requestState)
    if (request.params?.requestState !== undefined) return this.#resume(serverId, request, state?.token, sink)
    const meta = requestMeta(request.params) ?? {}
    const capabilities = legacyCapabilities(meta[META_CLIENT_CAPABILITIES])
    const clientInfo = (meta[META_CLIENT_INFO] ?? { name: 'modern-client', version: '0.0.0' }) as Json
    const key = `${serverId}\n${createHash('sha256').update(JSON.stringify(capabilities)).digest('hex')}`
    let session: BridgeSession
    try {
      session = await this.#acquire(serverId, key, capabilities, clientInfo)
    } catch (err) {
      sink.respond(serverUnavailable(request.id, errorMessage(err)))
      return () => {}
    }
    if (request.method === 'subscriptions/listen') return this.#listen(serverId, request, session, sink)
    if (request.method === 'server/discover') {
      sink.respond({ jsonrpc: '2.0', id: request.id, result: discoverResult(session) })
      this.#release(key, session)
      return () => {}
    }
    session.onSettled = () => this.#settled(key, session)
    session.call(request, this.#stateStamping(session, serverId, sink))
    return (reason) => session.cancel(reason)
  }

  /** Closes every legacy session (the node is stopping, or the server is no longer hosted). */
  async close(serverId?: string): Promise<void> {
    if (serverId === undefined) clearTimeout(this.#sweeper)
    const closing: BridgeSession[] = []
    for (const [key, pool] of this.#pools) {
      if (serverId !== undefined && !key.startsWith(`${serverId}\n`)) continue
      closing.push(...pool.idle)
      this.#pools.delete(key)
    }
    for (const [token, entry] of this.#suspended) {
      if (serverId !== undefined && entry.serverId !== serverId) continue
      clearTimeout(entry.timer)
      this.#suspended.delete(token)
      closing.push(entry.session)
    }
    if (serverId === undefined) closing.push(...this.#all)
    await Promise.all([...new Set(closing)].map((s) => s.close()))
  }

  /**
   * `subscriptions/listen`: the session becomes the subscription's own. The acknowledgment names what the
   * server can honour (its legacy capabilities say which lists change, whether resources can be subscribed);
   * list changes seen on any of the server's sessions, and updates of the subscribed resources, follow.
   */
  async #listen(serverId: string, request: ModernRequest, session: BridgeSession, sink: RequestSink) {
    const asked = (request.params?.notifications ?? {}) as Json
    const capabilities = session.info!.capabilities as {
      tools?: { listChanged?: boolean }
      prompts?: { listChanged?: boolean }
      resources?: { listChanged?: boolean; subscribe?: boolean }
    }
    const honored: Json = {}
    if (asked.toolsListChanged === true && capabilities.tools?.listChanged) honored.toolsListChanged = true
    if (asked.promptsListChanged === true && capabilities.prompts?.listChanged)
      honored.promptsListChanged = true
    if (asked.resourcesListChanged === true && capabilities.resources?.listChanged)
      honored.resourcesListChanged = true
    const uris = Array.isArray(asked.resourceSubscriptions)
      ? asked.resourceSubscriptions.filter((u): u is string => typeof u === 'string').slice(0, 256)
      : []
    if (uris.length > 0 && capabilities.resources?.subscribe) {
      const subscribed: string[] = []
      for (const uri of uris)
        if ((await session.request('resources/subscribe', { uri })).result !== undefined) subscribed.push(uri)
      honored.resourceSubscriptions = subscribed
    }
    const listener: Listener = { serverId, id: request.id, honored, sink, session }
    this.#listeners.add(listener)
    sink.notify({
      jsonrpc: '2.0',
      method: 'notifications/subscriptions/acknowledged',
      params: { _meta: { [META_SUBSCRIPTION_ID]: request.id }, notifications: honored },
    })
    return () => {
      this.#listeners.delete(listener)
      this.#all.delete(session)
      void session.close()
    }
  }

  /** A notification about the server: to every listener of that server that asked for its kind. */
  #fanOut(serverId: string, from: BridgeSession, message: Json): void {
    const params = (message.params ?? {}) as Json
    for (const listener of this.#listeners) {
      if (listener.serverId !== serverId) continue
      const wanted =
        (message.method === 'notifications/tools/list_changed' &&
          listener.honored.toolsListChanged === true) ||
        (message.method === 'notifications/prompts/list_changed' &&
          listener.honored.promptsListChanged === true) ||
        (message.method === 'notifications/resources/list_changed' &&
          listener.honored.resourcesListChanged === true) ||
        (message.method === 'notifications/resources/updated' &&
          from === listener.session &&
          (listener.honored.resourceSubscriptions as string[] | undefined)?.includes(String(params.uri)))
      if (!wanted) continue
      const meta = { ...((params._meta ?? {}) as Json), [META_SUBSCRIPTION_ID]: listener.id }
      listener.sink.notify({ jsonrpc: '2.0', method: message.method, params: { ...params, _meta: meta } })
    }
  }

  /** Legacy sessions open now (idle, busy or suspended), for status and tests. */
  get sessions(): number {
    return this.#all.size
  }

  #resume(serverId: string, request: ModernRequest, token: string | undefined, sink: RequestSink) {
    const entry = token === undefined ? undefined : this.#suspended.get(token)
    if (entry === undefined || entry.serverId !== serverId) {
      sink.respond(invalidParams(request.id, 'requestState is unknown here, expired, or not this server'))
      return () => {}
    }
    const { session } = entry
    // A refused follow-up (an answer missing) leaves the call waiting under the same state, for a better one.
    if (
      !session.resume(request, request.params?.inputResponses, this.#stateStamping(session, serverId, sink))
    )
      return () => {}
    clearTimeout(entry.timer)
    this.#suspended.delete(token!)
    return (reason: string) => session.cancel(reason)
  }

  /**
   * The sink a call answers through: an `input_required` answer gets the `requestState` that brings the
   * follow-up back to this node and this session.
   */
  #stateStamping(session: BridgeSession, serverId: string, sink: RequestSink): RequestSink {
    return {
      notify: (message) => sink.notify(message),
      respond: (message) => {
        const result = message.result as Json | undefined
        if (result?.resultType === 'input_required') {
          const token = randomBytes(18).toString('base64url')
          const timer = setTimeout(() => {
            this.#suspended.delete(token)
            void session.close()
          }, this.#options.suspendTimeoutMs ?? 300_000)
          timer.unref()
          this.#suspended.set(token, { session, serverId, timer })
          result.requestState = encodeRequestState(this.#options.peerId(), token)
        }
        sink.respond(message)
      },
    }
  }

  /** A call ended or suspended: a free session goes back to its pool. */
  #settled(key: string, session: BridgeSession): void {
    if (session.suspended) return
    this.#release(key, session)
  }

  /**
   * A session for one request: an idle one, a new one while the pool is under `maxSessions`, or else the next
   * one released. Bounding the pool keeps a burst of requests from starting a process each at once (on a
   * small machine that starves the node, which then misses its announcements), and queues them instead.
   */
  async #acquire(
    serverId: string,
    key: string,
    capabilities: Json,
    clientInfo: Json,
  ): Promise<BridgeSession> {
    const pool: Pool = this.#pools.get(key) ?? { idle: [], idleSince: new Map(), size: 0, waiting: [] }
    this.#pools.set(key, pool)
    let session = pool.idle.pop()
    while (session?.ended) session = pool.idle.pop()
    if (session !== undefined) {
      pool.idleSince.delete(session)
      return session
    }
    if (pool.size >= (this.#options.maxSessions ?? 32)) {
      const handed = await new Promise<BridgeSession | Error>((resolve) => pool.waiting.push(resolve))
      if (handed instanceof Error) throw handed
      return handed
    }
    pool.size++
    let fresh: BridgeSession | undefined
    try {
      const upstream = await this.#options.runtime.open(serverId)
      fresh = new BridgeSession(upstream, this.#options.logger.child({ serverId, bridge: true }))
      const opened = fresh
      this.#all.add(opened)
      opened.onNotification = (message) => this.#fanOut(serverId, opened, message)
      opened.onEnded = () => {
        this.#all.delete(opened)
        pool.size--
        pool.idleSince.delete(opened)
        const at = pool.idle.indexOf(opened)
        if (at >= 0) pool.idle.splice(at, 1)
        // A waiting request may now open a session of its own.
        pool.waiting.shift()?.(new Error('a legacy session ended; try again'))
      }
      await opened.initialize(capabilities, clientInfo)
      return opened
    } catch (err) {
      // Nothing opened: the slot is free again. A session that failed to initialize gives it back as it ends.
      if (fresh === undefined) pool.size--
      else void fresh.close()
      throw err
    }
  }

  #release(key: string, session: BridgeSession): void {
    const pool = this.#pools.get(key)
    if (session.ended || session.busy) return
    const waiter = pool?.waiting.shift()
    if (waiter !== undefined) {
      waiter(session)
      return
    }
    if (pool === undefined || pool.idle.length >= (this.#options.maxIdle ?? 64)) {
      void session.close()
      return
    }
    pool.idle.push(session)
    pool.idleSince.set(session, Date.now())
    this.#sweepSoon()
  }

  /**
   * Closes sessions idle for longer than the idle timeout: a burst of concurrent requests leaves many open
   * (each legacy session serves one call at a time), and they are kept while the load lasts, not forever.
   */
  #sweepSoon(): void {
    if (this.#sweeper !== undefined) return
    const timeoutMs = this.#options.idleTimeoutMs ?? 60_000
    this.#sweeper = setTimeout(() => {
      this.#sweeper = undefined
      const cutoff = Date.now() - timeoutMs
      let left = 0
      for (const pool of this.#pools.values()) {
        for (const session of [...pool.idle]) {
          if ((pool.idleSince.get(session) ?? 0) > cutoff) continue
          pool.idle.splice(pool.idle.indexOf(session), 1)
          pool.idleSince.delete(session)
          void session.close()
        }
        left += pool.idle.length
      }
      if (left > 0) this.#sweepSoon()
    }, timeoutMs)
    this.#sweeper.unref()
  }
}

/** The client capabilities a legacy session declares: what a legacy server may ask of the client. */
function legacyCapabilities(declared: unknown): Json {
  const capabilities = (typeof declared === 'object' && declared !== null ? declared : {}) as Json
  const kept: Json = {}
  for (const name of ['sampling', 'elicitation', 'roots'])
    if (capabilities[name] !== undefined) kept[name] = capabilities[name]
  return kept
}

/** `server/discover`, answered from what the legacy server said when the bridge opened its session. */
function discoverResult(session: BridgeSession): Json {
  const info = session.info!
  return {
    resultType: 'complete',
    supportedVersions: [...MODERN_VERSIONS],
    capabilities: info.capabilities,
    ...(info.instructions === undefined ? {} : { instructions: info.instructions }),
    ttlMs: 0,
    cacheScope: 'private',
    _meta: { [META_SERVER_INFO]: info.serverInfo },
  }
}
