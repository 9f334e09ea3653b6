import type { Logger } from 'pino'
import type { HttpServerConfig, StdioServerConfig } from '../config.ts'
import type { LaunchSpec } from './launch.ts'
import type { LimitEvents } from './sandbox/cgroups.ts'
import type { Sandbox } from './sandbox/sandbox.ts'
import { StdioProcess } from './stdio-process.ts'

/** What a server instance ran into in its sandbox, reported when it ends. */
export type LimitReport = (serverId: string, events: LimitEvents, exit: string) => void

/** The resources an instance gets when its configuration names none (a manifest's defaults). */
const DEFAULT_RESOURCES = { cpu: 0.25, memoryMiB: 256 }

/**
 * Starts the node's server processes: each in a sandbox of its own when the node has one, as a plain child
 * process otherwise (`sandbox: preferred` on a machine without bubblewrap, or `off`).
 */
export class ProcessLauncher {
  readonly #sandbox: Sandbox | undefined
  readonly #limits: { processes: number; openFiles: number }
  readonly #report: LimitReport | undefined

  constructor(
    sandbox?: Sandbox,
    limits: { processes: number; openFiles: number } = { processes: 256, openFiles: 1024 },
    report?: LimitReport,
  ) {
    this.#sandbox = sandbox
    this.#limits = limits
    this.#report = report
  }

  get sandboxed(): boolean {
    return this.#sandbox !== undefined
  }

  start(config: StdioServerConfig | HttpServerConfig, spec: LaunchSpec, logger: Logger): StdioProcess {
    if (this.#sandbox === undefined) return new StdioProcess(spec, logger)
    const resources = config.resources ?? DEFAULT_RESOURCES
    const launch = this.#sandbox.wrap(spec, {
      serverId: config.id,
      limits: { ...resources, processes: this.#limits.processes },
      openFiles: this.#limits.openFiles,
      binds: config.binds,
      // A server the node reaches over HTTP shares the network namespace (its port must be reachable).
      network: config.egress === true || config.transport === 'streamable-http',
    })
    if (launch.enforcement !== this.#sandbox.enforcement)
      logger.warn({ limits: launch.enforcement }, 'sandboxed with weaker limits than this machine allows')
    return new StdioProcess(launch.spec, logger, (exit) => {
      const events = launch.finish()
      if (events.oomKills > 0 || events.forksRefused > 0 || events.cpuThrottled > 0)
        this.#report?.(config.id, events, exit)
    })
  }
}
