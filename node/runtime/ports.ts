import { connect, createServer } from 'node:net'

/** A TCP port free on loopback now (the OS picks it), for a process that is told its port. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port assigned')
  return address.port
}

/**
 * Whether something accepts connections now (a readiness probe): TCP at `host:port`, or a Unix socket when
 * `port` is its path.
 */
export function portAccepts(port: number | string, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = typeof port === 'string' ? connect({ path: port }) : connect({ port, host })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
