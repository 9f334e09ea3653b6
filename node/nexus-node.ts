import { EventEmitter, once } from 'node:events'
import type { Server } from 'node:http'
import { availableParallelism, totalmem } from 'node:os'
import type { Connection, ConnectionGater, PrivateKey, Stream } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Assignment } from '../allocator/types.ts'
import { type Announcement, decodeAnnouncement } from '../protocol/announcement.ts'
import { type DemandReport, decodeDemandReport } from '../protocol/demand.ts'
import { asError, errorMessage, isNexusError, NexusError } from '../protocol/errors.ts'
import { FramedStream } from '../protocol/framed-stream.ts'
import { DEFAULT_FRESHNESS, GossipRecords } from '../protocol/gossip-records.ts'
import { InputGuard } from '../protocol/input-guard.ts'
import { createLogger } from '../protocol/logger.ts'
import {
  ANNOUNCE_DIRECT_PROTOCOL,
  ANNOUNCE_TOPIC,
  DEMAND_TOPIC,
  MCP_STREAM_PROTOCOL,
  WIRE_VERSION,
} from '../protocol/names.ts'
import { startOpsServer } from '../protocol/ops-endpoints.ts'
import { createPeer, type NexusPeer } from '../protocol/peer.ts'
import { readPeerKey } from '../protocol/peer-identity.ts'
import {
  acceptedFrame,
  type OpenSession,
  OpenSessionSchema,
  parseFrame,
  type RefusalCode,
  refusedFrame,
} from '../protocol/session-handshake.ts'
import type { ToolDrift } from '../trust/onboarding/tool-digest.ts'
import { type OpenedWhitelist, openWhitelist } from '../trust/open-whitelist.ts'
import type { Whitelist } from '../trust/whitelist.ts'
import { AnnouncedLinks } from './announced-links.ts'
import { type AnnouncementBody, type AnnouncementCause, Announcer } from './announcer.ts'
import { type NodeConfig, type NodeConfigInput, parseNodeConfig } from './config.ts'
import { EraBridge } from './era-bridge/era-bridge.ts'
import { HostedServers, type ServerRefusal } from './hosted-servers.ts'
import { MachineLoad } from './machine-load.ts'
import { serveModernRequest } from './modern-request.ts'
import { NodeAllocation } from './node-allocation.ts'
import { NodeMetrics } from './node-metrics.ts'
import { NodeSession } from './node-session.ts'
import { ProviderRecords } from './provider-records.ts'
import { createKubernetesRuntime } from './runtime/create-runtime.ts'
import { ProcessRuntime } from './runtime/process-runtime.ts'
import type { Runtime } from './runtime/runtime.ts'
import { describeDrift, ToolPins } from './tool-pins.ts'

export interface NexusNodeOptions {
  logger?: Logger
  runtime?: Runtime
  privateKey?: PrivateKey
  connectionGater?: ConnectionGater
}

export interface NexusNodeEvents {
  'session-opened': [NodeSession]
  'session-closed': [NodeSession]
  'session-refused': [{ serverId: string; code: RefusalCode }]
  /** The node's provider record for a server is in the DHT. */
  provided: [{ id: string; version: string }]
  /** A modern-era request arrived for a server (it is served through the era bridge). */
  'modern-request': [{ serverId: string }]
  /** A configured server is not run: its manifest is not trusted, or its package is not what it pins. */
  'server-refused': [ServerRefusal]
  /** A server that ran stopped because the whitelist no longer allows it (revoked on chain, curator removed). */
  'server-withdrawn': [ServerRefusal]
  /** This node computed the assignment of an epoch (network allocation only). */
  assignment: [Assignment]
  /** The servers this node runs changed to follow its share of the assignment. */
  'share-applied': [{ epoch: number; servers: string[] }]
}

/**
 * A peer that hosts MCP servers through a runtime and serves MCP sessions that arrive as libp2p streams. It
 * tells the network what it hosts and how loaded it is (gossiped announcements, DHT provider records), and
 * listens to gateways' demand reports.
 */
