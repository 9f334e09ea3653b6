import { cpus, freemem, totalmem } from 'node:os'

/** The machine's CPU use since the previous sample and its memory use, each as a share from 0 to 1. */
export class MachineLoad {
  #previous = cpuTimes()

  sample(): { cpu: number; memory: number } {
    const current = cpuTimes()
    const total = current.total - this.#previous.total
    const idle = current.idle - this.#previous.idle
    this.#previous = current
    const cpu = total > 0 ? 1 - idle / total : 0
    return { cpu: clamp(cpu), memory: clamp(1 - freemem() / totalmem()) }
  }
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0
  let total = 0
  for (const { times } of cpus()) {
    idle += times.idle
    total += times.user + times.nice + times.sys + times.irq + times.idle
  }
  return { idle, total }
}

const clamp = (x: number) => Math.round(Math.min(1, Math.max(0, x)) * 1000) / 1000
