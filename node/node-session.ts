import type { Logger } from 'pino'
import { decodeJsonBounded } from '../protocol/bounded-json.ts'
import type { NexusErrorCode } from '../protocol/errors.ts'
import type { FramedStream } from '../protocol/framed-stream.ts'
import type { InputGuard } from '../protocol/input-guard.ts'
import { errorResponse, JsonRpcCode, NexusRpcCode } from '../protocol/rpc-codes.ts'
import {
  closingFrame,
  encodeJson,
  type OpenSession,
  ProbeSchema,
  probeFrame,
} from '../protocol/session-handshake.ts'
import type { ToolDrift } from '../trust/onboarding/tool-digest.ts'
import { InFlightRequests, type RequestDone, requestIdOf } from './in-flight-requests.ts'
import type { UpstreamSession } from './runtime/upstream.ts'
import { describeDrift, type ToolPins } from './tool-pins.ts'

/**
 * Relays one MCP session between a gateway's stream and a server, both ways, message by message, without
 * reading the messages. Each side's slowness pauses the other instead of growing buffers without bound.
 */
export class NodeSession {
  readonly id: string
  readonly serverId: string
  readonly principal: string
  readonly gatewayPeer: string
  readonly inFlight: InFlightRequests
  readonly #framed: FramedStream
  readonly #upstream: UpstreamSession
  readonly #logger: Logger
  readonly #onClosed: (session: NodeSession) => void
  readonly #guard: InputGuard
  readonly #maxInFlight: number
  readonly #toolPins: ToolPins | undefined
  readonly #onToolDrift: ((drift: ToolDrift) => void) | undefined
  #outputBlocked = false
  #hung = false
  #inputBlocked = false
  #closing: Promise<void> | undefined

