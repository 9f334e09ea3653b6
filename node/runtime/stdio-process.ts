import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Logger } from 'pino'
import { DEFAULT_MAX_FRAME_BYTES } from '../../protocol/framing.ts'
import type { LaunchSpec } from './launch.ts'
import { LineSplitter } from './line-splitter.ts'

const NEWLINE = Buffer.from('\n')

/**
 * One MCP server child process speaking newline-delimited JSON-RPC on stdin/stdout. Stopping follows the MCP
 * stdio shutdown sequence: close stdin, then SIGTERM, then SIGKILL, each after a grace period.
 */
export class StdioProcess {
  readonly child: ChildProcess
  readonly startedAt = Date.now()
  onMessage: ((message: Uint8Array) => void) | undefined
  onExit: ((description: string) => void) | undefined
  /** Runs once, at the process's first line of output or its exit: when it is no longer starting. */
  onStarted: (() => void) | undefined
  #exited = false
  #exitDescription = ''
  readonly #exitPromise: Promise<void>

  /** `afterExit` runs once the process has ended, before `onExit` (a sandbox reads and removes its limits). */
  constructor(spec: LaunchSpec, logger: Logger, afterExit?: (description: string) => void) {
    this.child = spawn(spec.command, spec.args, {
      env: spec.env,
      cwd: spec.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const splitter = new LineSplitter(DEFAULT_MAX_FRAME_BYTES)
    this.child.stdout!.on('data', (chunk: Buffer) => {
      for (const line of splitter.push(chunk, (bytes) =>
        logger.warn({ bytes }, 'dropped an oversized line'),
      )) {
        this.#started()
        this.onMessage?.(line)
      }
    })
    const stderrSplitter = new LineSplitter(16 * 1024)
    this.child.stderr!.on('data', (chunk: Buffer) => {
      for (const line of stderrSplitter.push(chunk, () => {}))
        logger.debug({ stderr: Buffer.from(line).toString() }, 'server stderr')
    })
    // A server that closes stdin while we write must not crash the node with EPIPE.
    this.child.stdin!.on('error', (err) => logger.debug({ err }, 'server stdin error'))
    this.#exitPromise = new Promise((resolve) => {
      const finish = (description: string) => {
        if (this.#exited) return
        this.#exited = true
        this.#exitDescription = description
        afterExit?.(description)
        this.#started()
        resolve()
        this.onExit?.(description)
      }
      this.child.once('exit', (code, signal) =>
        finish(signal ? `killed by ${signal}` : `exited with code ${code}`),
      )
      this.child.once('error', (err) => finish(`failed to start: ${err.message}`))
    })
  }

  #started(): void {
    const started = this.onStarted
    this.onStarted = undefined
    started?.()
  }

  get exited(): boolean {
    return this.#exited
  }

  get exitDescription(): string {
    return this.#exitDescription
  }

  /** Writes one message. Returns false when the pipe is full; await `drained()` before writing more. */
  send(message: Uint8Array): boolean {
    const stdin = this.child.stdin!
    if (this.#exited || !stdin.writable) return false
    // A raw newline inside a message would split it in two on the server's side; JSON never needs one.
    const safe = message.includes(0x0a)
      ? Buffer.from(JSON.stringify(JSON.parse(Buffer.from(message).toString())))
      : message
    // One write (writev) for message and newline: a second would wake the server for half a line.
    stdin.cork()
    stdin.write(safe)
    const more = stdin.write(NEWLINE)
    stdin.uncork()
    return more
  }

  async drained(): Promise<void> {
    const stdin = this.child.stdin!
    if (this.#exited || !stdin.writableNeedDrain) return
    // `once` rejects when stdin fails instead (EPIPE: the server closed it while a flood was pending); then
    // nothing more will be written, and a rejection left unhandled here would end the node's process.
    await Promise.race([once(stdin, 'drain').catch(() => {}), this.#exitPromise])
  }

  setOutputPaused(paused: boolean): void {
    if (paused) this.child.stdout!.pause()
    else this.child.stdout!.resume()
  }

  async stop(graceMs = 2_000): Promise<void> {
    if (this.#exited) return
    this.child.stdin!.end()
    if (await this.#exitsWithin(graceMs)) return
    this.child.kill('SIGTERM')
    if (await this.#exitsWithin(graceMs)) return
    this.child.kill('SIGKILL')
    await this.#exitPromise
  }

  async #exitsWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms)
    })
    const exited = await Promise.race([this.#exitPromise.then(() => true), timeout])
    clearTimeout(timer)
    return exited
  }
}
