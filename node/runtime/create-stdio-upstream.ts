import type { Logger } from 'pino'
import type { StdioServerConfig } from '../config.ts'
import type { ProcessLauncher } from './process-launcher.ts'
import { SharedStdioUpstream } from './shared-stdio/shared-stdio-upstream.ts'
import type { StartAdmission } from './start-admission.ts'
import { StdioUpstream } from './stdio-upstream.ts'
import type { TeardownQueue } from './teardown-queue.ts'
import type { Upstream, UpstreamEvents } from './upstream.ts'

/** A stdio server's upstream: shared processes when its manifest says it may be shared, else one per session. */
export function createStdioUpstream(
  config: StdioServerConfig,
  logger: Logger,
  events: UpstreamEvents | undefined,
  teardowns: TeardownQueue,
  launcher?: ProcessLauncher,
  admission?: StartAdmission,
): Upstream {
  return config.shared === undefined
    ? new StdioUpstream(config, logger, events, teardowns, launcher, admission)
    : new SharedStdioUpstream(
        { ...config, shared: config.shared },
        logger,
        events,
        teardowns,
        launcher,
        admission,
      )
}
