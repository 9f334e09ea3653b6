/** Whether a process exists (owned by anyone): stale sandbox leftovers are those of processes that do not. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
