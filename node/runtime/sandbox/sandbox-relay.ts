/**
 * Runs inside a server's sandbox, which has no network of its own but loopback, and starts the server there
 * after setting up its two doors to the outside, both through Unix sockets in the sandbox's scratch folder
 * (the only place the node and the sandbox share):
 *
 * - `--inbound <socket>:<port>`: the node reaches an HTTP server that listens on 127.0.0.1:<port> in the
 *   sandbox. The socket appears once the server accepts connections, so its existence means "ready".
 * - `--outbound <port>:<socket>`: the server's proxy (HTTP_PROXY, HTTPS_PROXY) is 127.0.0.1:<port>; each
 *   connection is carried to the node's egress proxy, which lets through only the hosts the manifest allows.
 *
 * Then `--` and the server's command, run as this process's child with the same stdio; its exit is this
 * process's exit. Written to run with the Node.js that runs the node, with nothing but Node's own modules.
 */
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { constants } from 'node:os'

const argv = process.argv.slice(2)
const split = argv.indexOf('--')
const options = argv.slice(0, split)
const command = argv.slice(split + 1)

function pipe(a: Socket, b: Socket): void {
  a.pipe(b)
  b.pipe(a)
  const close = () => {
    a.destroy()
    b.destroy()
  }
  a.on('error', close)
  b.on('error', close)
  a.on('close', close)
  b.on('close', close)
}

function listen(server: Server, where: string | number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    if (typeof where === 'number') server.listen(where, '127.0.0.1', resolve)
    else server.listen(where, resolve)
  })
}

/** Resolves once something accepts connections on 127.0.0.1:port in the sandbox. */
async function accepting(port: number): Promise<void> {
  for (let delay = 10; ; delay = Math.min(delay * 2, 250)) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}

const outbound: Promise<void>[] = []
const inbound: { socket: string; port: number }[] = []
for (let i = 0; i < options.length; i += 2) {
  const [flag, value] = [options[i], options[i + 1] ?? '']
  const at = value.lastIndexOf(':')
  if (flag === '--outbound') {
    const port = Number(value.slice(0, value.indexOf(':')))
    const socket = value.slice(value.indexOf(':') + 1)
    outbound.push(
      listen(
        createServer((client) => pipe(client, connect(socket))),
        port,
      ),
    )
  } else if (flag === '--inbound') {
    inbound.push({ socket: value.slice(0, at), port: Number(value.slice(at + 1)) })
  }
}
await Promise.all(outbound)

const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit' })
child.on('exit', (code, signal) =>
  process.exit(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 9))),
)
child.on('error', (err) => {
  process.stderr.write(`sandbox relay: cannot start ${command[0]}: ${err.message}\n`)
  process.exit(127)
})
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => child.kill(signal))

for (const { socket, port } of inbound) {
  await accepting(port)
  rmSync(socket, { force: true })
  await listen(
    createServer((client) => pipe(client, connect(port, '127.0.0.1'))),
    socket,
  )
}
