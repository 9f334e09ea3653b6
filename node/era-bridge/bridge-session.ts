import type { Logger } from 'pino'
import { decodeJsonBounded } from '../../protocol/bounded-json.ts'
import { NexusError } from '../../protocol/errors.ts'
import {
  BRIDGE_LEGACY_VERSION,
  META_CLIENT_CAPABILITIES,
  ModernRpcCode,
  requestMeta,
} from '../../protocol/modern-era.ts'
import { errorResponse, JsonRpcCode, NexusRpcCode } from '../../protocol/rpc-codes.ts'
import { encodeJson } from '../../protocol/session-handshake.ts'
import type { UpstreamSession } from '../runtime/upstream.ts'

type Json = Record<string, unknown>
export type RequestId = string | number

/** Where one modern request's answer goes: notifications about it, then exactly one final message. */
export interface RequestSink {
  notify(message: Json): void
  respond(message: Json): void
}

/** A modern request as the client sent it. */
export interface ModernRequest {
  id: RequestId
  method: string
  params?: Json
}

/** Methods whose results the revision makes cacheable (they then carry `ttlMs` and `cacheScope`). */
const CACHEABLE = new Set([
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'prompts/list',
])
/** Server-to-client requests a legacy server may make during a call, turned into MRTR input requests. */
const CAPABILITY_OF: Record<string, string> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
}
const INPUT_METHODS = new Set(Object.keys(CAPABILITY_OF))

/** What the legacy server said of itself when the bridge opened its session. */
export interface LegacyServerInfo {
  protocolVersion: string
  capabilities: Json
  serverInfo: Json
  instructions?: string
}

interface Call {
  method: string
  /** What the client declared it can do: a server request needing more fails the call with -32021. */
  capabilities: Json
  clientId: RequestId
  sink: RequestSink
  /** Server requests waiting for the client's input, by the key the client sees. */
  awaiting: Map<string, RequestId>
  /** Server requests not yet handed to the client (they arrived while it was answering others). */
  queued: Map<string, Json>
}

/**
 * One legacy MCP session (initialize, then requests) that a node's era bridge keeps with a server, serving
 * modern requests one at a time: ids are rewritten to the session's own, `_meta` protocol fields are dropped,
 * progress and log notifications go to the request in flight, and a server-to-client request during a call
 * (sampling, elicitation, roots) suspends the call and becomes the modern `input_required` result; the
 * client's follow-up answers it and the call goes on. One call at a time is what makes the suspension
 * unambiguous: a legacy server does not say which request its own request belongs to.
 */
export class BridgeSession {
  readonly #upstream: UpstreamSession
  readonly #logger: Logger
  #nextId = 1
  #call: { bridgeId: number; state: Call } | undefined
  #initialize:
    | { id: number; resolve: (info: LegacyServerInfo) => void; reject: (err: Error) => void }
    | undefined
  #info: LegacyServerInfo | undefined
  #ended: string | undefined
  /** Called when the server ends the session on its own. */
  onEnded: ((reason: string) => void) | undefined
  /** Called when a call finished or suspended (the session may serve another, or waits for its follow-up). */
  onSettled: (() => void) | undefined
  /** Notifications about the server rather than a request (list changes, resource updates). */
  onNotification: ((message: Json) => void) | undefined
  /** The bridge's own requests (resources/subscribe for a listener), by id. */
  readonly #own = new Map<number, (message: Json) => void>()

  constructor(upstream: UpstreamSession, logger: Logger) {
    this.#upstream = upstream
    this.#logger = logger
    upstream.onMessage = (bytes) => this.#fromServer(bytes)
    upstream.onEnd = (code, reason) => this.#end(`${code}: ${reason}`)
  }

  get info(): LegacyServerInfo | undefined {
    return this.#info
  }

  get ended(): boolean {
    return this.#ended !== undefined
  }

  /** Whether a call runs (or waits for the client's input) on this session. */
  get busy(): boolean {
    return this.#call !== undefined
  }

  /** Whether the call on this session waits for the client's answers to its input requests. */
  get suspended(): boolean {
    return this.#call !== undefined && this.#call.state.awaiting.size > 0
  }