export class NexusNode extends EventEmitter<NexusNodeEvents> {
  readonly config: NodeConfig
  readonly logger: Logger
  #runtime: Runtime | undefined
  readonly sessions = new Map<string, NodeSession>()
  /** `server-id@version` of the servers whose provider records are in the DHT. */
  readonly providedServers = new Set<string>()
  readonly #options: NexusNodeOptions
  readonly #machineLoad = new MachineLoad()
  readonly #demand = new Map<string, DemandReport>()
  /** Manifest hash of every server the node runs, by id: what it announces. */
  #hashes = new Map<string, string>()
  /** The tools each hosted server's manifest pins, by server id. */
  #toolPins = new Map<string, ToolPins>()
  /**
   * Servers withdrawn because their live tools differ from their pins, by `id@manifestHash`: a re-signed
   * version (a new hash) is not affected.
   */
  readonly #toolDrift = new Map<string, string>()
  /** Configured servers the node does not run, and why. */
  readonly refusedServers = new Map<string, ServerRefusal>()
  #trust: OpenedWhitelist | undefined
  #hosted: HostedServers | undefined
  /** Serves modern-era requests on the servers' legacy sessions (see `era-bridge/`). */
  #bridge: EraBridge | undefined
  #allocation: NodeAllocation | undefined
  #reconciling: Promise<void> = Promise.resolve()
  #ops: Server | undefined
  /** Where the operations endpoints listen, when `ops.port` is set. */
  opsUrl: string | undefined
  /** Prometheus metrics, served at `/metrics` on the operations port. */
  readonly metrics = new NodeMetrics({
    sessionsPerServer: () =>
      new Map([...this.#sessionsByServer()].map(([id, sessions]) => [id, sessions.length])),
    servers: () => this.#runtime?.status() ?? [],
    peers: () => this.#peer?.getConnections().length ?? 0,
    announcements: () => this.#announcements?.counts ?? { accepted: 0, ignored: 0, rejected: 0 },
    refusedServers: () => this.refusedServers.size,
    divergences: () => this.#allocation?.divergences ?? 0,
  })
  /** Counts, logs and contains what hostile or broken input does (see `protocol/input-guard.ts`). */
  readonly guard: InputGuard
  #peer: NexusPeer | undefined
  #announcements: GossipRecords<Announcement> | undefined
  #demandReports: GossipRecords<DemandReport> | undefined
  #announcer: Announcer | undefined
  readonly #links = new AnnouncedLinks()
  #providers: ProviderRecords | undefined
  #draining = false
  #hung = false

  constructor(config: NodeConfigInput, options: NexusNodeOptions = {}) {
    super()
    this.config = parseNodeConfig(config)
    this.logger = options.logger ?? createLogger('node')
    // The process runtime exists at once; a Kubernetes runtime connects to its cluster at start.
    this.#runtime =
      options.runtime ??
      (this.config.runtime.kind === 'process'
        ? new ProcessRuntime(this.logger, {
            maxConcurrentTeardowns: this.config.maxConcurrentTeardowns,
            admission: {
              ...this.config.admission,
              maxStarting: this.config.admission.maxStarting ?? availableParallelism(),
            },
            sandbox: this.config.sandbox,
            reports: {
              limits: (server, events, exit) => {
                this.metrics.sandboxLimits(server, events)
                this.logger.warn({ server, ...events, exit }, 'a sandboxed server instance hit its limits')
              },
              egress: (decision) => this.metrics.sandboxEgress(decision.serverId, decision.allowed),
            },
          })
        : undefined)
    this.guard = new InputGuard(this.metrics.registry, 'nexus_node', this.logger)
    this.#options = options
  }

  /** Where the node's servers run (`runtime` in the configuration, unless given; Kubernetes' from start on). */
  get runtime(): Runtime {
    if (this.#runtime === undefined) throw new NexusError('STOPPED', 'node is not started')
    return this.#runtime
  }

  /** Network allocation's state on this node (undefined when the node hosts a static list). */
  get allocation(): NodeAllocation | undefined {
    return this.#allocation
  }

  /** The latest assignment this node computed (network allocation only). */
  get assignment(): Assignment | undefined {
    return this.#allocation?.assignment
  }

  /** The whitelist this node enforces (loaded at start). */
  get whitelist(): Whitelist {
    if (this.#trust === undefined) throw new NexusError('STOPPED', 'node is not started')
    return this.#trust.whitelist
  }

  get peer(): NexusPeer {
    if (this.#peer === undefined) throw new NexusError('STOPPED', 'node is not started')
    return this.#peer
  }

  get peerId(): string {
    return this.peer.peerId.toString()
  }

  /** Announcements this node made since it started, by cause (all 0 before it starts). */
  get announcements(): Readonly<Record<AnnouncementCause, number>> {
    return this.#announcer?.counts ?? { periodic: 0, change: 0, newcomers: 0, direct: 0 }
  }

  get multiaddrs(): string[] {
    return this.peer.getMultiaddrs().map(String)
  }

  /** The latest demand report of every gateway heard from within three of its intervals. */
  demandReports(): DemandReport[] {
    const now = Date.now()
    return [...this.#demand.values()].filter((r) => r.timestamp + 3 * r.intervalMs >= now)
  }

  async start(): Promise<void> {
    if (this.#runtime === undefined && this.config.runtime.kind === 'kubernetes')
      this.#runtime = await createKubernetesRuntime(
        this.config,
        this.config.runtime,
        this.logger,
        this.metrics,
      )
    this.#trust = await openWhitelist(this.config.trust, this.logger)
    this.#bridge = new EraBridge({ runtime: this.runtime, peerId: () => this.peerId, logger: this.logger })
    this.#hosted = new HostedServers(this.#trust.whitelist, this.runtime)
    if (this.config.allocation.enabled)
      this.#allocation = new NodeAllocation(
        this.config,
        this.#trust.whitelist,
        () => this.peerId,
        this.logger,
      )
    try {
      await this.#allocation?.refreshEligible(this.#hosted)
      await this.#applyServers()
    } catch (err) {
      // What the runtime started (processes, a cluster watch) goes with the failed start.
      await this.runtime.stop()
      await this.#trust.close()
      throw err
    }
    try {
      this.#peer = await createPeer({
        transport: this.config.transport,
        listen: this.config.listen,
        bootstrap: this.config.bootstrap,
        privateKey:
          this.#options.privateKey ??
          (this.config.identityFile === undefined ? undefined : readPeerKey(this.config.identityFile)),
        maxConnections: this.config.maxConnections,
        connectionTrim: this.config.connectionTrim,
        connectionGater: this.#options.connectionGater,
        logger: this.logger,
      })
    } catch (err) {
      await this.runtime.stop()
      await this.#trust.close()
      throw err
    }
    await this.#peer.handle(
      MCP_STREAM_PROTOCOL,
      (stream, connection) =>
        this.guard.runAsync(
          'gateway-stream',
          () => this.#onStream(stream, connection),
          (err) => stream.abort(asError(err)),
        ),
      {
        maxInboundStreams: this.config.maxSessions + 64,
      },
    )
    this.#announcements = new GossipRecords(
      this.#peer,
      ANNOUNCE_TOPIC,
      decodeAnnouncement,
      DEFAULT_FRESHNESS,
      this.logger,
      { directProtocol: ANNOUNCE_DIRECT_PROTOCOL },
    )
    this.#announcements.start()
    this.#demandReports = new GossipRecords(
      this.#peer,
      DEMAND_TOPIC,
      decodeDemandReport,
      DEFAULT_FRESHNESS,
      this.logger,
    )
    this.#demandReports.on('record', (report) => this.#demand.set(report.peerId, report))
    this.#demandReports.start()
    this.#providers = new ProviderRecords(this.#peer, this.logger, (server) => {
      this.providedServers.add(`${server.id}@${server.version}`)
      this.emit('provided', server)
    })
    this.#announcer = new Announcer(
      this.#peer,
      this.#announcements,
      (cause) => this.#announcement(cause),
      this.config.announceIntervalMs,
      this.logger,
    )
    this.#announcer.start()
    // A gateway's demand reports tell the announcer it is in the mesh, as other nodes' announcements do.
    this.#demandReports.on('record', (report) => this.#announcer?.heard(report))
    // A server that went down must leave the announcement at once, and come back as soon as it is up.
    this.runtime.onStatusChange(() => this.#announcer?.announceSoon())
    this.#trust.whitelist.on('change', () => this.#scheduleReconcile())
    if (this.#allocation !== undefined) this.#followAllocation(this.#allocation)
    if (this.config.ops.port !== undefined) {
      const { host, port } = this.config.ops
      try {
        const ops = await startOpsServer(host, port, {
          notReadyBecause: () => this.#notReadyBecause(),
          registry: this.metrics.registry,
        })
        this.#ops = ops.server
        this.opsUrl = ops.url
      } catch (err) {
        await this.stop()
        throw new NexusError('INVALID_CONFIG', `cannot listen on ${host}:${port}: ${errorMessage(err)}`)
      }
    }
    this.logger.info({ peerId: this.peerId, addrs: this.multiaddrs, ops: this.opsUrl }, 'node started')
  }

  /**
   * Stops gracefully: refuses new sessions and announces that it drains, lets each session finish the requests
   * it has in flight (up to `drainTimeoutMs`), then ends it with NODE_DRAINING so that its gateway moves it to
   * another node, and leaves the network.
   */
  async stop(): Promise<void> {
    if (this.#peer === undefined) return
    this.#draining = true
    this.#announcer?.announceSoon()
    await this.#drainSessions()
    this.#allocation?.stop()
    this.#announcer?.stop()
    this.#announcements?.stop()
    this.#demandReports?.stop()
    await this.#trust?.close()
    await this.#reconciling
    await this.#peer.unhandle(MCP_STREAM_PROTOCOL)
    await this.#bridge?.close()
    await this.runtime.stop()
    await this.#closeOps()
    await this.#peer.stop()
    this.#peer = undefined
    this.logger.info('node stopped')
  }

  /** Simulates a crash for failure tests: the network goes first, with no goodbye to anyone. */
  async crash(): Promise<void> {
    if (this.#peer === undefined) return
    this.#allocation?.stop()
    this.#announcer?.stop()
    const peer = this.#peer
    this.#peer = undefined
    for (const connection of peer.getConnections()) connection.abort(new Error('node crashed'))
    await peer.stop()
    await this.#trust?.close()
    await this.#bridge?.close()
    await this.runtime.stop()
    await this.#closeOps()
  }

  /**
   * Simulates a hung node for failure tests: connections stay open, but it stops announcing, reading its
   * session streams and answering new ones. `stop()` still releases everything.
   */
  simulateHang(): void {
    this.#hung = true
    this.#announcer?.stop()
    for (const session of this.sessions.values()) session.simulateHang()
  }

  /** Runs exactly the configured servers the whitelist allows and whose packages check out. */
  async #applyServers(outcome?: Awaited<ReturnType<HostedServers['resolve']>>): Promise<ServerRefusal[]> {
    const all = outcome ?? (await this.#hosted!.resolve(this.#wantedServers()))
    const refused = [...all.refused]
    const resolved = all.resolved.filter((r) => {
      const drift = this.#toolDrift.get(`${r.config.id}@${r.manifestHash}`)
      if (drift !== undefined) refused.push({ id: r.config.id, code: 'TOOLS_CHANGED', reason: drift })
      return drift === undefined
    })
    const fresh: ServerRefusal[] = []
    for (const refusal of refused) {
      if (!this.refusedServers.has(refusal.id)) fresh.push(refusal)
      this.refusedServers.set(refusal.id, refusal)
    }
    for (const { config } of resolved) this.refusedServers.delete(config.id)
    for (const refusal of fresh) {
      this.logger.error({ serverId: refusal.id, code: refusal.code }, `server refused: ${refusal.reason}`)
      this.emit('server-refused', refusal)
    }
    this.#hashes = new Map(resolved.map((r) => [r.config.id, r.manifestHash]))
    this.#toolPins = new Map(
      resolved.flatMap((r) =>
        r.manifest?.tools === undefined ? [] : [[r.config.id, new ToolPins(r.manifest.tools)]],
      ),
    )
    await this.runtime.ensure(resolved)
    return fresh
  }

  /** What the node runs for a server, as it announces it: gateways check it against their whitelist. */
  #announcedServer(serverId: string): { version: string; manifestHash: string } | undefined {
    const version = this.runtime.status().find((s) => s.id === serverId)?.version
    const manifestHash = this.#hashes.get(serverId)
    return version !== undefined && manifestHash !== undefined ? { version, manifestHash } : undefined
  }

  /** Why the node cannot serve sessions, or undefined when it can. */
  #notReadyBecause(): string | undefined {
    if (this.#peer === undefined) return 'not started'
    if (this.#draining) return 'draining'
    if (this.#peer.getConnections().length === 0) return 'not connected to any peer'
    return this.#runtime?.notReadyBecause?.()
  }

  async #closeOps(): Promise<void> {
    const ops = this.#ops
    this.#ops = undefined
    if (ops === undefined) return
    ops.closeAllConnections()
    await new Promise<void>((resolve) => ops.close(() => resolve()))
  }

  /** What the node should run: its configured servers, or with network allocation, its share. */
  #wantedServers() {
    return this.#allocation?.wanted() ?? this.config.servers
  }

  #scheduleReconcile(): void {
    this.#reconciling = this.#reconciling.then(() => this.#reconcile())
  }

  /** Records what the network gossips for the allocator, and follows this node's share of each epoch. */
  #followAllocation(allocation: NodeAllocation): void {
    this.#announcements!.on('record', (a) => allocation.observe(a))
    this.#demandReports!.on('record', (r) => allocation.state.addDemand(r))
    this.#announcer!.onAnnounce = (a) => allocation.state.addAnnouncement(a)
    allocation.on('assignment', ({ assignment, changed }) => {
      this.emit('assignment', assignment)
      if (changed) this.#scheduleReconcile()
      // Peers compare the hash each node announces: divergence shows at once.
      this.#announcer?.announceSoon()
    })
    allocation.start()
  }

  /**
   * Brings what runs in line with what should run (the whitelist changed, or this node's share did). A server
   * the whitelist no longer allows stops at once: its sessions end with the reason, so that gateways tell
   * agents rather than move them. A server the allocator moved elsewhere is handed over: its sessions finish
   * their requests and move once another node announces it. Either way the node first stops announcing it.
   */
  async #reconcile(): Promise<void> {
    if (this.#peer === undefined) return
    const before = new Set(this.#hashes.keys())
    try {
      await this.#allocation?.refreshEligible(this.#hosted!)
      const outcome = await this.#hosted!.resolve(this.#wantedServers())
      const kept = new Set(outcome.resolved.map((r) => r.config.id))
      const refusals = new Map(outcome.refused.map((r) => [r.id, r.reason]))
      this.#hashes = new Map([...this.#hashes].filter(([id]) => kept.has(id)))
      this.#announcer?.announceSoon()
      for (const id of before) if (!kept.has(id)) void this.#bridge?.close(id)
      const leaving = this.#sessionsByServer((id) => before.has(id) && !kept.has(id))
      await Promise.all(
        [...leaving].map(async ([serverId, sessions]) => {
          const revoked = this.#revocationOf(serverId, refusals)
          if (revoked === undefined)
            return this.#handOver(serverId, sessions, `server ${serverId} moved to other nodes`)
          const reason = `server ${serverId} is no longer whitelisted: ${revoked}`
          await Promise.all(sessions.map((s) => s.close('SERVER_REVOKED', reason)))
        }),
      )
      const withdrawn = await this.#applyServers(outcome)
      for (const refusal of withdrawn.filter((r) => before.has(r.id))) this.emit('server-withdrawn', refusal)
      const epoch = this.#allocation?.assignment?.epoch
      if (epoch !== undefined) this.emit('share-applied', { epoch, servers: [...this.#hashes.keys()].sort() })
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'cannot apply the change of servers')
    }
    this.#announcer?.announceSoon()
  }

  /**
   * A server listed tools its manifest does not pin as they are: the node stops hosting that version (it is
   * refused until re-signed), ends its sessions with the reason, and stops announcing it, so gateways stop
   * routing to it here.
   */
  #toolsChanged(serverId: string, drift: ToolDrift): void {
    const hash = this.#hashes.get(serverId)
    if (hash === undefined || this.#toolDrift.has(`${serverId}@${hash}`)) return
    const reason = `server ${serverId}'s tools differ from its signed manifest (${describeDrift(drift)})`
    this.#toolDrift.set(`${serverId}@${hash}`, reason)
    this.metrics.toolDrift(serverId)
    this.logger.error({ serverId, ...drift }, 'server tools changed after signing; withdrawing it')
    // After the withheld answer has gone out: the agent first learns why its list failed.
    setImmediate(() => {
      for (const session of this.#sessionsByServer((id) => id === serverId).get(serverId) ?? [])
        void session.close('TOOLS_CHANGED', reason)
      this.#scheduleReconcile()
    })
  }

  /** Why a server that stops running is no longer allowed, or undefined when it is only moved elsewhere. */
  #revocationOf(serverId: string, refusals: Map<string, string>): string | undefined {
    if (this.#allocation === undefined) return refusals.get(serverId) ?? 'refused'
    try {
      this.whitelist.resolve(serverId)
      return undefined
    } catch (err) {
      return errorMessage(err)
    }
  }

  /**
   * Ends sessions of a server without cutting them: each finishes its requests, then closes with NODE_DRAINING
   * and its gateway moves it to another node. With network allocation, they first wait until another node
   * announces the server (it may take an epoch to be placed there), for up to `drainTimeoutMs` plus an epoch.
   */
  async #handOver(serverId: string, sessions: NodeSession[], reason: string): Promise<void> {
    const allocation = this.config.allocation
    const waitMs =
      this.config.drainTimeoutMs + (allocation.enabled ? allocation.epochMs + allocation.settleMs : 0)
    const deadline = AbortSignal.timeout(waitMs)
    const timedOut = new Promise<void>((resolve) => deadline.addEventListener('abort', () => resolve()))
    const state = this.#allocation?.state
    const elsewhere = () =>
      state === undefined || state.hostsOf(serverId, Date.now()).some((peer) => peer !== this.peerId)
    while (!elsewhere() && !deadline.aborted && this.#announcements !== undefined)
      await once(this.#announcements, 'record', { signal: deadline }).catch(() => {})
    await Promise.all(
      sessions.map(async (session) => {
        await Promise.race([session.whenIdle(), timedOut])
        await session.close('NODE_DRAINING', reason)
      }),
    )
  }

  async #drainSessions(): Promise<void> {
    const reason = 'the node is shutting down; the session moves to another node'
    await Promise.all(
      [...this.#sessionsByServer()].map(([serverId, sessions]) => this.#handOver(serverId, sessions, reason)),
    )
  }

  /** The node's sessions grouped by server, of the servers `include` accepts. */
  #sessionsByServer(include: (serverId: string) => boolean = () => true): Map<string, NodeSession[]> {
    const byServer = new Map<string, NodeSession[]>()
    for (const session of this.sessions.values()) {
      if (!include(session.serverId)) continue
      const list = byServer.get(session.serverId)
      if (list === undefined) byServer.set(session.serverId, [session])
      else list.push(session)
    }
    return byServer
  }

  #announcement(cause: AnnouncementCause): AnnouncementBody {
    const perServer = this.#sessionsByServer()
    let inFlight = 0
    for (const session of this.sessions.values()) inFlight += session.inFlight.size
    const freeSlots = Math.max(0, this.config.maxSessions - this.sessions.size)
    const ready = this.runtime.status().filter((s) => s.ready && this.#hashes.has(s.id))
    // Provider records follow what is announced; a failed provide is retried here, once per interval.
    this.#providers?.update(ready)
    return {
      v: WIRE_VERSION,
      peerId: this.peerId,
      addrs: this.multiaddrs,
      servers: ready.map((s) => ({
        id: s.id,
        version: s.version,
        manifestHash: this.#hashes.get(s.id)!,
        sessions: perServer.get(s.id)?.length ?? 0,
        freeSlots: this.#draining ? 0 : freeSlots,
      })),
      resources: this.config.resources ?? {
        cpu: availableParallelism(),
        memoryMiB: Math.floor(totalmem() / 1_048_576),
      },
      labels: this.config.labels,
      eligible: this.#allocation?.eligible,
      startedAt: this.#allocation?.startedAt,
      assignment:
        this.#allocation?.assignment === undefined
          ? undefined
          : { epoch: this.#allocation.assignment.epoch, hash: this.#allocation.assignment.hash },
      load: {
        sessions: this.sessions.size,
        capacity: this.config.maxSessions,
        inFlight,
        ...this.#machineLoad.sample(),
      },
      draining: this.#draining,
      links: this.#linksFor(cause),
    }
  }

  /**
   * The links to put in an announcement. A record handed to one newcomer carries them all (it has not seen them)
   * and leaves the network's schedule of them as it is: nobody else sees that record.
   */
  #linksFor(cause: AnnouncementCause): string[] | undefined {
    const current = [...new Set(this.#peer?.getConnections().map((c) => c.remotePeer.toString()))].slice(
      0,
      256,
    )
    return cause === 'direct' ? current : this.#links.next(current, cause === 'newcomers')
  }

  /**
   * Reads a stream's `open` frame; a bad one is refused (the stream ends) and gives undefined. `idle`: a kept
   * stream waiting for its next request, whose end or idle timeout is just its end, quietly closed.
   */
  async #readOpen(
    framed: FramedStream,
    gatewayPeer: string,
    timeoutMs: number,
    idle = false,
  ): Promise<OpenSession | undefined> {
    let frame: Uint8Array | undefined
    try {
      frame = await framed.nextFrame(timeoutMs)
      return parseFrame(OpenSessionSchema, frame, 'open')
    } catch (err) {
      if (idle && frame === undefined) {
        await framed.close()
        return undefined
      }
      this.logger.warn({ err, gatewayPeer }, 'bad session handshake')
      if (!framed.ended) await this.#refuse(framed, '', gatewayPeer, 'PROTOCOL_VIOLATION', errorMessage(err))
      return undefined
    }
  }

  async #refuse(
    framed: FramedStream,
    serverId: string,
    gatewayPeer: string,
    code: RefusalCode,
    message: string,
    retryAfterMs?: number,
  ): Promise<void> {
    this.logger.info({ serverId, code, gatewayPeer }, message)
    this.emit('session-refused', { serverId, code })
    this.metrics.sessionRefused(code)
    framed.sendJson(refusedFrame(code, message, retryAfterMs))
    await framed.close()
  }

  /** Why the node takes no new session or request for a server now, or undefined when it does. */
  #unavailable(serverId: string): [RefusalCode, string] | undefined {
    if (this.#draining) return ['NODE_DRAINING', 'this node is draining and accepts no new sessions']
    // A server still running for sessions handed over to other nodes is not offered any more.
    if (!this.runtime.has(serverId) || !this.#hashes.has(serverId))
      return ['UNKNOWN_SERVER', `server ${serverId} is not hosted on this node`]
    return undefined
  }

  /**
   * Modern-era requests on one stream: the first, then, while the gateway keeps the stream, each next one it
   * opens there (for any server this node hosts). A kept stream with no request for `keptStreamIdleMs` ends.
   */
  async #serveModern(first: OpenSession, framed: FramedStream, gatewayPeer: string): Promise<void> {
    let open: OpenSession | undefined = first
    while (open !== undefined) {
      const serverId = open.serverId
      const unavailable = this.#unavailable(serverId)
      if (unavailable !== undefined) return this.#refuse(framed, serverId, gatewayPeer, ...unavailable)
      if (open.era !== 'modern')
        return this.#refuse(
          framed,
          serverId,
          gatewayPeer,
          'PROTOCOL_VIOLATION',
          'a kept stream carries modern requests only',
        )
      this.emit('modern-request', { serverId })
      const keep = open.keep === true && this.config.keptStreamIdleMs > 0
      framed.sendJson(acceptedFrame(serverId, this.#announcedServer(serverId), keep))
      const pins = this.#toolPins.get(serverId)
      const kept = await serveModernRequest(
        open,
        framed,
        this.#bridge!,
        this.config.handshakeTimeoutMs,
        this.logger,
        pins === undefined ? undefined : { pins, onDrift: (drift) => this.#toolsChanged(serverId, drift) },
        keep,
      )
      if (!kept) return
      open = await this.#readOpen(framed, gatewayPeer, this.config.keptStreamIdleMs, true)
      // A node told to hang reads on but answers nothing, like one that is stuck.
      if (this.#hung) return
    }
  }

  async #onStream(stream: Stream, connection: Connection): Promise<void> {
    if (this.#hung) return
    const framed = new FramedStream(stream)
    const gatewayPeer = connection.remotePeer.toString()
    const open = await this.#readOpen(framed, gatewayPeer, this.config.handshakeTimeoutMs)
    if (open === undefined) return
    if (open.era === 'modern') return this.#serveModern(open, framed, gatewayPeer)
    const refuse = (code: RefusalCode, message: string, retryAfterMs?: number) =>
      this.#refuse(framed, open.serverId, gatewayPeer, code, message, retryAfterMs)
    const unavailable = this.#unavailable(open.serverId)
    if (unavailable !== undefined) return refuse(...unavailable)
    if (this.sessions.size >= this.config.maxSessions)
      return refuse('NODE_FULL', 'this node has no free session slot')
    if (this.sessions.has(open.sessionId)) return refuse('PROTOCOL_VIOLATION', 'session id is already in use')
    let upstream: Awaited<ReturnType<Runtime['open']>>
    try {
      upstream = await this.runtime.open(open.serverId)
    } catch (err) {
      if (isNexusError(err, 'NODE_BUSY')) return refuse('NODE_BUSY', err.message, err.retryAfterMs)
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
    const session = new NodeSession(open, gatewayPeer, framed, upstream, logger, {
      onClosed: (s) => {
        if (this.sessions.get(s.id) !== s) return
        this.sessions.delete(s.id)
        this.#announcer?.announceSoon()
        this.emit('session-closed', s)
      },
      onRequestDone: (done) => this.metrics.requestDone(open.serverId, done),
      guard: this.guard,
      maxInFlight: this.config.maxInFlightPerSession,
      toolPins: this.#toolPins.get(open.serverId),
      onToolDrift: (drift) => this.#toolsChanged(open.serverId, drift),
    })
    this.sessions.set(session.id, session)
    this.metrics.sessionOpened(open.serverId)
    framed.sendJson(acceptedFrame(open.serverId, this.#announcedServer(open.serverId)))
    this.#announcer?.announceSoon()
    this.emit('session-opened', session)
  }
}
