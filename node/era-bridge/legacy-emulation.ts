import type { Logger } from 'pino'
import { Backoff } from '../../protocol/backoff.ts'
import { decodeJsonBounded } from '../../protocol/bounded-json.ts'
import type { NexusErrorCode } from '../../protocol/errors.ts'
import {
  isLegacyVersion,
  LEGACY_VERSIONS,
  META_CLIENT_CAPABILITIES,
  META_CLIENT_INFO,
  META_LOG_LEVEL,
  META_PROTOCOL_VERSION,
  META_SERVER_INFO,
  META_SUBSCRIPTION_ID,
  MODERN_VERSIONS,
  requestMeta,
} from '../../protocol/modern-era.ts'
import { errorResponse, JsonRpcCode } from '../../protocol/rpc-codes.ts'
import { encodeJson } from '../../protocol/session-handshake.ts'
import type { UpstreamSession } from '../runtime/upstream.ts'
import type { ModernRequest, RequestId, RequestSink } from './bridge-session.ts'

type Json = Record<string, unknown>

/** Sends one modern request to a server that speaks the revision; returns how to cancel it. */
export type ModernChannel = (request: ModernRequest, sink: RequestSink) => (reason: string) => void

/** Rounds of `input_required` one call may go through before the emulation gives up on it (a looping server). */
const MAX_INPUT_ROUNDS = 16
/** What a legacy client may be asked for, and the capability it must have declared for it. */
const CAPABILITY_OF: Record<string, string> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
}
/** Fields of a modern result that a legacy client has no use for. */
const MODERN_RESULT_FIELDS = ['resultType', 'ttlMs', 'cacheScope'] as const

interface Call {
  /** The client's own request: its id answers it, its params are re-sent with each round's answers. */
  request: ModernRequest
  cancel: (reason: string) => void
  rounds: number
  /** Input requests handed to the client this round, by the id the client answers with. */
  asked: Map<string, string>
  answers: Json
  /** The server's state from its last `input_required`, sent back with the answers. */
  requestState?: unknown
}

/**
 * A legacy session that the node plays for a server speaking only the modern era (2026-07-28): a legacy agent
 * sends `initialize` and then requests on one session, as it always did, and each request goes to the server
 * as one self-contained modern request carrying what the session knows (the client's capabilities, info and
 * log level). `initialize` is answered from `server/discover`; an `input_required` result becomes the legacy
 * requests the server needs (sampling, elicitation, roots) sent to the agent, whose answers are sent back
 * with the server's `requestState` until the call completes; resource subscriptions and list changes ride on
 * one `subscriptions/listen` stream the session keeps open.
 */
export class EmulatedLegacySession implements UpstreamSession {
  onMessage: ((message: Uint8Array) => void) | undefined
  onEnd: ((code: NexusErrorCode, reason: string) => void) | undefined
  readonly #channel: ModernChannel
  readonly #logger: Logger
  readonly #release: () => void
  readonly #calls = new Map<RequestId, Call>()
  /** The client's answers to input requests arrive under ids of the session's own. */
  readonly #inputOwner = new Map<string, RequestId>()
  readonly #subscriptions = new Set<string>()
  readonly #listenBackoff = new Backoff(250, 10_000)
  #client: { capabilities: Json; info: Json } | undefined
  #serverCapabilities: Json = {}
  #logLevel: string | undefined
  #listen: { cancel: (reason: string) => void; generation: number; waiting: (() => void)[] } | undefined
  #listenGeneration = 0
  #nextInputId = 1
  #closed = false

  constructor(channel: ModernChannel, logger: Logger, release: () => void) {
    this.#channel = channel
    this.#logger = logger
    this.#release = release
  }

  send(bytes: Uint8Array): boolean {
    const parsed = decodeJsonBounded(bytes)
    if (!parsed.ok) return true
    const messages = Array.isArray(parsed.value) ? parsed.value : [parsed.value]
    for (const message of messages)
      if (typeof message === 'object' && message !== null) this.#fromClient(message as Json)
    return true
  }

  drained(): Promise<void> {
    return Promise.resolve()
  }

