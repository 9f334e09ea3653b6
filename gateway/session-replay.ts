import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { NexusError } from '../protocol/errors.ts'
import { isRequest, type JsonRpcRequest } from './jsonrpc.ts'
import type { NodeLink } from './node-link.ts'

/**
 * What a server must be told again for a session to continue on another node: the agent's `initialize`
 * (once answered), `notifications/initialized`, and the session settings the agent chose since — its logging
 * level and its resource subscriptions. Replayed requests carry ids of their own, whose answers the session
 * drops: the agent already has its answers.
 */
export class SessionReplay {
  #initialize: JsonRpcRequest | undefined
  #initializeAnswered = false
  #initialized: JSONRPCMessage | undefined
  #logLevel: JsonRpcRequest | undefined
  readonly #subscriptions = new Map<string, JsonRpcRequest>()
  #nextId = 0

  fromClient(message: JSONRPCMessage): void {
    if (!('method' in message)) return
    if (!isRequest(message)) {
      if (message.method === 'notifications/initialized') this.#initialized = message
      return
    }
    const uri = (message.params as { uri?: unknown } | undefined)?.uri
    switch (message.method) {
      case 'initialize':
        this.#initialize = message
        break
      case 'logging/setLevel':
        this.#logLevel = message
        break
      case 'resources/subscribe':
        if (typeof uri === 'string') this.#subscriptions.set(uri, message)
        break
      case 'resources/unsubscribe':
        if (typeof uri === 'string') this.#subscriptions.delete(uri)
        break
    }
  }

  /** Notes the server's answer to a request; only a successful `initialize` is worth replaying. */
  fromServer(request: JsonRpcRequest, response: JSONRPCMessage): void {
    if (request === this.#initialize && 'result' in response) this.#initializeAnswered = true
  }

  /** Brings a freshly opened session on another node to where the agent's session stands. */
  async replayOn(link: NodeLink, timeoutMs: number): Promise<void> {
    if (this.#initialize === undefined || !this.#initializeAnswered) return
    await this.#request(link, this.#initialize, timeoutMs)
    if (this.#initialized !== undefined) link.send(this.#initialized)
    const settings = [this.#logLevel, ...this.#subscriptions.values()].filter((r) => r !== undefined)
    for (const request of settings) link.send({ ...request, id: this.#replayId() })
  }

  #replayId(): string {
    return `nexus-replay-${++this.#nextId}`
  }

  /** Sends a request with a replay id and waits for its answer; an error answer fails the move. */
  #request(link: NodeLink, request: JsonRpcRequest, timeoutMs: number): Promise<void> {
    const id = this.#replayId()
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new NexusError(
            'NODE_FAILED',
            `the new node did not answer ${request.method} within ${timeoutMs} ms`,
          ),
        )
      }, timeoutMs)
      link.onMessage = (message) => {
        if (!('id' in message) || message.id !== id || 'method' in message) return
        clearTimeout(timer)
        if ('error' in message) {
          reject(
            new NexusError('NODE_FAILED', `the new node refused ${request.method}: ${message.error.message}`),
          )
        } else resolve()
      }
      link.onEnd = (end) => {
        clearTimeout(timer)
        reject(new NexusError('NODE_FAILED', `the new node ended the session: ${end.reason}`))
      }
      link.send({ ...request, id })
    }).catch(async (err) => {
      await link.close()
      throw err
    })
  }
}
