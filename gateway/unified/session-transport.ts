import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js'
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import type { ClientChannel, GatewaySession } from '../gateway-session.ts'

/** A backlog that is never congested: the unified endpoint reads each server's messages as they come. */
const NEVER_CONGESTED = { congested: false, whenClear: () => Promise.resolve() }

/**
 * An MCP client transport whose other end is a gateway session — the same session, routing and failover as a
 * per-server URL — so that the unified endpoint talks to each server as an SDK client. It remembers which of
 * the agent's requests each outgoing request serves, so that what the server asks back during a call (sampling,
 * elicitation) can travel on that request's stream to the agent.
 */
export class SessionTransport implements Transport {
  onmessage?: (message: JSONRPCMessage) => void
  onclose?: () => void
  onerror?: (error: Error) => void
  #session: GatewaySession | undefined
  /** Our request id → the agent request it serves. */
  readonly #servesAgent = new Map<RequestId, RequestId>()
  /** A server request's id → the agent request it came up in. */
  readonly #raisedDuring = new Map<RequestId, RequestId>()
  #closed = false

  /** The channel the gateway session writes the server's messages to. */
  readonly channel: ClientChannel = {
    send: async (message, relatedRequestId) => {
      if ('method' in message && 'id' in message && relatedRequestId !== undefined) {
        const agentRequest = this.#servesAgent.get(relatedRequestId)
        if (agentRequest !== undefined) this.#raisedDuring.set(message.id as RequestId, agentRequest)
      }
      if ('id' in message && !('method' in message)) this.#servesAgent.delete(message.id as RequestId)
      this.onmessage?.(message)
    },
    hasStandaloneStream: () => true,
    releaseRequest: () => {},
    backlog: NEVER_CONGESTED,
    close: async () => this.#ended(),
  }

  attach(session: GatewaySession): void {
    // No `sessionId` on the transport: the SDK client would take it for a session to resume and skip initialize.
    this.#session = session
  }

  async start(): Promise<void> {}

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (this.#closed || this.#session === undefined) throw new Error('the session to the server has ended')
    const related = options?.relatedRequestId
    if ('method' in message && 'id' in message && related !== undefined)
      this.#servesAgent.set(message.id as RequestId, related)
    if ('result' in message || 'error' in message) this.#raisedDuring.delete(message.id as RequestId)
    this.#session.fromClient(message)
  }

  /** The agent request during which the server sent request `id`, if it was during one. */
  agentRequestOf(id: RequestId): RequestId | undefined {
    return this.#raisedDuring.get(id)
  }

  async close(): Promise<void> {
    await this.#session?.close()
    this.#ended()
  }

  #ended(): void {
    if (this.#closed) return
    this.#closed = true
    this.onclose?.()
  }
}
