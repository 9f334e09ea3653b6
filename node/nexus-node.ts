import { EventEmitter } from 'node:events'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { FramedStream } from '../protocol/framed-stream.ts'
import { createLogger } from '../protocol/logger.ts'
import { ANNOUNCE_TOPIC, MCP_STREAM_PROTOCOL, WIRE_VERSION } from '../protocol/names.ts'
import { createPeer, type NexusPeer } from '../protocol/peer.ts'
import {
  acceptedFrame,
  OpenSessionSchema,
  parseFrame,
  type RefusalCode,
  refusedFrame,
} from '../protocol/session-handshake.ts'
import { type AnnouncementBody, Announcer } from './announcer.ts'
import { type NodeConfig, type NodeConfigInput, parseNodeConfig } from './config.ts'
import { NodeSession } from './node-session.ts'
import { ProcessRuntime, type Runtime } from './runtime/process-runtime.ts'

export interface NexusNodeOptions {
  logger?: Logger
  runtime?: Runtime
  privateKey?: PrivateKey
}

export interface NexusNodeEvents {
  'session-opened': [NodeSession]
  'session-closed': [NodeSession]
  'session-refused': [{ serverId: string; code: RefusalCode }]
}

/**
 * A peer that hosts MCP servers through a runtime and serves MCP sessions that arrive as libp2p streams.
 */
export class NexusNode extends EventEmitter<NexusNodeEvents> {
  readonly config: NodeConfig
  readonly logger: Logger
  readonly runtime: Runtime
  readonly sessions = new Map<string, NodeSession>()
  readonly #privateKey: PrivateKey | undefined
  #peer: NexusPeer | undefined
  #announcer: Announcer | undefined
  #draining = false

  constructor(config: NodeConfigInput, options: NexusNodeOptions = {}) {
    super()
    this.config = parseNodeConfig(config)
    this.logger = options.logger ?? createLogger('node')
    this.runtime = options.runtime ?? new ProcessRuntime(this.logger)
    this.#privateKey = options.privateKey
  }

  get peer(): NexusPeer {
    if (this.#peer === undefined) throw new NexusError('STOPPED', 'node is not started')
    return this.#peer
  }

  get peerId(): string {
    return this.peer.peerId.toString()
  }

  get multiaddrs(): string[] {
    return this.peer.getMultiaddrs().map(String)
  }

  async start(): Promise<void> {
    await this.runtime.ensure(this.config.servers)
    try {
      this.#peer = await createPeer({
        transport: this.config.transport,
        listen: this.config.listen,
        bootstrap: this.config.bootstrap,
        privateKey: this.#privateKey,
      })
    } catch (err) {
      await this.runtime.stop()
      throw err
    }
    await this.#peer.handle(MCP_STREAM_PROTOCOL, (stream, connection) => this.#onStream(stream, connection), {
      maxInboundStreams: this.config.maxSessions + 64,
    })
    this.#peer.services.pubsub.subscribe(ANNOUNCE_TOPIC)
    this.#announcer = new Announcer(
      this.#peer,
      () => this.#announcement(),
      this.config.announceIntervalMs,
      this.logger,
    )
    this.#announcer.start()
    // A server that went down must leave the announcement at once, and come back as soon as it is up.
    this.runtime.onStatusChange(() => this.#announcer?.announceSoon())
    this.logger.info({ peerId: this.peerId, addrs: this.multiaddrs }, 'node started')
  }

  /** Stops gracefully: refuses new sessions, ends open ones with a reason, leaves the network. */
  async stop(): Promise<void> {
    if (this.#peer === undefined) return
    this.#draining = true
    this.#announcer?.stop()
    await this.#peer.unhandle(MCP_STREAM_PROTOCOL)
    await Promise.all([...this.sessions.values()].map((s) => s.close('STOPPED', 'the node is shutting down')))
    await this.runtime.stop()
    await this.#peer.stop()
    this.#peer = undefined
    this.logger.info('node stopped')
  }

  /** Simulates a crash for failure tests: the network goes first, with no goodbye to anyone. */
  async crash(): Promise<void> {
    if (this.#peer === undefined) return
    this.#announcer?.stop()
    const peer = this.#peer
    this.#peer = undefined
    for (const connection of peer.getConnections()) connection.abort(new Error('node crashed'))
    await peer.stop()
    await this.runtime.stop()
  }

  #announcement(): AnnouncementBody {
    const perServer = new Map<string, number>()
    for (const session of this.sessions.values())
      perServer.set(session.serverId, (perServer.get(session.serverId) ?? 0) + 1)
    return {
      v: WIRE_VERSION,
      peerId: this.peerId,
      addrs: this.multiaddrs,
      servers: this.runtime
        .status()
        .filter((s) => s.ready)
        .map((s) => ({ id: s.id, version: s.version, sessions: perServer.get(s.id) ?? 0 })),
      load: { sessions: this.sessions.size, capacity: this.config.maxSessions },
      draining: this.#draining,
    }
  }

  async #onStream(stream: Stream, connection: Connection): Promise<void> {
    const framed = new FramedStream(stream)
    const gatewayPeer = connection.remotePeer.toString()
    let serverId = ''
    const refuse = async (code: RefusalCode, message: string) => {
      this.logger.info({ serverId, code, gatewayPeer }, message)
      this.emit('session-refused', { serverId, code })
      framed.sendJson(refusedFrame(code, message))
      await framed.close()
    }
    let open: ReturnType<typeof OpenSessionSchema.parse>
    try {
      open = parseFrame(OpenSessionSchema, await framed.nextFrame(this.config.handshakeTimeoutMs), 'open')
    } catch (err) {
      this.logger.warn({ err, gatewayPeer }, 'bad session handshake')
      if (!framed.ended) await refuse('PROTOCOL_VIOLATION', errorMessage(err))
      return
    }
    serverId = open.serverId
    if (this.#draining) return refuse('NODE_DRAINING', 'this node is draining and accepts no new sessions')
    if (!this.runtime.has(open.serverId))
      return refuse('UNKNOWN_SERVER', `server ${open.serverId} is not hosted on this node`)
    if (this.sessions.size >= this.config.maxSessions)
      return refuse('NODE_FULL', 'this node has no free session slot')
    if (this.sessions.has(open.sessionId)) return refuse('PROTOCOL_VIOLATION', 'session id is already in use')
    let upstream: Awaited<ReturnType<Runtime['open']>>
    try {
      upstream = await this.runtime.open(open.serverId)
    } catch (err) {
      return refuse(
        'UPSTREAM_UNAVAILABLE',
        `server ${open.serverId} cannot take a session: ${errorMessage(err)}`,
      )
    }
    if (framed.ended) {
      await upstream.close()
      return
    }
    const logger = this.logger.child({
      sessionId: open.sessionId,
      serverId: open.serverId,
      principal: open.auth.principal,
    })
    const session = new NodeSession(open, gatewayPeer, framed, upstream, logger, (s) => {
      if (this.sessions.get(s.id) !== s) return
      this.sessions.delete(s.id)
      this.#announcer?.announceSoon()
      this.emit('session-closed', s)
    })
    this.sessions.set(session.id, session)
    framed.sendJson(acceptedFrame(open.serverId))
    this.#announcer?.announceSoon()
    this.emit('session-opened', session)
  }
}
