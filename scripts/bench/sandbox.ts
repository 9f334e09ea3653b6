/**
 * What the sandbox costs: start-up time of a stdio server (spawn → its answer to `initialize`) and per-call
 * latency and CPU on one session, each with the server run plainly and in its sandbox (bubblewrap, a control
 * group, rlimits), in the same run, at the sandbox's least CPU limit (one core).
 */
import pino from 'pino'
import { resolveLaunch } from '../../node/runtime/launch.ts'
import { ProcessLauncher } from '../../node/runtime/process-launcher.ts'
import { treeCpuMs } from '../../node/runtime/process-tree.ts'
import { Sandbox } from '../../node/runtime/sandbox/sandbox.ts'
import type { StdioProcess } from '../../node/runtime/stdio-process.ts'
import { distribution, round } from './stats.ts'

const TRIALS = Number(process.env.BENCH_SANDBOX_TRIALS ?? 10)
const CALLS = Number(process.env.BENCH_SANDBOX_CALLS ?? 500)
const SERVERS = [
  '@modelcontextprotocol/server-everything',
  '@modelcontextprotocol/server-sequential-thinking',
]

const logger = pino({ level: 'silent' })

/** Sends one JSON-RPC request and resolves with the answer to it. */
function request(proc: StdioProcess, id: number, method: string, params: object): Promise<unknown> {
  return new Promise((resolve) => {
    const previous = proc.onMessage
    proc.onMessage = (line) => {
      const message = JSON.parse(Buffer.from(line).toString()) as { id?: number }
      if (message.id !== id) return
      proc.onMessage = previous
      resolve(message)
    }
    proc.send(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, method, params })))
  })
}

const INITIALIZE = {
  protocolVersion: '2025-11-25',
  capabilities: {},
  clientInfo: { name: 'bench', version: '1' },
}

async function startup(
  launcher: ProcessLauncher,
  spec: ReturnType<typeof resolveLaunch>,
  cpu: number,
  id: string,
) {
  const times: number[] = []
  for (let i = 0; i < TRIALS; i++) {
    const started = performance.now()
    const proc = launcher.start(
      { id, transport: 'stdio', resources: { cpu, memoryMiB: 256 }, binds: [] } as never,
      spec,
      logger,
    )
    await request(proc, 1, 'initialize', INITIALIZE)
    times.push(performance.now() - started)
    await proc.stop()
  }
  return distribution(times)
}

async function calls(launcher: ProcessLauncher, spec: ReturnType<typeof resolveLaunch>) {
  const proc = launcher.start(
    { id: 'bench', transport: 'stdio', resources: { cpu: 1, memoryMiB: 256 }, binds: [] } as never,
    spec,
    logger,
  )
  await request(proc, 1, 'initialize', INITIALIZE)
  proc.send(Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })))
  for (let i = 0; i < 50; i++)
    await request(proc, 1000 + i, 'tools/call', { name: 'echo', arguments: { message: 'warm' } })
  const serverBefore = treeCpuMs(proc.child.pid!)
  const ownBefore = process.cpuUsage()
  const times: number[] = []
  for (let i = 0; i < CALLS; i++) {
    const started = performance.now()
    await request(proc, 2000 + i, 'tools/call', { name: 'echo', arguments: { message: 'bench' } })
    times.push(performance.now() - started)
  }
  const own = process.cpuUsage(ownBefore)
  const serverCpuMsPerCall = (treeCpuMs(proc.child.pid!) - serverBefore) / CALLS
  await proc.stop()
  return {
    latency: distribution(times),
    cpuMsPerCall: {
      server: round(serverCpuMsPerCall),
      caller: round((own.user + own.system) / 1000 / CALLS),
    },
  }
}

export async function benchSandbox() {
  const { sandbox, unavailable } = Sandbox.create('preferred')
  if (sandbox === undefined) return { skipped: unavailable }
  const plain = new ProcessLauncher()
  const boxed = new ProcessLauncher(sandbox, { processes: 256, openFiles: 1024 })
  const startupMs: Record<string, unknown> = {}
  for (const name of SERVERS) {
    const spec = resolveLaunch({
      id: 'bench',
      transport: 'stdio',
      package: name,
      args: name.endsWith('everything') ? ['stdio'] : [],
      env: {},
      passEnv: [],
      binds: [],
    } as never)
    startupMs[name] = {
      plain: await startup(plain, spec, 1, 'bench'),
      sandboxed: await startup(boxed, spec, 1, 'bench'),
    }
  }
  const everything = resolveLaunch({
    id: 'bench',
    transport: 'stdio',
    package: SERVERS[0],
    args: ['stdio'],
    env: {},
    passEnv: [],
    binds: [],
  } as never)
  const result = {
    limits: sandbox.enforcement,
    trials: TRIALS,
    calls: CALLS,
    startupMs,
    echoCall: { plain: await calls(plain, everything), sandboxed: await calls(boxed, everything) },
  }
  sandbox.dispose()
  return result
}