  /** Opens the legacy session, declaring the client capabilities the modern client declared. */
  initialize(capabilities: Json, clientInfo: Json): Promise<LegacyServerInfo> {
    const id = this.#nextId++
    const { promise, resolve, reject } = Promise.withResolvers<LegacyServerInfo>()
    this.#initialize = { id, resolve, reject }
    this.#send({
      jsonrpc: '2.0',
      id,
      method: 'initialize',
      params: { protocolVersion: BRIDGE_LEGACY_VERSION, capabilities, clientInfo },
    })
    return promise.then((info) => {
      this.#info = info
      this.#send({ jsonrpc: '2.0', method: 'notifications/initialized' })
      return info
    })
  }

  /** Runs a modern request on the legacy session; its answer (or its input requests) goes to `sink`. */
  call(request: ModernRequest, sink: RequestSink) {
    if (this.#call !== undefined) throw new NexusError('PROTOCOL_VIOLATION', 'the bridge session is busy')
    if (this.#ended !== undefined) return sink.respond(serverUnavailable(request.id, this.#ended))
    const bridgeId = this.#nextId++
    this.#call = {
      bridgeId,
      state: {
        method: request.method,
        capabilities: declaredCapabilities(request.params),
        clientId: request.id,
        sink,
        awaiting: new Map(),
        queued: new Map(),
      },
    }
    this.#send({ jsonrpc: '2.0', id: bridgeId, method: request.method, params: legacyParams(request.params) })
  }

  /**
   * The client's follow-up of a suspended call: its answers go to the server's waiting requests, and the call
   * goes on under the follow-up's id. Refused (with the reason) when an answer is missing.
   */
  resume(request: ModernRequest, inputResponses: unknown, sink: RequestSink) {
    const call = this.#call?.state
    if (call === undefined || call.awaiting.size === 0)
      return sink.respond(invalidParams(request.id, 'requestState names no call waiting for input'))
    const answers = (
      typeof inputResponses === 'object' && inputResponses !== null ? inputResponses : {}
    ) as Json
    const missing = [...call.awaiting.keys()].filter((key) => !(key in answers))
    if (missing.length > 0)
      return sink.respond(invalidParams(request.id, `inputResponses lacks ${missing.join(', ')}`))
    for (const [key, serverRequestId] of call.awaiting)
      this.#send({ jsonrpc: '2.0', id: serverRequestId, result: answers[key] as Json })
    call.awaiting.clear()
    call.clientId = request.id
    call.sink = sink
    // Requests the server made meanwhile are the next round.
    if (call.queued.size > 0) this.#suspend()
    return true
  }

  /** A request of the bridge's own on this session; resolves with the server's answer (result or error). */
  request(method: string, params: Json): Promise<Json> {
    const id = this.#nextId++
    const { promise, resolve } = Promise.withResolvers<Json>()
    this.#own.set(id, resolve)
    this.#send({ jsonrpc: '2.0', id, method, params })
    return promise
  }

  /** The client gave up on the call (closed its stream): the server is told, the session is free again. */
  cancel(reason: string): void {
    const call = this.#call
    if (call === undefined) return
    this.#call = undefined
    this.#send({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: call.bridgeId, reason },
    })
    this.onSettled?.()
  }

  async close(): Promise<void> {
    this.#end('the bridge closed the session')
    await this.#upstream.close()
  }

  #send(message: Json): void {
    if (this.#ended === undefined) this.#upstream.send(encodeJson(message))
  }

  #fromServer(bytes: Uint8Array) {
    const parsed = decodeJsonBounded(bytes)
    if (!parsed.ok || typeof parsed.value !== 'object' || parsed.value === null) return
    const message = parsed.value as Json
    const id = message.id as RequestId | undefined
    if (typeof message.method === 'string') {
      if (id !== undefined) return this.#serverRequest(id, message)
      return this.#serverNotification(message)
    }
    if (id === undefined) return
    if (this.#initialize?.id === id) return this.#initialized(message)
    const own = this.#own.get(id as number)
    if (own !== undefined) {
      this.#own.delete(id as number)
      return own(message)
    }
    const call = this.#call
    if (call === undefined || call.bridgeId !== id) return
    this.#call = undefined
    call.state.sink.respond(modernAnswer(call.state, message))
    this.onSettled?.()
  }

  #initialized(message: Json) {
    const pending = this.#initialize!
    this.#initialize = undefined
    const result = message.result as LegacyServerInfo | undefined
    if (result === undefined || typeof result !== 'object')
      return pending.reject(
        new NexusError(
          'UPSTREAM_UNAVAILABLE',
          `the server refused initialize: ${JSON.stringify(message.error)}`,
        ),
      )
    pending.resolve({
      protocolVersion: String(result.protocolVersion),
      capabilities: (result.capabilities ?? {}) as Json,
      serverInfo: (result.serverInfo ?? {}) as Json,
      instructions: typeof result.instructions === 'string' ? result.instructions : undefined,
    })
  }

  #serverRequest(id: RequestId, message: Json) {
    const method = message.method as string
    if (method === 'ping') return this.#send({ jsonrpc: '2.0', id, result: {} })
    const call = this.#call?.state
    if (call === undefined || !INPUT_METHODS.has(method)) {
      // Outside any call there is no client to ask: a modern client is reachable only through its requests.
      return this.#send({
        jsonrpc: '2.0',
        id,
        error: { code: -32601, message: `${method} outside a request cannot reach a 2026-07-28 client` },
      })
    }
    const needed = CAPABILITY_OF[method]!
    if (call.capabilities[needed] === undefined) return this.#missingCapability(id, method, needed)
    call.queued.set(`input-${String(id)}`, { method, params: message.params ?? {}, serverRequestId: id })
    if (call.awaiting.size === 0) this.#suspend()
  }

  /**
   * The server needs something the client did not declare it can do: the client is told (-32021, with what is
   * required), the server's request is refused, and the call is abandoned.
   */
  #missingCapability(serverRequestId: RequestId, method: string, capability: string): void {
    const call = this.#call!
    this.#call = undefined
    this.#send({
      jsonrpc: '2.0',
      id: serverRequestId,
      error: { code: -32601, message: `the client did not declare the ${capability} capability` },
    })
    this.#send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: call.bridgeId } })
    call.state.sink.respond({
      jsonrpc: '2.0',
      id: call.state.clientId,
      error: {
        code: ModernRpcCode.MissingRequiredClientCapability,
        message: `Missing required client capability: the server asked for ${method}, which needs ${capability}`,
        data: { requiredCapabilities: { [capability]: {} } },
      },
    })
    this.onSettled?.()
  }

  /** Hands the server's queued requests to the client as an `input_required` result. */
  #suspend(): void {
    const call = this.#call!.state
    const inputRequests: Json = {}
    for (const [key, queued] of call.queued) {
      inputRequests[key] = { method: queued.method, params: queued.params }
      call.awaiting.set(key, queued.serverRequestId as RequestId)
    }
    call.queued.clear()
    call.sink.respond({
      jsonrpc: '2.0',
      id: call.clientId,
      result: { resultType: 'input_required', inputRequests },
    })
    this.onSettled?.()
  }

  #serverNotification(message: Json): void {
    const call = this.#call?.state
    // Progress and log messages belong to the request in flight; there is no other place a modern client hears.
    if (
      call !== undefined &&
      (message.method === 'notifications/progress' || message.method === 'notifications/message')
    )
      call.sink.notify(message)
  }

  #end(reason: string): void {
    if (this.#ended !== undefined) return
    this.#ended = reason
    this.#initialize?.reject(new NexusError('UPSTREAM_EXITED', reason))
    this.#initialize = undefined
    for (const resolve of this.#own.values()) resolve({ error: { code: -32603, message: reason } })
    this.#own.clear()
    const call = this.#call
    this.#call = undefined
    call?.state.sink.respond(serverUnavailable(call.state.clientId, `the server ended: ${reason}`))
    this.#logger.debug({ reason }, 'bridge session ended')
    this.onEnded?.(reason)
  }
}