  constructor(
    open: OpenSession,
    gatewayPeer: string,
    framed: FramedStream,
    upstream: UpstreamSession,
    logger: Logger,
    hooks: {
      onClosed: (session: NodeSession) => void
      onRequestDone?: (done: RequestDone) => void
      guard: InputGuard
      /** Requests of this session the server may be working on at once; more are answered with an error. */
      maxInFlight: number
      /** The tools the server's signed manifest pins, when it pins them; a list that differs is withheld. */
      toolPins?: ToolPins
      /** The server listed tools that differ from its pins (the session is then ended by the node). */
      onToolDrift?: (drift: ToolDrift) => void
    },
  ) {
    this.id = open.sessionId
    this.serverId = open.serverId
    this.principal = open.auth.principal
    this.gatewayPeer = gatewayPeer
    this.#framed = framed
    this.#upstream = upstream
    this.#logger = logger
    this.#onClosed = hooks.onClosed
    this.#guard = hooks.guard
    this.#maxInFlight = hooks.maxInFlight
    this.#toolPins = hooks.toolPins
    this.#onToolDrift = hooks.onToolDrift
    // One line per request, under the JSON-RPC id and session id the gateway's line carries too.
    this.inFlight = new InFlightRequests((done) => {
      logger.info(
        { rpcId: done.id, method: done.method, outcome: done.outcome, ms: Math.round(done.seconds * 1000) },
        'request done',
      )
      hooks.onRequestDone?.(done)
    })
    upstream.onMessage = (message) => hooks.guard.run('server', () => this.#toGateway(message))
    upstream.onEnd = (code, reason) => this.#upstreamEnded(code, reason)
    framed.onFrame((frame) => hooks.guard.run('gateway-stream', () => this.#toServer(frame)))
    framed.onEnd((error) => {
      if (error) this.#logger.debug({ err: error }, 'gateway stream failed')
      void this.close()
    })
  }

  /** Ends the session; `reason` travels to the gateway first so it can tell the agent why. */
  close(code?: NexusErrorCode, reason?: string): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    // Set before closing anything: the stream's end handler calls back into close().
    const { promise, resolve } = Promise.withResolvers<void>()
    this.#closing = promise
    if (code !== undefined && reason !== undefined && this.#framed.writable) {
      this.#framed.sendJson(closingFrame(code, reason))
    }
    this.inFlight.abandon()
    void Promise.allSettled([this.#upstream.close(), this.#framed.close()]).then(() => {
      this.#onClosed(this)
      resolve()
    })
    return promise
  }

  #toServer(frame: Uint8Array): void {
    const parsed = decodeJsonBounded(frame)
    if (!parsed.ok) {
      // The server is not handed what the node itself would refuse to read; a request still gets its answer.
      this.#guard.refused('gateway-stream', parsed.message, { sessionId: this.id })
      if (parsed.id !== undefined)
        this.#answer(parsed.id, JsonRpcCode.InvalidRequest, `Invalid Request: ${parsed.message}`)
      return
    }
    const message = parsed.value
    if (typeof message === 'object' && message !== null && 'nexus' in message) {
      const probe = ProbeSchema.safeParse(message)
      if (probe.success && probe.data.nexus === 'ping' && this.#framed.writable)
        this.#framed.sendJson(probeFrame('pong', probe.data.nonce))
      return
    }
    const id = requestIdOf(message)
    if (id !== undefined && this.inFlight.size >= this.#maxInFlight) {
      this.#guard.refused('gateway-stream', 'too many requests in flight', { sessionId: this.id })
      this.#answer(
        id,
        NexusRpcCode.Overloaded,
        `Overloaded: ${this.#maxInFlight} requests of this session are already running`,
      )
      return
    }
    this.inFlight.fromClient(message)
    if (this.#upstream.send(frame) || this.#inputBlocked) return
    this.#inputBlocked = true
    this.#framed.pause()
    void this.#upstream.drained().then(() => {
      this.#inputBlocked = false
      if (!this.#hung) this.#framed.resume()
    })
  }

  /** An error answer of the node's own to a request it did not pass on. */
  #answer(id: string | number, code: number, message: string): void {
    if (this.#framed.writable) this.#framed.sendJson(errorResponse(id, code, message))
  }

  #toGateway(message: Uint8Array): void {
    if (this.#hung) return
    // Server messages are parsed only while a request waits: most traffic then is its answer. One the node
    // cannot read is relayed all the same: the gateway refuses it and answers the agent.
    if (this.inFlight.size > 0) {
      const parsed = decodeJsonBounded(message)
      if (parsed.ok) {
        const withheld = this.#checkTools(parsed.value)
        this.inFlight.fromServer(parsed.value)
        if (withheld !== undefined) message = encodeJson(withheld)
      }
    }
    if (this.#framed.send(message) || this.#outputBlocked || !this.#framed.writable) return
    this.#outputBlocked = true
    this.#upstream.setOutputPaused(true)
    this.#framed.drain().then(
      () => {
        this.#outputBlocked = false
        if (!this.#hung) this.#upstream.setOutputPaused(false)
      },
      () => {},
    )
  }

  /**
   * A `tools/list` answer against the manifest's pins: when the server lists a tool that was not reviewed, or
   * changed one, the agent gets an error instead of the list (it must not see, let alone call, what no curator
   * approved), and the node hears of it.
   */
  #checkTools(message: unknown): unknown {
    if (this.#toolPins === undefined || typeof message !== 'object' || message === null) return undefined
    const { id, result } = message as { id?: unknown; result?: unknown }
    if (result === undefined || this.inFlight.methodOf(id) !== 'tools/list') return undefined
    const drift = this.#toolPins.check(result)
    if (drift === undefined) return undefined
    this.#onToolDrift?.(drift)
    return errorResponse(
      id as string | number,
      NexusRpcCode.ToolsChanged,
      `Tools changed: the server's tools differ from its signed manifest (${describeDrift(drift)}); it is withdrawn from this node`,
    )
  }

  /** For failure tests: behaves like a hung process — reads nothing more from either side, sends nothing. */
  simulateHang(): void {
    this.#hung = true
    this.#framed.pause()
    this.#upstream.setOutputPaused(true)
  }

  /** The session's requests still waiting for the server; see `InFlightRequests.whenIdle`. */
  whenIdle(): Promise<void> {
    return this.inFlight.whenIdle()
  }

  #upstreamEnded(code: NexusErrorCode, reason: string): void {
    this.#logger.warn({ code, reason }, 'server ended the session')
    void this.close(code, reason)
  }
}
