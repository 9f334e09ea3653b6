import type { Logger } from 'pino'
import type { Manifest } from '../../protocol/manifest.ts'
import type { HttpServerConfig, StdioServerConfig } from '../config.ts'
import type { LaunchSpec } from './launch.ts'
import type { LimitEvents } from './sandbox/cgroups.ts'
import type { EgressDecision } from './sandbox/egress-proxy.ts'
import type { Sandbox, SandboxNetwork } from './sandbox/sandbox.ts'
import { StdioProcess } from './stdio-process.ts'

/** What the node hears from its sandboxes. */
export interface SandboxReports {
  /** A server instance ended having hit its limits (killed for memory, forks refused, CPU throttled). */
  limits?(serverId: string, events: LimitEvents, exit: string): void
  /** A server asked to reach a host through its egress proxy, and was let through or refused. */
  egress?(decision: EgressDecision): void
}

type Resources = Manifest['resources']

/**
 * The least CPU limit an instance gets, in cores. A manifest's `cpu` is what one instance needs on average (the
 * allocator counts it), not a ceiling to start under: at a quarter of a core a Node.js server starts four times
 * slower, and an HTTP server, which serves every session of the node in one process, starves. One core still
 * keeps a server that spins every thread from taking the machine.
 */
const MIN_CPU_LIMIT = 1

/** The resources an instance gets when its configuration names none (a manifest's defaults). */
const DEFAULT_RESOURCES: Resources = { cpu: 0.25, memoryMiB: 256 }

/**
 * Starts the node's server processes: each in a sandbox of its own when the node has one, as a plain child
 * process otherwise (`sandbox: preferred` on a machine without bubblewrap, or `off`).
 */
export class ProcessLauncher {
  readonly #sandbox: Sandbox | undefined
  readonly #limits: { processes: number; openFiles: number }
  readonly #reports: SandboxReports

  constructor(
    sandbox?: Sandbox,
    limits: { processes: number; openFiles: number } = { processes: 256, openFiles: 1024 },
    reports: SandboxReports = {},
  ) {
    this.#sandbox = sandbox
    this.#limits = limits
    this.#reports = reports
  }

  get sandboxed(): boolean {
    return this.#sandbox !== undefined
  }

  /** A stdio server's process. */
  start(config: StdioServerConfig | HttpServerConfig, spec: LaunchSpec, logger: Logger): StdioProcess {
    return this.#start(config, spec, logger).process
  }

  /**
   * An HTTP server's process, listening on `port`: on the machine's loopback when unsandboxed; in its own
   * network namespace when sandboxed, then reached through the Unix socket returned.
   */
  startHttp(
    config: HttpServerConfig,
    spec: LaunchSpec,
    logger: Logger,
    port: number,
  ): { process: StdioProcess; socketPath?: string } {
    return this.#start(config, spec, logger, port)
  }

  #start(
    config: StdioServerConfig | HttpServerConfig,
    spec: LaunchSpec,
    logger: Logger,
    inboundPort?: number,
  ): { process: StdioProcess; socketPath?: string } {
    if (this.#sandbox === undefined) return { process: new StdioProcess(spec, logger) }
    const resources = config.resources ?? DEFAULT_RESOURCES
    const launch = this.#sandbox.wrap(spec, {
      serverId: config.id,
      limits: {
        cpu: Math.max(MIN_CPU_LIMIT, resources.cpu),
        memoryMiB: resources.memoryMiB,
        processes: resources.processes ?? this.#limits.processes,
      },
      openFiles: resources.openFiles ?? this.#limits.openFiles,
      binds: config.binds,
      network: networkOf(config.egress),
      inboundPort,
      onEgress: (decision) => {
        if (!decision.allowed)
          logger.warn({ host: decision.host, port: decision.port }, 'refused egress outside the manifest')
        this.#reports.egress?.(decision)
      },
    })
    if (launch.enforcement !== this.#sandbox.enforcement)
      logger.warn({ limits: launch.enforcement }, 'sandboxed with weaker limits than this machine allows')
    const process = new StdioProcess(launch.spec, logger, (exit) => {
      const events = launch.finish()
      if (events.oomKills > 0 || events.forksRefused > 0 || events.cpuThrottled > 0)
        this.#reports.limits?.(config.id, events, exit)
    })
    return { process, socketPath: launch.inboundSocket }
  }
}

/** A manifest's `egress` as the sandbox enforces it: none, the machine's network, or named hosts only. */
function networkOf(egress: boolean | string[] | undefined): SandboxNetwork {
  if (egress === true) return 'host'
  if (Array.isArray(egress)) return { hosts: egress }
  return 'none'
}