  setOutputPaused(): void {
    // Each request is its own HTTP exchange with the server; nothing is streamed that could be held back.
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#release()
    for (const call of this.#calls.values()) call.cancel('the session closed')
    this.#calls.clear()
    this.#listen?.cancel('the session closed')
    this.#listen = undefined
  }

  /** The server went away (its process ended): the agent's session ends with it, so the gateway fails over. */
  fail(code: NexusErrorCode, reason: string): void {
    if (this.#closed) return
    this.onEnd?.(code, reason)
    void this.close()
  }

  #toClient(message: Json) {
    if (!this.#closed) this.onMessage?.(encodeJson(message))
  }

  #fromClient(message: Json) {
    const method = message.method
    const id = message.id as RequestId | undefined
    if (typeof method !== 'string') {
      if (id !== undefined) this.#inputAnswered(String(id), message)
      return
    }
    if (id === undefined) return this.#clientNotification(method, message.params as Json | undefined)
    const params = (message.params ?? {}) as Json
    switch (method) {
      case 'initialize':
        return this.#initialize(id, params)
      case 'ping':
        return this.#toClient({ jsonrpc: '2.0', id, result: {} })
      case 'logging/setLevel':
        // The revision sets the level per request; the session remembers it for every request from now on.
        this.#logLevel = typeof params.level === 'string' ? params.level : undefined
        return this.#toClient({ jsonrpc: '2.0', id, result: {} })
      case 'resources/subscribe':
      case 'resources/unsubscribe':
        return this.#subscription(id, method, params)
    }
    if (this.#client === undefined)
      return this.#toClient(
        errorResponse(
          id,
          JsonRpcCode.InvalidRequest,
          'Invalid Request: the session is not initialized',
        ) as Json,
      )
    this.#call({ id, method, params })
  }

  #clientNotification(method: string, params: Json | undefined) {
    if (method !== 'notifications/cancelled') return
    const call = this.#calls.get(params?.requestId as RequestId)
    if (call === undefined) return
    this.#calls.delete(call.request.id)
    call.cancel(typeof params?.reason === 'string' ? params.reason : 'cancelled by the client')
  }

