import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import { errorMessage, isNexusError } from '../protocol/errors.ts'
import type { InputGuard } from '../protocol/input-guard.ts'
import { errorResponse, JsonRpcCode } from '../protocol/rpc-codes.ts'
import type { AuthContext } from '../protocol/session-handshake.ts'
import { mayUseTool } from './authenticator.ts'
import type { InFlightBudget } from './in-flight-budget.ts'
import { GatewayErrorCode, isRequest, isResponse, type JsonRpcRequest } from './jsonrpc.ts'
import type { LinkEnd, NodeLink } from './node-link.ts'
import type { ResponseBacklog } from './response-backlog.ts'
import type { RetrySafety } from './retry-safety.ts'
import { SessionReplay } from './session-replay.ts'

/** The agent's end of a session, whichever MCP transport it uses. */
export interface ClientChannel {
  /** `relatedRequestId` names the client request a server message belongs to, so it travels on that stream. */
  send(message: JSONRPCMessage, relatedRequestId?: RequestId): Promise<void>
  /** Whether the agent holds a stream for messages unrelated to any request (the GET stream). */
  hasStandaloneStream(): boolean
  /** Stops waiting for a request's answer (it was cancelled), releasing its HTTP stream. */
  releaseRequest(id: RequestId): void
  /** The agent's responses: congested while the agent reads slower than the server writes. */
  readonly backlog: Pick<ResponseBacklog, 'congested' | 'whenClear'>
  close(): Promise<void>
}

interface InFlight {
  request: JsonRpcRequest
  progressToken: unknown
  /** `performance.now()` when the agent sent it. */
  startedAt: number
}

export type RequestOutcome = 'ok' | 'error' | 'failed'

export interface FailoverEvent {
  session: GatewaySession
  from: string
  to: string
  reason: LinkEnd
  /** Requests sent again on the new node, and requests answered with an error because they were unsafe. */
  retried: number
  failed: number
}

export interface GatewaySessionInit {
  id: string
  serverId: string
  auth: AuthContext
  client: ClientChannel
  /** Opens a session on a node hosting the server, avoiding the given nodes. */
  connect: (exclude: Set<string>) => Promise<NodeLink>
  retrySafety: RetrySafety
  /** The requests every session of the gateway has waiting, against the per-session and per-principal limits. */
  inFlightBudget: InFlightBudget
  /** Contains and counts what one bad message causes. */
  guard: InputGuard
  /** How long a new node may take to answer the replayed `initialize`. */
  replayTimeoutMs: number
  /** How long a session whose node failed keeps looking for another host (0: one try). */
  takeoverTimeoutMs?: number
  logger: Logger
  onClientRequest?: (session: GatewaySession) => void
  /** An agent's request got its answer: the server's (`ok` or `error`), or the gateway's own (`failed`). */
  onRequestDone?: (method: string, outcome: RequestOutcome, seconds: number) => void
  onFailover?: (event: FailoverEvent) => void
  /** The agent could not keep up, so the session stopped reading from its node until it catches up. */
  onBackPressure?: (session: GatewaySession) => void
  onClosed: (session: GatewaySession) => void
}

/**
 * One agent session: relays messages between the agent's transport and the node that hosts the server. It
 * tracks the agent's requests in flight so that every one gets an answer — the server's, or an error that
 * says the node failed — and so that server messages travel on the HTTP stream of the request they serve.
 * When its node fails, the session moves to another host of the server: the recorded handshake is replayed
 * there, requests that are safe to run twice are sent again, the others fail with a clear error, and the
 * agent keeps its session id.
 */
export class GatewaySession {
  readonly id: string
  readonly serverId: string
  readonly auth: AuthContext
  readonly createdAt = Date.now()
  lastActivity = Date.now()
  readonly #init: GatewaySessionInit
  readonly #client: ClientChannel
  readonly #logger: Logger
  readonly #inFlight = new Map<RequestId, InFlight>()
  #idleWaiters: (() => void)[] = []
  readonly #replay = new SessionReplay()
  /** Messages from the agent while no node is attached (opening, or moving to another node). */
  #pending: JSONRPCMessage[] | undefined = []
  #link: NodeLink | undefined
  #opened = false
  #heldBack = false
  #closing: Promise<void> | undefined

  constructor(init: GatewaySessionInit) {
    this.id = init.id
    this.serverId = init.serverId
    this.auth = init.auth
    this.#init = init
    this.#client = init.client
    this.#logger = init.logger
  }

  get nodePeerId(): string | undefined {
    return this.#link?.peerId
  }

  /** The link to the current node, for liveness checks. */
  get link(): NodeLink | undefined {
    return this.#link
  }

  get inFlightCount(): number {
    return this.#inFlight.size
  }

  get closed(): boolean {
    return this.#closing !== undefined
  }

