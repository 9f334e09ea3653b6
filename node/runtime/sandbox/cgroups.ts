import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { processAlive } from './process-alive.ts'

/** What one sandboxed instance may use at most. */
export interface InstanceLimits {
  /** CPU cores (0.5 = half a core), enforced as a CFS quota. */
  cpu: number
  memoryMiB: number
  /** Tasks (processes and threads) at once. */
  processes: number
}

/** How often an instance hit its limits, read when it ends. */
export interface LimitEvents {
  /** Processes the kernel killed for going over the memory limit. */
  oomKills: number
  /** Forks refused because the task limit was reached. */
  forksRefused: number
  /** Scheduling periods in which the instance used its whole CPU quota and was held back. */
  cpuThrottled: number
}

const detected = new Map<string, CgroupHost | undefined>()

/** One instance's control group: the command prefix that enters it, and what it recorded. */
export interface InstanceCgroup {
  /** Paths of `cgroup.procs` files a launching shell writes its own pid into before it execs the server. */
  readonly procsFiles: string[]
  events(): LimitEvents
  remove(): void
}

/**
 * Where this machine lets the node put its servers' processes under limits: cgroup v2 (a delegated subtree
 * with the memory, pids and cpu controllers) or cgroup v1 (writable memory, pids and cpu hierarchies).
 * `detect` returns undefined when neither is usable; the sandbox then falls back to rlimits.
 */
export class CgroupHost {
  readonly version: 1 | 2
  readonly #roots: { memory: string; pids: string; cpu: string }
  /** Instances alive now: the node's group weighs as much as that many processes would (see `#reweigh`). */
  #instances = 0

  constructor(version: 1 | 2, roots: { memory: string; pids: string; cpu: string }) {
    this.version = version
    this.#roots = roots
    // The process's own groups go with it (other nodes of the same process may still use them until then).
    process.once('exit', () => {
      for (const dir of new Set(Object.values(roots))) {
        try {
          for (const child of readdirSync(dir, { withFileTypes: true }))
            if (child.isDirectory()) removeWhenEmpty(join(dir, child.name))
        } catch {}
        removeWhenEmpty(dir)
      }
    })
  }

  /** One per process: nodes that share a process (tests) share its group and its weight. */
  static detect(base = '/sys/fs/cgroup'): CgroupHost | undefined {
    if (!detected.has(base)) {
      const own = ownCgroups()
      detected.set(base, detectV2(base, own) ?? detectV1(base, own))
    }
    return detected.get(base)
  }

