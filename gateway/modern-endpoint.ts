import type { IncomingMessage, ServerResponse } from 'node:http'
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import { errorMessage } from '../protocol/errors.ts'
import { META_SUBSCRIPTION_ID, ModernRpcCode, parseRequestState } from '../protocol/modern-era.ts'
import { errorResponse, JsonRpcCode, NexusRpcCode } from '../protocol/rpc-codes.ts'
import type { AuthContext } from '../protocol/session-handshake.ts'
import { mayUseTool } from './authenticator.ts'
import { sendHttpError } from './http-responses.ts'
import { validateModernRequest } from './modern-validation.ts'
import type { NodeLink } from './node-link.ts'
import type { RetrySafety } from './retry-safety.ts'

type Json = Record<string, unknown>

export interface ModernEndpointDeps {
  /**
   * Opens a one-request stream on a host of the server (any but `exclude`, or `only` that one), sending
   * `request` along with the open frame: one round trip, not two.
   */
  connect(
    serverId: string,
    auth: AuthContext,
    hosts: { exclude: Set<string>; only?: string },
    request: JSONRPCMessage,
  ): Promise<NodeLink>
  retrySafety: RetrySafety
  logger: Logger
  onRequestDone?(serverId: string, method: string, outcome: string, seconds: number): void
  /** Hosts a safe request may be tried on before the agent gets the failure. */
  maxAttempts?: number
}

interface Attempt {
  /** The answer, or undefined when the node failed before giving one (`failure` says how). */
  answer?: JSONRPCMessage
  failure?: string
}

/**
 * Modern-era requests (revision 2026-07-28) on the same `/mcp/<server-id>` URLs as legacy sessions: no
 * session, so every request is routed on its own to a host of the server (power of two choices), on a stream of
 * its own. A safe request (a read method, or a tool that declares itself read-only or idempotent) whose node
 * fails is tried on another host; any other gets `-32010` saying it may or may not have run. A follow-up that
 * carries a `requestState` goes to the node that issued it, and only there. Notifications about the request
 * (progress, log messages) stream as SSE when the client accepts it, ending with the answer; otherwise the
 * answer comes as one JSON object.
 */
export class ModernEndpoint {
  readonly #deps: ModernEndpointDeps