  /** Whether the session waits for a slow agent before reading more from its node. */
  get heldBack(): boolean {
    return this.#heldBack
  }

  /**
   * A message from the agent. Whatever goes wrong with it is contained here: counted, logged, and a request
   * answered with an error (never left waiting), while the session carries on.
   */
  fromClient(message: JSONRPCMessage): void {
    try {
      this.#fromClient(message)
    } catch (err) {
      this.#init.guard.failed('agent', err, { sessionId: this.id })
      if (isRequest(message)) {
        this.#untrack(message.id)
        void this.#deliver(
          errorResponse(
            message.id,
            JsonRpcCode.InternalError,
            'Internal error: the gateway could not relay this request',
          ),
          undefined,
        )
      }
    }
  }

  #fromClient(message: JSONRPCMessage): void {
    this.lastActivity = Date.now()
    if (this.#closing !== undefined) {
      if (isRequest(message))
        void this.#deliver(
          errorResponse(message.id, GatewayErrorCode.SessionClosed, 'the session is closed'),
          undefined,
        )
      return
    }
    if (isRequest(message) && message.method === 'tools/call') {
      const tool = String((message.params as { name?: unknown } | undefined)?.name ?? '')
      if (!mayUseTool(this.auth, this.serverId, tool)) {
        const refusal = `tool ${tool} of server ${this.serverId} is not permitted to ${this.auth.principal}`
        void this.#deliver(errorResponse(message.id, GatewayErrorCode.Forbidden, refusal), undefined)
        return
      }
    }
    if (isRequest(message)) {
      if (this.#inFlight.has(message.id)) {
        // Its answer could not be told from the other's: JSON-RPC ids are unique among requests waiting.
        const refusal = `Invalid Request: a request with id ${JSON.stringify(message.id)} is already waiting on this session`
        void this.#deliver(errorResponse(message.id, JsonRpcCode.InvalidRequest, refusal), undefined)
        return
      }
      const refusal = this.#init.inFlightBudget.take(this.auth.principal, this.#inFlight.size)
      if (refusal !== undefined) {
        this.#init.guard.refused('agent', refusal, { sessionId: this.id })
        void this.#deliver(
          errorResponse(message.id, GatewayErrorCode.Overloaded, `Overloaded: ${refusal}; nothing was sent`),
          undefined,
        )
        return
      }
      const meta = (message.params as { _meta?: { progressToken?: unknown } } | undefined)?._meta
      this.#inFlight.set(message.id, {
        request: message,
        progressToken: meta?.progressToken,
        startedAt: performance.now(),
      })
      this.#init.onClientRequest?.(this)
    } else if ('method' in message && message.method === 'notifications/cancelled') {
      const requestId = (message.params as { requestId?: RequestId } | undefined)?.requestId
      if (requestId !== undefined && this.#untrack(requestId)) this.#client.releaseRequest(requestId)
    }
    this.#replay.fromClient(message)
    if (this.#pending !== undefined) {
      this.#pending.push(message)
      if (!this.#opened) {
        this.#opened = true
        void this.#open()
      }
      return
    }
    if (!this.#link!.send(message) && isRequest(message)) {
      const refusal =
        "the node is not taking this session's messages fast enough; nothing was sent, try again later"
      void this.#failRequests([message.id], GatewayErrorCode.Overloaded, refusal)
    }
  }

  /** Gives up on the current node (it stopped answering) and moves the session to another. */
  abandonNode(reason: string): void {
    const link = this.#link
    if (link === undefined || this.#closing !== undefined) return
    link.abort(reason)
    void this.#nodeEnded(link, { code: 'NODE_FAILED', reason })
  }

  /** Resolves once no request of the agent waits for an answer. */
  async whenIdle(): Promise<void> {
    while (this.#inFlight.size > 0 && this.#closing === undefined)
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
  }

  /** Ends the session, first answering every request still waiting with an error that says why. */
  async shutdown(reason: string): Promise<void> {
    await this.#failInFlight(GatewayErrorCode.SessionClosed, reason)
    await this.close()
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    // Set before closing the transport: its close handler calls back into close().
    const { promise, resolve } = Promise.withResolvers<void>()
    this.#closing = promise
    // What still waits will get no answer through this session: its share of the budget comes back now.
    this.#init.inFlightBudget.give(this.auth.principal, this.#inFlight.size)
    this.#inFlight.clear()
    void Promise.allSettled([this.#link?.close(), this.#client.close()]).then(() => {
      this.#init.onClosed(this)
      resolve()
    })
    return promise
  }

  async #open(): Promise<void> {
    let link: NodeLink
    try {
      link = await this.#init.connect(new Set())
    } catch (err) {
      this.#logger.warn({ err }, 'no node could take the session')
      if (isNexusError(err, 'NODE_BUSY'))
        await this.#failInFlight(GatewayErrorCode.Busy, errorMessage(err), { retryAfterMs: err.retryAfterMs })
      else await this.#failInFlight(GatewayErrorCode.NoHost, errorMessage(err))
      await this.close()
      return
    }
    this.#attach(link, [])
    this.#logger.debug({ node: link.peerId }, 'session opened on node')
  }

  /** Makes `link` the session's node: sends it what waited, then relays. */
  #attach(link: NodeLink, resend: JSONRPCMessage[]): void {
    if (this.#closing !== undefined) {
      void link.close()
      return
    }
    this.#link = link
    if (this.#heldBack) link.pause()
    link.onMessage = (message) => {
      this.#fromNode(message)
      this.#pushBackIfCongested(link)
    }
    link.onUnreadable = (id, why) => {
      // The node sent an answer the gateway refuses to read; the request it answers must not wait forever.
      if (this.#link === link && this.#inFlight.has(id))
        void this.#failRequests(
          [id],
          JsonRpcCode.InternalError,
          `the server's answer could not be relayed: ${why}`,
        )
    }
    link.onEnd = (end) => void this.#nodeEnded(link, end)
    const pending = this.#pending ?? []
    this.#pending = undefined
    for (const message of [...resend, ...pending]) link.send(message)
  }

  #fromNode(message: JSONRPCMessage): void {
    this.lastActivity = Date.now()
    if (isResponse(message)) {
      const inFlight = this.#inFlight.get(message.id)
      if (inFlight === undefined) {
        this.#logger.debug({ id: message.id }, 'response to no pending request; dropped')
        return
      }
      this.#untrack(message.id)
      this.#done(inFlight, 'error' in message ? 'error' : 'ok')
      this.#replay.fromServer(inFlight.request, message)
      if (inFlight.request.method === 'tools/list' && 'result' in message) {
        this.#init.retrySafety.learnTools(this.serverId, message.result)
        void this.#deliver(this.#permittedTools(message), undefined)
        return
      }
      void this.#deliver(message, undefined)
      return
    }
    void this.#deliver(message, this.#relatedRequest(message))
  }

  /**
   * An agent that reads slower than its server writes would otherwise make the gateway buffer without bound:
   * instead the session stops reading from the node (yamux stops granting window, the node pauses the server's
   * output) until the agent's responses can take more, or the one that stalled is closed.
   */
  #pushBackIfCongested(link: NodeLink): void {
    if (this.#heldBack || !this.#client.backlog.congested) return
    this.#heldBack = true
    link.pause()
    this.#init.onBackPressure?.(this)
    void this.#client.backlog.whenClear().then(() => {
      this.#heldBack = false
      link.resume()
      // The session may have moved to another node meanwhile; that one was paused when attached.
      this.#link?.resume()
    })
  }

  /**
   * stdio servers cannot say which request a notification or server request belongs to, so the gateway
   * infers it: progress by its token; otherwise the only request in flight, else the GET stream if the
   * agent holds one, else the newest request in flight.
   */
  #relatedRequest(message: JSONRPCMessage): RequestId | undefined {
    if ('method' in message && message.method === 'notifications/progress') {
      const token = (message.params as { progressToken?: unknown } | undefined)?.progressToken
      for (const [id, request] of this.#inFlight) if (request.progressToken === token) return id
    }
    if (this.#inFlight.size === 0) return undefined
    const ids = [...this.#inFlight.keys()]
    if (ids.length === 1 || !this.#client.hasStandaloneStream()) return ids[ids.length - 1]
    return undefined
  }

  async #deliver(message: JSONRPCMessage, relatedRequestId: RequestId | undefined): Promise<void> {
    try {
      await this.#client.send(message, relatedRequestId)
    } catch (err) {
      // The agent's stream for this is gone and cannot be resumed; the message cannot be delivered.
      this.#logger.debug({ err }, 'message not delivered to the agent')
    }
  }

  /**
   * The node went away. Requests that may not run twice fail now; the session then moves to another host,
   * where the handshake is replayed and the safe requests are sent again. With no other host, the session ends.
   */
  async #nodeEnded(link: NodeLink, end: LinkEnd): Promise<void> {
    if (this.#closing !== undefined || this.#link !== link) return
    this.#link = undefined
    this.#pending ??= []
    if (end.code === 'SERVER_REVOKED' || end.code === 'TOOLS_CHANGED') {
      // Moving would not help: no node may serve a server the whitelist withdrew, or one whose tools changed
      // after they were reviewed (the agent must not go on with tools nobody approved).
      this.#logger.warn({ node: link.peerId, ...end }, 'server revoked; ending the session')
      await this.#failInFlight(
        GatewayErrorCode.NodeFailed,
        `the server was withdrawn: ${end.reason}`,
        end.code,
      )
      await this.close()
      return
    }
    this.#logger.warn({ node: link.peerId, ...end }, 'node ended the session; moving it')
    const failedMessage = `the node serving this session failed (${end.reason}); the request may or may not have been executed`
    const retry: JSONRPCMessage[] = []
    const unsafe: RequestId[] = []
    for (const [id, { request }] of this.#inFlight) {
      if (this.#init.retrySafety.isSafe(this.serverId, request.method, request.params)) retry.push(request)
      else unsafe.push(id)
    }
    await this.#failRequests(unsafe, GatewayErrorCode.NodeFailed, failedMessage, end.code)
    const exclude = new Set([link.peerId])
    // A node that failed, hung, was cut off or drains may be replaced or heard from again soon: the session
    // waits for a host. A server process that died took the session's state with it; the node it ran on (and
    // so excluded) is fine, so with no other host right now the session ends at once, as it always did.
    const patience = end.code === 'UPSTREAM_EXITED' ? 0 : (this.#init.takeoverTimeoutMs ?? 0)
    const deadline = Date.now() + patience
    let wait = 100
    let next: NodeLink | undefined
    while (next === undefined) {
      let candidate: NodeLink
      try {
        candidate = await this.#init.connect(exclude)
      } catch (err) {
        // No host right now: look again shortly, until the deadline (the agent's messages wait meanwhile).
        if (Date.now() + wait <= deadline && this.#closing === undefined) {
          await new Promise((resolve) => setTimeout(resolve, wait))
          if (this.#closing !== undefined) return
          wait = Math.min(wait * 2, 1_000)
          continue
        }
        this.#logger.warn({ err: errorMessage(err) }, 'no node could take the session over')
        await this.#failInFlight(GatewayErrorCode.NodeFailed, failedMessage, end.code)
        await this.close()
        return
      }
      try {
        await this.#replay.replayOn(candidate, this.#init.replayTimeoutMs)
        next = candidate
      } catch (err) {
        this.#logger.warn(
          { node: candidate.peerId, err: errorMessage(err) },
          'replay failed; trying another node',
        )
        exclude.add(candidate.peerId)
      }
    }
    this.#attach(next, retry)
    this.#logger.info(
      { from: link.peerId, to: next.peerId, retried: retry.length, failed: unsafe.length },
      'session moved',
    )
    this.#init.onFailover?.({
      session: this,
      from: link.peerId,
      to: next.peerId,
      reason: end,
      retried: retry.length,
      failed: unsafe.length,
    })
  }

  /** A tools/list answer with only the tools the principal may call: the others are not even shown. */
  #permittedTools(message: JSONRPCMessage): JSONRPCMessage {
    if (this.auth.scopes === undefined || !('result' in message)) return message
    const result = message.result as { tools?: { name: string }[] }
    if (!Array.isArray(result.tools)) return message
    const tools = result.tools.filter((t) => mayUseTool(this.auth, this.serverId, t.name))
    return { ...message, result: { ...result, tools } }
  }

  #done(inFlight: InFlight, outcome: RequestOutcome): void {
    const seconds = (performance.now() - inFlight.startedAt) / 1000
    // The node logs the same request under the same session id and JSON-RPC id: the two lines correlate.
    this.#logger.info(
      {
        rpcId: inFlight.request.id,
        method: inFlight.request.method,
        outcome,
        ms: Math.round(seconds * 1000),
        node: this.#link?.peerId,
      },
      'request done',
    )
    this.#init.onRequestDone?.(inFlight.request.method, outcome, seconds)
    // Called before the request leaves the map: waiters look again once the current turn has removed it.
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    if (waiters.length > 0)
      queueMicrotask(() => {
        for (const wake of waiters) wake()
      })
  }

  /** Ends the wait for a request's answer; false when it was not waiting. */
  #untrack(id: RequestId): boolean {
    if (!this.#inFlight.delete(id)) return false
    this.#init.inFlightBudget.give(this.auth.principal)
    return true
  }

  #failInFlight(code: number, message: string, reason?: string | Record<string, unknown>): Promise<void> {
    return this.#failRequests([...this.#inFlight.keys()], code, message, reason)
  }

  /** Answers the agent's requests with an error; they are no longer in flight. */
  /** `reason`: a code for `data.reason`, or the whole `data` (a busy host's `retryAfterMs`). */
  async #failRequests(
    ids: RequestId[],
    code: number,
    message: string,
    reason?: string | Record<string, unknown>,
  ): Promise<void> {
    for (const id of ids) {
      const inFlight = this.#inFlight.get(id)
      if (inFlight !== undefined) this.#done(inFlight, 'failed')
      this.#untrack(id)
    }
    await Promise.all(
      ids.map((id) =>
        this.#deliver(
          errorResponse(id, code, message, typeof reason === 'string' ? { reason } : reason),
          undefined,
        ),
      ),
    )
  }
}
