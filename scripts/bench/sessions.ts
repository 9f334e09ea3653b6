/**
 * Many concurrent sessions held through one gateway: every session is opened and kept open (with its GET
 * stream, as SDK clients do), then each calls a tool at the same moment. Counts errors (the target is zero)
 * and measures the gateway's memory per session, with the same sessions held directly against the server
 * in the same run for comparison.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { startDirectFixture } from '../../test/support/fixture-server.ts'
import { closeClients, openClient } from './clients.ts'
import { startPeerProcesses } from './peer-handle.ts'
import { distribution, round } from './stats.ts'

const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1_000)
const OPEN_BATCH = 50

async function holdSessions(url: string) {
  const clients: Client[] = []
  let openErrors = 0
  const errorKinds = new Map<string, number>()
  const noteError = (err: unknown) => {
    const kind = String((err as Error)?.message ?? err).slice(0, 160)
    errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1)
  }
  const openStarted = performance.now()
  for (let i = 0; i < SESSIONS; i += OPEN_BATCH) {
    const opened = await Promise.allSettled(
      Array.from({ length: Math.min(OPEN_BATCH, SESSIONS - i) }, () => openClient(url)),
    )
    for (const result of opened) {
      if (result.status === 'fulfilled') clients.push(result.value)
      else {
        openErrors++
        noteError(result.reason)
      }
    }
  }
  const openMs = performance.now() - openStarted
  let callErrors = 0
  const latencies: number[] = []
  const callsStarted = performance.now()
  await Promise.all(
    clients.map(async (client) => {
      const t0 = performance.now()
      try {
        await client.callTool({ name: 'test_simple_text', arguments: {} })
        latencies.push(performance.now() - t0)
      } catch (err) {
        callErrors++
        noteError(err)
      }
    }),
  )
  const callsMs = performance.now() - callsStarted
  return {
    clients,
    result: {
      sessionsOpened: clients.length,
      openErrors,
      callErrors,
      openAllMs: round(openMs),
      callAllMs: round(callsMs),
      callLatency: distribution(latencies),
      ...(errorKinds.size > 0 ? { errors: Object.fromEntries(errorKinds) } : {}),
    },
  }
}

export async function benchSessions() {
  const direct = await startDirectFixture()
  try {
    const directRun = await holdSessions(direct.url)
    await closeClients(directRun.clients)
    const network = await startPeerProcesses('http', {
      warmPool: 0,
      maxSessions: SESSIONS + 16,
      gatewayExecArgv: ['--expose-gc'],
    })
    try {
      const idle = await network.gateway.request({ type: 'memory' })
      const nexusRun = await holdSessions(network.url)
      const held = await network.gateway.request({ type: 'memory' })
      await closeClients(nexusRun.clients)
      const perSession = (bytes: number) => round(bytes / Math.max(1, held.sessions) / 1024, 1)
      return {
        sessions: SESSIONS,
        direct: directRun.result,
        nexus: {
          ...nexusRun.result,
          gatewaySessionsHeld: held.sessions,
          gatewayHeapMiB: {
            idle: round(idle.heapUsed / 2 ** 20, 1),
            held: round(held.heapUsed / 2 ** 20, 1),
          },
          gatewayRssMiB: { idle: round(idle.rss / 2 ** 20, 1), held: round(held.rss / 2 ** 20, 1) },
          gatewayHeapPerSessionKiB: perSession(held.heapUsed - idle.heapUsed),
          gatewayRssPerSessionKiB: perSession(held.rss - idle.rss),
        },
      }
    } finally {
      await network.stop()
    }
  } finally {
    await direct.stop()
  }
}
