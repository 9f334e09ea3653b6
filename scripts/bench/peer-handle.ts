import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import type { BenchUpstream, PeerReply, PeerRequest } from './peer-process.ts'

/** Writes a V8 CPU profile of every peer process to this folder. */
const PROFILE_DIR = process.env.BENCH_PROFILE_DIR

/** A peer of the benchmark's network in a child process of its own; see `peer-process.ts`. */
export class PeerProcess {
  readonly address: string
  readonly #child: ChildProcess

  private constructor(child: ChildProcess, address: string) {
    this.#child = child
    this.address = address
  }

  static async start(args: string[], execArgv: string[] = []): Promise<PeerProcess> {
    const profile = PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []
    const child = fork(new URL('./peer-process.ts', import.meta.url), args, {
      execArgv: [...process.execArgv, ...profile, ...execArgv],
    })
    const reply = await PeerProcess.#reply(child)
    if (reply.type !== 'ready') throw new Error(`unexpected ${reply.type} from the ${args[0]} process`)
    return new PeerProcess(child, reply.address)
  }

  static async #reply(child: ChildProcess): Promise<PeerReply> {
    const [reply] = (await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(([code]) => Promise.reject(new Error(`peer process exited (${code})`))),
    ])) as [PeerReply]
    return reply
  }

  async request<T extends PeerRequest['type']>(
    request: Extract<PeerRequest, { type: T }>,
  ): Promise<Extract<PeerReply, { type: T }>> {
    this.#child.send(request)
    return (await PeerProcess.#reply(this.#child)) as Extract<PeerReply, { type: T }>
  }

  async stop(): Promise<void> {
    const exited = once(this.#child, 'exit')
    this.#child.send({ type: 'stop' } satisfies PeerRequest)
    await exited
  }
}

export interface PeerProcesses {
  /** The gateway's MCP endpoint of the benchmark server. */
  url: string
  node: PeerProcess
  gateway: PeerProcess
  /** Waits until the node's warm pool is refilled after sessions opened. */
  settle(): Promise<void>
  stop(): Promise<void>
}

/** A node and a gateway, each in a process of its own, as they run in production. */
export async function startPeerProcesses(
  upstream: BenchUpstream,
  options: { warmPool: number; maxSessions: number; gatewayExecArgv?: string[] },
): Promise<PeerProcesses> {
  const node = await PeerProcess.start([
    'node',
    upstream,
    String(options.warmPool),
    String(options.maxSessions),
  ])
  const gateway = await PeerProcess.start(['gateway', node.address], options.gatewayExecArgv).catch(
    async (err) => {
      await node.stop()
      throw err
    },
  )
  return {
    url: gateway.address,
    node,
    gateway,
    settle: async () => {
      await node.request({ type: 'pool-settled', size: options.warmPool })
    },
    stop: async () => {
      await gateway.stop()
      await node.stop()
    },
  }
}