  /** `initialize`, answered from what the server says of itself in `server/discover`. */
  #initialize(id: RequestId, params: Json) {
    const capabilities = (typeof params.capabilities === 'object' && params.capabilities) || {}
    const info = (typeof params.clientInfo === 'object' && params.clientInfo) || { name: 'legacy-client' }
    this.#client = { capabilities: capabilities as Json, info: info as Json }
    const requested = typeof params.protocolVersion === 'string' ? params.protocolVersion : ''
    const protocolVersion = isLegacyVersion(requested) ? requested : LEGACY_VERSIONS[0]
    this.#channel(
      { id: 'nexus-discover', method: 'server/discover', params: { _meta: this.#meta() } },
      {
        notify: () => {},
        respond: (answer) => {
          const result = answer.result as Json | undefined
          if (result === undefined) return this.#toClient({ jsonrpc: '2.0', id, error: answer.error as Json })
          this.#serverCapabilities = (result.capabilities ?? {}) as Json
          const meta = requestMeta(result) ?? {}
          this.#toClient({
            jsonrpc: '2.0',
            id,
            result: {
              protocolVersion,
              capabilities: this.#serverCapabilities,
              serverInfo: meta[META_SERVER_INFO] ?? { name: 'modern-server', version: '0.0.0' },
              ...(typeof result.instructions === 'string' ? { instructions: result.instructions } : {}),
            },
          })
          this.#relisten()
        },
      },
    )
  }

  /** The modern `_meta` every request carries: what the session learned at `initialize`. */
  #meta(): Json {
    return {
      [META_PROTOCOL_VERSION]: MODERN_VERSIONS[0],
      [META_CLIENT_CAPABILITIES]: this.#client?.capabilities ?? {},
      [META_CLIENT_INFO]: this.#client?.info ?? { name: 'legacy-client' },
      ...(this.#logLevel === undefined ? {} : { [META_LOG_LEVEL]: this.#logLevel }),
    }
  }

  #call(request: ModernRequest) {
    const call: Call = { request, cancel: () => {}, rounds: 0, asked: new Map(), answers: {} }
    this.#calls.set(request.id, call)
    this.#round(call, undefined)
  }

  /** Sends the call (again, with the client's answers and the server's state after an `input_required`). */
  #round(call: Call, retry: { inputResponses: Json; requestState?: unknown } | undefined) {
    const { id, method, params = {} } = call.request
    const meta = { ...(requestMeta(params) ?? {}), ...this.#meta() }
    const sent: ModernRequest = { id, method, params: { ...params, _meta: meta, ...retry } }
    call.cancel = this.#channel(sent, {
      notify: (message) => {
        if (this.#calls.get(id) === call) this.#toClient(message)
      },
      respond: (answer) => {
        if (this.#calls.get(id) === call) this.#answered(call, answer)
      },
    })
  }

  #answered(call: Call, answer: Json) {
    const result = answer.result as Json | undefined
    if (result?.resultType !== 'input_required') {
      this.#calls.delete(call.request.id)
      if (result !== undefined) for (const field of MODERN_RESULT_FIELDS) delete result[field]
      return this.#toClient({ ...answer, id: call.request.id })
    }
    if (++call.rounds > MAX_INPUT_ROUNDS)
      return this.#fail(call, `the server asked for input more than ${MAX_INPUT_ROUNDS} times`)
    const requests = (typeof result.inputRequests === 'object' && result.inputRequests) || {}
    const entries = Object.entries(requests as Json)
    call.asked.clear()
    call.answers = {}
    const requestState = result.requestState
    // A round that asks for nothing is a plain retry the server wants (its state may have moved on).
    if (entries.length === 0) return this.#round(call, { inputResponses: {}, requestState })
    for (const [key, value] of entries) {
      const { method, params } = (value ?? {}) as { method?: unknown; params?: unknown }
      const needed = typeof method === 'string' ? CAPABILITY_OF[method] : undefined
      if (needed === undefined || this.#client?.capabilities[needed] === undefined)
        return this.#fail(
          call,
          `the server asked for ${String(method)}, which this client did not declare it can answer`,
        )
      const inputId = `nexus-input-${this.#nextInputId++}`
      call.asked.set(inputId, key)
      this.#inputOwner.set(inputId, call.request.id)
      this.#toClient({ jsonrpc: '2.0', id: inputId, method, params: params ?? {} })
    }
    call.requestState = requestState
  }

  /** The client answered one of a call's input requests; the last answer sends the call's next round. */
  #inputAnswered(inputId: string, message: Json) {
    const owner = this.#inputOwner.get(inputId)
    this.#inputOwner.delete(inputId)
    const call = owner === undefined ? undefined : this.#calls.get(owner)
    const key = call?.asked.get(inputId)
    if (call === undefined || key === undefined) return
    if (message.result === undefined) {
      const error = (message.error ?? {}) as Json
      return this.#fail(
        call,
        `the client refused the server's request: ${String(error.message ?? 'no answer')}`,
      )
    }
    call.asked.delete(inputId)
    call.answers[key] = message.result
    if (call.asked.size > 0) return
    const { requestState } = call
    this.#round(call, {
      inputResponses: call.answers,
      ...(requestState === undefined ? {} : { requestState }),
    })
  }

  #fail(call: Call, reason: string) {
    this.#calls.delete(call.request.id)
    for (const inputId of call.asked.keys()) this.#inputOwner.delete(inputId)
    this.#toClient(errorResponse(call.request.id, JsonRpcCode.InternalError, reason) as Json)
  }

  #subscription(id: RequestId, method: string, params: Json) {
    const uri = params.uri
    if (typeof uri !== 'string')
      return this.#toClient(errorResponse(id, JsonRpcCode.InvalidParams, 'Invalid params: uri') as Json)
    const resources = this.#serverCapabilities.resources as { subscribe?: boolean } | undefined
    if (resources?.subscribe !== true)
      return this.#toClient(
        errorResponse(
          id,
          JsonRpcCode.MethodNotFound,
          'the server does not offer resource subscriptions',
        ) as Json,
      )
    if (method === 'resources/subscribe') this.#subscriptions.add(uri)
    else this.#subscriptions.delete(uri)
    // Answered once the server acknowledged the new stream: from then on, no update is missed.
    this.#relisten(() => this.#toClient({ jsonrpc: '2.0', id, result: {} }))
  }

  /**
   * (Re)opens the session's one listen stream with everything the session follows: the list changes the server
   * announces, and the subscribed resources. `acknowledged` runs once the server acknowledged a stream carrying
   * them (or could not: the stream ended); a stream the server ends is opened again, with back-off.
   */
  #relisten(acknowledged?: () => void) {
    // Whoever waited for the stream being replaced waits for its successor, which carries what they asked.
    const waiting = [...(this.#listen?.waiting ?? []), ...(acknowledged ? [acknowledged] : [])]
    this.#listen?.cancel('the subscriptions changed')
    this.#listen = undefined
    const flush = () => {
      for (const done of waiting.splice(0)) done()
    }
    const capabilities = this.#serverCapabilities as Record<string, { listChanged?: boolean } | undefined>
    const notifications: Json = {}
    if (capabilities.tools?.listChanged) notifications.toolsListChanged = true
    if (capabilities.prompts?.listChanged) notifications.promptsListChanged = true
    if (capabilities.resources?.listChanged) notifications.resourcesListChanged = true
    if (this.#subscriptions.size > 0) notifications.resourceSubscriptions = [...this.#subscriptions]
    if (this.#closed || Object.keys(notifications).length === 0) return flush()
    const generation = ++this.#listenGeneration
    const current = () => this.#listen?.generation === generation
    const cancel = this.#channel(
      {
        id: `nexus-listen-${generation}`,
        method: 'subscriptions/listen',
        params: { notifications, _meta: this.#meta() },
      },
      {
        notify: (message) => {
          if (!current()) return
          if (message.method === 'notifications/subscriptions/acknowledged') {
            this.#listenBackoff.succeed()
            return flush()
          }
          const params = { ...((message.params ?? {}) as Json) }
          const meta = { ...(requestMeta(params) ?? {}) }
          delete meta[META_SUBSCRIPTION_ID]
          if (Object.keys(meta).length > 0) params._meta = meta
          else delete params._meta
          this.#toClient({ jsonrpc: '2.0', method: message.method, params })
        },
        respond: (answer) => {
          if (!current() || this.#closed) return
          flush()
          this.#listen = undefined
          const delay = this.#listenBackoff.fail()
          this.#logger.debug(
            { answer, retryInMs: delay },
            'the server ended its listen stream; listening again',
          )
          setTimeout(() => {
            if (this.#listen === undefined && !this.#closed) this.#relisten()
          }, delay).unref()
        },
      },
    )
    this.#listen = { cancel, generation, waiting }
  }
}
