import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'

/** A chain of reference proxies (`reference-proxy.ts`), each in its own process, in front of `target`. */
export interface ReferenceHops {
  /** Where a client connects: the first proxy of the chain. */
  url: string
  /** The CPU time (ms) all the proxies of the chain have used so far. */
  cpuMs(): Promise<number>
  stop(): Promise<void>
}

export async function startReferenceHops(target: string, hops: number): Promise<ReferenceHops> {
  const proxies: ChildProcess[] = []
  let url = target
  try {
    for (let i = 0; i < hops; i++) {
      const proxy = fork(new URL('./reference-proxy.ts', import.meta.url), [url])
      proxies.push(proxy)
      const [{ port }] = (await once(proxy, 'message')) as [{ port: number }]
      const next = new URL(target)
      next.port = String(port)
      url = next.toString()
    }
  } catch (err) {
    for (const proxy of proxies) proxy.kill()
    throw err
  }
  const cpuOf = async (proxy: ChildProcess) => {
    const reply = once(proxy, 'message') as Promise<[{ cpuMs: number }]>
    proxy.send('cpu')
    return (await reply)[0].cpuMs
  }
  return {
    url,
    cpuMs: async () => (await Promise.all(proxies.map(cpuOf))).reduce((a, b) => a + b, 0),
    stop: async () => {
      await Promise.all(
        proxies.map(async (proxy) => {
          const exited = once(proxy, 'exit')
          proxy.disconnect()
          await exited
        }),
      )
    },
  }
}
