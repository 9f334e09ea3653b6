/**
 * The benchmark's Nexus network — one gateway and one node over TCP — in a process of its own, as it runs in
 * production: apart from the agents that use it. Driven over the IPC channel by `run.ts`.
 *
 * argv[2]: `stdio` (the node runs one fixture process per session, from a warm pool) or `http` (the node starts
 * one fixture process over streamable HTTP and relays every session to it).
 */
import { fixtureHttpServerConfig, fixtureServerConfig } from '../../test/support/fixture-server.ts'
import { startNetwork } from '../../test/support/network.ts'

export type BenchUpstream = 'stdio' | 'http'

export type NetworkRequest = { type: 'pool-settled'; size: number } | { type: 'stop' }
export type NetworkReply = { type: 'ready'; url: string } | { type: 'pool-settled' }

const upstream = process.argv[2] as BenchUpstream
const warmPool = Number(process.argv[3] ?? 16)
const maxSessions = Number(process.argv[4] ?? 256)
const send = (reply: NetworkReply) => process.send!(reply)

const network = await startNetwork({
  transport: 'tcp',
  nodes: 1,
  servers: [
    upstream === 'http' ? fixtureHttpServerConfig('bench') : { ...fixtureServerConfig('bench'), warmPool },
  ],
  node: { maxSessions },
})

/** Resolves once the node's warm pool is refilled, so that process start-ups do not overlap a timed run. */
function poolSettled(size: number): Promise<void> {
  const full = () => network.nodes.every((n) => n.runtime.status().every((s) => s.idleInstances >= size))
  return new Promise((resolve) => {
    const check = () => (full() ? resolve() : setTimeout(check, 50))
    check()
  })
}

process.on('message', async (request: NetworkRequest) => {
  if (request.type === 'pool-settled') {
    await poolSettled(upstream === 'stdio' ? request.size : 0)
    send({ type: 'pool-settled' })
  } else {
    await network.stop()
    process.disconnect()
  }
})
send({ type: 'ready', url: network.gateway.serverUrl('bench') })
