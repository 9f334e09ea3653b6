import { createServer, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { errorMessage } from '../../protocol/errors.ts'
import {
  acceptedFrame,
  closingFrame,
  OpenSessionSchema,
  parseFrame,
  type RefusalCode,
  refusedFrame,
} from '../../protocol/session-handshake.ts'
import type { StdioServerConfig } from '../config.ts'
import { createStdioUpstream } from '../runtime/create-stdio-upstream.ts'
import { TeardownQueue } from '../runtime/teardown-queue.ts'
import type { Upstream, UpstreamSession } from '../runtime/upstream.ts'
import { SocketFrames } from './socket-frames.ts'

export interface PodHostOptions {
  /** The stdio server this pod runs, one process per session, as the process runtime runs it. */
  server: StdioServerConfig
  host?: string
  port: number
  logger: Logger
  /** Sessions this pod takes at once; more are refused with NODE_FULL (the node then picks another pod). */
  maxSessions?: number
  handshakeTimeoutMs?: number
}

/**
 * The process inside a server's pod (Kubernetes runtime): it listens for the node's sessions on TCP, speaks the
 * same session frames as a libp2p stream (open → accepted/refused, then one JSON-RPC message a frame, `closing`
 * before it ends one), and runs each session's server process through the process runtime's stdio upstream —
 * warm pool, back-pressure and all. One image layout serves every stdio server: this host is the entrypoint,
 * the server's launch configuration comes from `NEXUS_POD_SERVER`.
 */
export class PodHost {
  readonly #options: PodHostOptions
  readonly #logger: Logger
  readonly #upstream: Upstream
  readonly #connections = new Set<Socket>()
  readonly #sessions = new Set<UpstreamSession>()
  #server: Server | undefined
  port = 0

  constructor(options: PodHostOptions) {
    this.#options = options
    this.#logger = options.logger
    this.#upstream = createStdioUpstream(options.server, options.logger, undefined, new TeardownQueue(4))
  }

  get sessions(): number {
    return this.#sessions.size
  }

  async start(): Promise<void> {
    await this.#upstream.start()
    const server = createServer((socket) => this.#accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#options.port, this.#options.host ?? '0.0.0.0', () => resolve())
    })
    this.#server = server
    const address = server.address()
    this.port = typeof address === 'object' && address !== null ? address.port : this.#options.port
    this.#logger.info({ port: this.port, server: this.#options.server.id }, 'pod host listening')
  }

  async stop(): Promise<void> {
    const server = this.#server
    this.#server = undefined
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
    await Promise.all([...this.#sessions].map((s) => s.close()))
    for (const socket of this.#connections) socket.destroy()
    await this.#upstream.stop()
  }

  #accept(socket: Socket): void {
    this.#connections.add(socket)
    socket.on('close', () => this.#connections.delete(socket))
    const frames = new SocketFrames(socket)
    this.#serve(frames).catch((err) => {
      this.#logger.warn({ err: errorMessage(err) }, 'pod host session failed')
      socket.destroy()
    })
  }

  async #serve(frames: SocketFrames): Promise<void> {
    const refuse = async (code: RefusalCode, message: string) => {
      frames.sendJson(refusedFrame(code, message))
      await frames.close()
    }
    let open: ReturnType<typeof OpenSessionSchema.parse>
    try {
      open = parseFrame(
        OpenSessionSchema,
        await frames.nextFrame(this.#options.handshakeTimeoutMs ?? 10_000),
        'open',
      )
    } catch (err) {
      if (!frames.ended) await refuse('PROTOCOL_VIOLATION', errorMessage(err))
      return
    }
    const id = this.#options.server.id
    if (open.serverId !== id) return refuse('UNKNOWN_SERVER', `this pod runs ${id}, not ${open.serverId}`)
    if (this.#sessions.size >= (this.#options.maxSessions ?? 64))
      return refuse('NODE_FULL', 'this pod has no free session slot')
    const session = await this.#upstream.open()
    if (frames.ended) return void (await session.close())
    this.#sessions.add(session)
    frames.sendJson(acceptedFrame(id))
    let outputBlocked = false
    session.onMessage = (message) => {
      if (frames.send(message) || outputBlocked || !frames.writable) return
      outputBlocked = true
      session.setOutputPaused(true)
      void frames.drained().then(() => {
        outputBlocked = false
        session.setOutputPaused(false)
      })
    }
    session.onEnd = (code, reason) => {
      if (frames.writable) frames.sendJson(closingFrame(code, reason))
      void frames.close()
    }
    frames.onFrame((frame) => {
      if (session.send(frame)) return
      frames.pause()
      void session.drained().then(() => frames.resume())
    })
    frames.onEnd(() => {
      this.#sessions.delete(session)
      void session.close()
    })
  }
}