  #reweigh(change: number): void {
    this.#instances += change
    const file = this.version === 2 ? 'cpu.weight' : 'cpu.shares'
    tryWrite(join(this.#roots.cpu, file), groupWeight(this.version, this.#instances))
  }

  /** A new control group for one instance, with its limits written. */
  create(name: string, limits: InstanceLimits): InstanceCgroup {
    const period = 100_000
    const quota = Math.max(1_000, Math.round(limits.cpu * period))
    const memoryBytes = limits.memoryMiB * 1024 * 1024
    if (this.version === 2) {
      const dir = join(this.#roots.memory, name)
      mkdirSync(dir)
      writeFileSync(join(dir, 'memory.max'), String(memoryBytes))
      tryWrite(join(dir, 'memory.swap.max'), '0')
      writeFileSync(join(dir, 'pids.max'), String(limits.processes))
      writeFileSync(join(dir, 'cpu.max'), `${quota} ${period}`)
      this.#reweigh(+1)
      return {
        procsFiles: [join(dir, 'cgroup.procs')],
        events: () => ({
          oomKills: keyed(join(dir, 'memory.events'), 'oom_kill'),
          forksRefused: keyed(join(dir, 'pids.events'), 'max'),
          cpuThrottled: keyed(join(dir, 'cpu.stat'), 'nr_throttled'),
        }),
        remove: () => {
          removeGroup([dir])
          this.#reweigh(-1)
        },
      }
    }
    const memory = join(this.#roots.memory, name)
    const pids = join(this.#roots.pids, name)
    const cpu = join(this.#roots.cpu, name)
    for (const dir of [memory, pids, cpu]) mkdirSync(dir)
    writeFileSync(join(memory, 'memory.limit_in_bytes'), String(memoryBytes))
    tryWrite(join(memory, 'memory.memsw.limit_in_bytes'), String(memoryBytes))
    writeFileSync(join(pids, 'pids.max'), String(limits.processes))
    writeFileSync(join(cpu, 'cpu.cfs_period_us'), String(period))
    writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(quota))
    this.#reweigh(+1)
    return {
      procsFiles: [memory, pids, cpu].map((dir) => join(dir, 'cgroup.procs')),
      events: () => ({
        oomKills: keyed(join(memory, 'memory.oom_control'), 'oom_kill'),
        forksRefused: keyed(join(pids, 'pids.events'), 'max'),
        cpuThrottled: keyed(join(cpu, 'cpu.stat'), 'nr_throttled'),
      }),
      remove: () => {
        removeGroup([memory, pids, cpu])
        this.#reweigh(-1)
      },
    }
  }
}

/**
 * The scheduler shares CPU between groups, not processes: left at its default weight, the node's group of
 * server instances would get as much CPU as one process beside it, however many instances it holds (16 busy
 * servers would share what the node alone gets). So the group weighs as much as its instances would as plain
 * processes, and each one still gets at most its own limit.
 */
function groupWeight(version: 1 | 2, instances: number): string {
  const n = Math.max(1, instances)
  return version === 2 ? String(Math.min(10_000, 100 * n)) : String(Math.min(262_144, 1024 * n))
}

/** This process's own control group in each hierarchy (`/proc/self/cgroup`), by controller ('' for v2). */
function ownCgroups(): Map<string, string> {
  const own = new Map<string, string>()
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? []
      if (path === undefined) continue
      for (const controller of controllers!.split(',')) own.set(controller, path)
    }
  } catch {
    // Not Linux, or no procfs: no cgroups.
  }
  return own
}

function detectV2(base: string, own: Map<string, string>): CgroupHost | undefined {
  const path = own.get('')
  if (path === undefined) return undefined
  const dir = join(base, path)
  try {
    const enabled = readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/)
    if (!['memory', 'pids', 'cpu'].every((c) => enabled.includes(c))) return undefined
    sweepStale(dir)
    const parent = join(dir, `nexus-${process.pid}`)
    mkdirSync(parent, { recursive: true })
    writeFileSync(join(parent, 'cgroup.subtree_control'), '+memory +pids +cpu')
    return new CgroupHost(2, { memory: parent, pids: parent, cpu: parent })
  } catch {
    return undefined
  }
}

function detectV1(base: string, own: Map<string, string>): CgroupHost | undefined {
  const roots: Record<string, string> = {}
  try {
    for (const controller of ['memory', 'pids', 'cpu']) {
      const path = own.get(controller)
      if (path === undefined) return undefined
      sweepStale(join(base, controller, path))
      const parent = join(base, controller, path, `nexus-${process.pid}`)
      mkdirSync(parent, { recursive: true })
      roots[controller] = parent
    }
  } catch {
    return undefined
  }
  return new CgroupHost(1, roots as { memory: string; pids: string; cpu: string })
}

/** A `key value` line's value in a cgroup statistics file; 0 when absent or unreadable. */
function keyed(file: string, key: string): number {
  try {
    const line = readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${key} `))
    return line === undefined ? 0 : Number(line.split(' ')[1]) || 0
  } catch {
    return 0
  }
}

function tryWrite(file: string, value: string): void {
  try {
    writeFileSync(file, value)
  } catch {
    // Optional knobs (swap accounting) are absent on some kernels.
  }
}

function removeWhenEmpty(dir: string): boolean {
  try {
    rmdirSync(dir)
    return true
  } catch {
    return false
  }
}

/**
 * Removes an instance's groups. The launching process has ended, but what ran in the sandbox may take a moment
 * longer to die (bubblewrap kills it when its parent goes): whatever is left is killed, and the removal is tried
 * again for a few seconds.
 */
function removeGroup(dirs: string[], attempt = 0): void {
  const left = dirs.filter((dir) => !removeWhenEmpty(dir))
  if (left.length === 0) return
  for (const dir of left) {
    try {
      for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n'))
        if (pid.trim()) process.kill(Number(pid), 'SIGKILL')
    } catch {
      // Gone already, or not ours to kill.
    }
  }
  if (attempt < 20) setTimeout(() => removeGroup(left, attempt + 1), 100).unref()
}

/** Removes the groups of node processes that ended without cleaning up (killed, crashed). */
function sweepStale(parentOfGroups: string): void {
  try {
    for (const entry of readdirSync(parentOfGroups)) {
      const pid = /^nexus-(\d+)$/.exec(entry)?.[1]
      if (pid === undefined || Number(pid) === process.pid || processAlive(Number(pid))) continue
      const group = join(parentOfGroups, entry)
      for (const child of readdirSync(group, { withFileTypes: true }))
        if (child.isDirectory()) removeWhenEmpty(join(group, child.name))
      removeWhenEmpty(group)
    }
  } catch {
    // Nothing to sweep.
  }
}