  constructor(deps: ModernEndpointDeps) {
    this.#deps = deps
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    serverId: string,
    auth: AuthContext,
    body: unknown,
  ) {
    const id = (body as { id?: RequestId } | undefined)?.id ?? null
    const refusal = validateModernRequest(req.headers, body)
    if (refusal !== undefined)
      return sendHttpError(res, refusal.status, refusal.code, refusal.message, {}, id, refusal.data)
    const request = body as { id?: RequestId; method: string; params?: Json }
    // The revision defines no client notification over HTTP; one that arrives is accepted and dropped.
    if (request.id === undefined) return void res.writeHead(202).end()
    if (request.method === 'subscriptions/listen')
      return this.#listen(
        serverId,
        auth,
        request as JSONRPCMessage & { id: RequestId },
        new ResponseStream(req, res),
      )
    const stream = new ResponseStream(req, res)
    const answer = await this.forward(serverId, auth, request as JSONRPCMessage & { id: RequestId }, stream)
    if (answer !== undefined) stream.finish(answer)
  }

  /**
   * One request to a host of the server, tried on others when it is safe to, its notifications passed to
   * `sink` as they come: the answer (the server's, or the gateway's error), or undefined when the client went.
   */
  async forward(
    serverId: string,
    auth: AuthContext,
    request: JSONRPCMessage & { id: RequestId },
    sink: RequestSink,
  ): Promise<JSONRPCMessage | undefined> {
    const { method, params } = request as unknown as { method: string; params?: Json }
    // Tool scopes hold in this era too: a tool the principal may not use is neither called nor listed.
    if (
      method === 'tools/call' &&
      typeof params?.name === 'string' &&
      !mayUseTool(auth, serverId, params.name)
    )
      return errorResponse(
        request.id,
        NexusRpcCode.Forbidden,
        `tool ${params.name} of server ${serverId} is not permitted to ${auth.principal}`,
      )
    const started = performance.now()
    const state = parseRequestState(params?.requestState)
    const safe = state === undefined && this.#deps.retrySafety.isSafe(serverId, method, params)
    const tried = new Set<string>()
    const attempts = safe ? (this.#deps.maxAttempts ?? 3) : 1
    let outcome: Attempt = { failure: 'no attempt' }
    for (let attempt = 0; attempt < attempts && !sink.closed; attempt++) {
      outcome = await this.#attempt(serverId, auth, request, sink, tried, state?.peerId)
      if (outcome.answer !== undefined) break
    }
    if (sink.closed) return undefined
    const answer =
      outcome.answer ??
      errorResponse(
        request.id,
        safe ? NexusRpcCode.NoHost : NexusRpcCode.NodeFailed,
        safe
          ? `No host could serve the request: ${outcome.failure}`
          : `The node serving the request failed (${outcome.failure}); it may or may not have run`,
      )
    if ('result' in answer && method === 'tools/list') {
      this.#deps.retrySafety.learnTools(serverId, answer.result)
      const tools = (answer.result as { tools?: { name: string }[] }).tools
      if (Array.isArray(tools))
        (answer.result as { tools: unknown[] }).tools = tools.filter((t) =>
          mayUseTool(auth, serverId, t.name),
        )
    }
    const result = 'error' in answer ? 'error' : 'ok'
    this.#deps.onRequestDone?.(
      serverId,
      method,
      outcome.answer === undefined ? 'failed' : result,
      (performance.now() - started) / 1000,
    )
    return answer
  }

  /**
   * A `subscriptions/listen` stream that outlives the node serving it: when that node fails, the gateway
   * subscribes again on another host, on the same client stream. Notifications sent while no node listened
   * are lost (the revision has no replay), so the gateway then tells the client that every list it follows may
   * have changed — the client refetches rather than trusting a stale list.
   */
  async #listen(
    serverId: string,
    auth: AuthContext,
    request: JSONRPCMessage & { id: RequestId },
    stream: ResponseStream,
  ) {
    const tried = new Set<string>()
    let acknowledged: Json | undefined
    let failure = 'no attempt'
    while (!stream.closed) {
      let link: NodeLink
      try {
        link = await this.#deps.connect(serverId, auth, { exclude: new Set(tried) }, request)
      } catch (err) {
        failure = errorMessage(err)
        break
      }
      tried.add(link.peerId)
      const { promise, resolve } = Promise.withResolvers<JSONRPCMessage | undefined>()
      const resubscribed = acknowledged !== undefined
      link.onMessage = (message) => {
        if ('id' in message && message.id === request.id && !('method' in message)) return resolve(message)
        if (!('method' in message) || 'id' in message) return
        if (message.method === 'notifications/subscriptions/acknowledged') {
          if (!resubscribed) {
            acknowledged = (message.params as Json | undefined)?.notifications as Json
            return stream.notify(message)
          }
          return this.#signalMissed(stream, request.id, acknowledged!)
        }
        stream.notify(message)
      }
      link.onEnd = (end) => {
        failure = `${end.code}: ${end.reason}`
        resolve(undefined)
      }
      stream.onClose = () => {
        void link.close()
        resolve(undefined)
      }
      const answer = await promise
      // The server ended the subscription on its own (a graceful close): that is the client's answer too.
      if (answer !== undefined) {
        link.release()
        return stream.finish(answer)
      }
      this.#deps.logger.info(
        { serverId, node: link.peerId, failure },
        'listen stream lost its node; subscribing again',
      )
    }
    if (!stream.closed)
      stream.finish(
        errorResponse(request.id, NexusRpcCode.NoHost, `No host can keep the subscription: ${failure}`),
      )
  }

  /** After a re-subscription: each followed list may have changed while no node listened. */
  #signalMissed(stream: ResponseStream, subscriptionId: RequestId, honored: Json): void {
    const meta = { [META_SUBSCRIPTION_ID]: subscriptionId }
    const lists: [string, string][] = [
      ['toolsListChanged', 'notifications/tools/list_changed'],
      ['promptsListChanged', 'notifications/prompts/list_changed'],
      ['resourcesListChanged', 'notifications/resources/list_changed'],
    ]
    for (const [flag, method] of lists)
      if (honored[flag] === true) stream.notify({ jsonrpc: '2.0', method, params: { _meta: meta } })
    for (const uri of (honored.resourceSubscriptions as string[] | undefined) ?? [])
      stream.notify({
        jsonrpc: '2.0',
        method: 'notifications/resources/updated',
        params: { uri, _meta: meta },
      })
  }

  async #attempt(
    serverId: string,
    auth: AuthContext,
    request: JSONRPCMessage,
    stream: RequestSink,
    tried: Set<string>,
    only: string | undefined,
  ): Promise<Attempt> {
    let link: NodeLink
    try {
      link = await this.#deps.connect(serverId, auth, { exclude: new Set(tried), only }, request)
    } catch (err) {
      return { failure: errorMessage(err) }
    }
    tried.add(link.peerId)
    const { promise, resolve } = Promise.withResolvers<Attempt>()
    const id = (request as { id: RequestId }).id
    link.onMessage = (message) => {
      if ('id' in message && message.id === id && !('method' in message)) return resolve({ answer: message })
      if ('method' in message && !('id' in message)) stream.notify(message)
    }
    link.onEnd = (end) => {
      resolve({ failure: `${end.code}: ${end.reason}` })
    }
    // The client going away is the cancellation: closing the stream tells the node, which tells the server.
    stream.onClose = () => {
      void link.close()
      resolve({ failure: 'the client closed the request' })
    }
    const outcome = await promise
    // Answered: the stream may serve the next request to this node.
    if (outcome.answer !== undefined) link.release()
    this.#deps.logger.debug(
      {
        serverId,
        node: link.peerId,
        method: (request as { method: string }).method,
        failure: outcome.failure,
      },
      'modern request done',
    )
    return outcome
  }
}

