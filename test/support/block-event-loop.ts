/** Keeps the event loop busy for `ms`, as a long synchronous task would: no timer or I/O callback runs meanwhile. */
export function blockEventLoop(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // the event loop stands still
  }
}
