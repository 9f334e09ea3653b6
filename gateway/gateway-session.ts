import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import { errorMessage } from '../protocol/errors.ts'
import type { AuthContext } from '../protocol/session-handshake.ts'
import { errorResponse, GatewayErrorCode, isRequest, isResponse } from './jsonrpc.ts'
import type { LinkEnd, NodeLink } from './node-link.ts'

/** The agent's end of a session, whichever MCP transport it uses. */
export interface ClientChannel {
  /** `relatedRequestId` names the client request a server message belongs to, so it travels on that stream. */
  send(message: JSONRPCMessage, relatedRequestId?: RequestId): Promise<void>
  /** Whether the agent holds a stream for messages unrelated to any request (the GET stream). */
  hasStandaloneStream(): boolean
  /** Stops waiting for a request's answer (it was cancelled), releasing its HTTP stream. */
  releaseRequest(id: RequestId): void
  close(): Promise<void>
}

interface InFlight {
  method: string
  progressToken: unknown
}

export interface GatewaySessionInit {
  id: string
  serverId: string
  auth: AuthContext
  client: ClientChannel
  connect: () => Promise<NodeLink>
  logger: Logger
  onClosed: (session: GatewaySession) => void
}

/**
 * One agent session: relays messages between the agent's transport and the node that hosts the server. It
 * tracks the agent's requests in flight so that every one gets an answer — the server's, or an error that
 * says the node failed — and so that server messages travel on the HTTP stream of the request they serve.
 */
export class GatewaySession {
  readonly id: string
  readonly serverId: string
  readonly auth: AuthContext
  readonly createdAt = Date.now()
  lastActivity = Date.now()
  readonly #client: ClientChannel
  readonly #connect: () => Promise<NodeLink>
  readonly #logger: Logger
  readonly #onClosed: (session: GatewaySession) => void
  readonly #inFlight = new Map<RequestId, InFlight>()
  #pending: JSONRPCMessage[] | undefined = []
  #link: NodeLink | undefined
  #closing: Promise<void> | undefined

  constructor(init: GatewaySessionInit) {
    this.id = init.id
    this.serverId = init.serverId
    this.auth = init.auth
    this.#client = init.client
    this.#connect = init.connect
    this.#logger = init.logger
    this.#onClosed = init.onClosed
  }

  get nodePeerId(): string | undefined {
    return this.#link?.peerId
  }

  get inFlightCount(): number {
    return this.#inFlight.size
  }

  get closed(): boolean {
    return this.#closing !== undefined
  }

  fromClient(message: JSONRPCMessage): void {
    this.lastActivity = Date.now()
    if (this.#closing !== undefined) {
      if (isRequest(message))
        void this.#deliver(
          errorResponse(message.id, GatewayErrorCode.SessionClosed, 'the session is closed'),
          undefined,
        )
      return
    }
    if (isRequest(message)) {
      const meta = (message.params as { _meta?: { progressToken?: unknown } } | undefined)?._meta
      this.#inFlight.set(message.id, { method: message.method, progressToken: meta?.progressToken })
    } else if ('method' in message && message.method === 'notifications/cancelled') {
      const requestId = (message.params as { requestId?: RequestId } | undefined)?.requestId
      if (requestId !== undefined && this.#inFlight.delete(requestId)) this.#client.releaseRequest(requestId)
    }
    if (this.#pending !== undefined) {
      this.#pending.push(message)
      if (this.#pending.length === 1) void this.#open()
      return
    }
    this.#link!.send(message)
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    // Set before closing the transport: its close handler calls back into close().
    const { promise, resolve } = Promise.withResolvers<void>()
    this.#closing = promise
    void Promise.allSettled([this.#link?.close(), this.#client.close()]).then(() => {
      this.#onClosed(this)
      resolve()
    })
    return promise
  }

  async #open(): Promise<void> {
    try {
      this.#link = await this.#connect()
    } catch (err) {
      this.#logger.warn({ err }, 'no node could take the session')
      await this.#failInFlight(GatewayErrorCode.NoHost, errorMessage(err))
      await this.close()
      return
    }
    if (this.#closing !== undefined) {
      await this.#link.close()
      return
    }
    this.#link.onMessage = (message) => this.#fromNode(message)
    this.#link.onEnd = (end) => void this.#nodeEnded(end)
    const pending = this.#pending ?? []
    this.#pending = undefined
    for (const message of pending) this.#link.send(message)
    this.#logger.debug({ node: this.#link.peerId }, 'session opened on node')
  }

  #fromNode(message: JSONRPCMessage): void {
    this.lastActivity = Date.now()
    if (isResponse(message)) {
      if (this.#inFlight.delete(message.id)) void this.#deliver(message, undefined)
      else this.#logger.debug({ id: message.id }, 'response to no pending request; dropped')
      return
    }
    void this.#deliver(message, this.#relatedRequest(message))
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

  async #nodeEnded(end: LinkEnd): Promise<void> {
    if (this.#closing !== undefined) return
    this.#logger.warn({ node: this.#link?.peerId, ...end }, 'node ended the session')
    await this.#failInFlight(
      GatewayErrorCode.NodeFailed,
      `the node serving this session failed (${end.reason}); the request may or may not have been executed`,
      end.code,
    )
    await this.close()
  }

  async #failInFlight(code: number, message: string, reason?: string): Promise<void> {
    const ids = [...this.#inFlight.keys()]
    this.#inFlight.clear()
    await Promise.all(
      ids.map((id) =>
        this.#deliver(errorResponse(id, code, message, reason ? { reason } : undefined), undefined),
      ),
    )
  }
}