/** Where a forwarded request's notifications go, and whether the client is still there to take its answer. */
export interface RequestSink {
  readonly closed: boolean
  /** Called when the client goes: the request is cancelled. */
  onClose: (() => void) | undefined
  notify(message: JSONRPCMessage): void
}

/**
 * The HTTP answer to one modern request: a single JSON object, unless notifications come first and the client
 * accepts SSE, in which case they and the answer stream as SSE events.
 */
export class ResponseStream implements RequestSink {
  readonly #res: ServerResponse
  readonly #sse: boolean
  #streaming = false
  closed = false
  onClose: (() => void) | undefined

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.#res = res
    this.#sse = /text\/event-stream/.test(String(req.headers.accept ?? ''))
    res.once('close', () => {
      if (res.writableFinished) return
      this.closed = true
      this.onClose?.()
    })
  }

  notify(message: JSONRPCMessage): void {
    if (!this.#sse || this.closed) return
    if (!this.#streaming) {
      this.#streaming = true
      this.#res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      })
    }
    this.#res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`)
  }

  finish(answer: JSONRPCMessage): void {
    if (this.closed) return
    if (this.#streaming) {
      this.#res.end(`event: message\ndata: ${JSON.stringify(answer)}\n\n`)
      return
    }
    this.#res.writeHead(statusOf(answer), { 'content-type': 'application/json' }).end(JSON.stringify(answer))
  }
}

/**
 * The HTTP status of a JSON answer: the revision gives some errors their own (an unknown method is a 404, a
 * missing client capability or a version or header problem a 400); everything else is 200.
 */
function statusOf(answer: JSONRPCMessage): number {
  const code = 'error' in answer ? answer.error.code : undefined
  if (code === JsonRpcCode.MethodNotFound) return 404
  if (code === ModernRpcCode.MissingRequiredClientCapability) return 400
  if (code === ModernRpcCode.UnsupportedProtocolVersion || code === ModernRpcCode.HeaderMismatch) return 400
  return 200
}