function declaredCapabilities(params: Json | undefined): Json {
  const declared = requestMeta(params)?.[META_CLIENT_CAPABILITIES]
  return typeof declared === 'object' && declared !== null ? (declared as Json) : {}
}

/** Params as the legacy server takes them: the modern `_meta` fields and MRTR fields removed. */
function legacyParams(params: Json | undefined): Json | undefined {
  if (params === undefined) return undefined
  const { _meta, requestState: _state, inputResponses: _responses, ...rest } = params
  if (typeof _meta !== 'object' || _meta === null) return rest
  const meta = Object.fromEntries(
    Object.entries(_meta as Json).filter(([key]) => !key.startsWith('io.modelcontextprotocol/')),
  )
  return Object.keys(meta).length > 0 ? { ...rest, _meta: meta } : rest
}

/** The server's answer in modern form: the client's id, `resultType`, and cache hints on list results. */
function modernAnswer(call: Call, message: Json): Json {
  if (message.error !== undefined) return { jsonrpc: '2.0', id: call.clientId, error: message.error }
  const result: Json = { ...((message.result ?? {}) as Json), resultType: 'complete' }
  if (CACHEABLE.has(call.method)) {
    result.ttlMs ??= 0
    result.cacheScope ??= 'private'
  }
  return { jsonrpc: '2.0', id: call.clientId, result }
}

/** The answer to a request the server could not take: it ended, is unreachable, or answered nothing. */
export function serverUnavailable(id: RequestId, reason: string): Json {
  return errorResponse(id, NexusRpcCode.NodeFailed, `Server unavailable: ${reason}`) as Json
}

export function invalidParams(id: RequestId, message: string): Json {
  return errorResponse(id, JsonRpcCode.InvalidParams, `Invalid params: ${message}`) as Json
}
