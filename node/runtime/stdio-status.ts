import type { StdioServerConfig } from '../config.ts'
import type { StdioProcess } from './stdio-process.ts'
import type { UpstreamStatus } from './upstream.ts'

/**
 * The status of a stdio server, whether its sessions each have a process or share a few: what differs is only
 * how the counts are taken, so both upstreams report through this one shape.
 */
export function stdioStatus(
  config: StdioServerConfig,
  counts: { ready: boolean; activeSessions: number; idleInstances: number; restarts: number },
  processes: Iterable<StdioProcess>,
): UpstreamStatus {
  const pids: number[] = []
  for (const p of processes) if (p.child.pid !== undefined && !p.exited) pids.push(p.child.pid)
  return {
    id: config.id,
    version: config.version,
    transport: 'stdio',
    // The node opens legacy sessions with stdio servers, and bridges modern requests to them.
    eras: ['legacy'],
    ...counts,
    pids,
  }
}
