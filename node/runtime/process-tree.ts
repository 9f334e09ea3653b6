import { readdirSync, readFileSync } from 'node:fs'

/** A process and all its descendants now, from /proc (Linux); the pids that ended meanwhile are left out. */
export function processTree(pid: number): number[] {
  const pids: number[] = []
  const visit = (p: number) => {
    try {
      const children = readdirSync(`/proc/${p}/task`).flatMap((task) =>
        readFileSync(`/proc/${p}/task/${task}/children`, 'utf8')
          .split(' ')
          .filter((c) => c.trim()),
      )
      pids.push(p)
      for (const child of children) visit(Number(child))
    } catch {
      // Gone meanwhile.
    }
  }
  visit(pid)
  return pids
}

/** Resident memory (MiB) of a process tree now. */
export function treeRssMiB(pid: number): number {
  let kib = 0
  for (const p of processTree(pid)) {
    try {
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0)
    } catch {
      // Gone meanwhile.
    }
  }
  return kib / 1024
}

/** CPU time (ms) a process tree has used so far (user and system), at 100 clock ticks a second. */
export function treeCpuMs(pid: number): number {
  return cpuMsOf(processTree(pid))
}

/** CPU time (ms) a process's descendants, alive now, have used so far: the servers a node runs. */
export function descendantsCpuMs(pid: number): number {
  return cpuMsOf(processTree(pid).slice(1))
}

function cpuMsOf(pids: number[]): number {
  let ticks = 0
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // Gone meanwhile.
    }
  }
  return ticks * 10
}
