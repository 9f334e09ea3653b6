/**
 * Resolves once `check()` holds, testing it now and at every `event` of the emitter; rejects after the timeout,
 * saying what it waited for. Tests and benchmarks wait on events this way, never on sleeps.
 */
export function waitFor(
  check: () => boolean,
  emitter: NodeJS.EventEmitter | EventTarget,
  event: string,
  timeoutMs: number,
  what = event,
): Promise<void> {
  if (check()) return Promise.resolve()
  const { promise, resolve, reject } = Promise.withResolvers<void>()
  const onEvent = () => {
    if (!check()) return
    clearTimeout(timer)
    unlisten()
    resolve()
  }
  const timer = setTimeout(() => {
    unlisten()
    reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
  }, timeoutMs)
  // libp2p's services are EventTargets; the project's own classes are EventEmitters.
  let unlisten: () => void
  if (emitter instanceof EventTarget) {
    emitter.addEventListener(event, onEvent)
    unlisten = () => emitter.removeEventListener(event, onEvent)
  } else {
    emitter.on(event, onEvent)
    unlisten = () => emitter.off(event, onEvent)
  }
  return promise
}

/** Settles like `promise`, or rejects once `timeoutMs` passed, saying what took too long. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    )
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
