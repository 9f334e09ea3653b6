import type { UpstreamSession } from '../../node/runtime/upstream.ts'
import { decodeJson, encodeJson } from '../../protocol/session-handshake.ts'
import { withTimeout } from '../support/wait.ts'

/**
 * JSON-RPC over a runtime's upstream session, as the node relays it: for tests that drive a runtime without a
 * gateway. `ended` resolves with the code and reason when the runtime or the server ends the session.
 */
export class RawSession {
  readonly session: UpstreamSession
  readonly ended: Promise<{ code: string; reason: string }>
  readonly #pending = new Map<
    number,
    { resolve: (message: Record<string, unknown>) => void; reject: (err: Error) => void }
  >()
  #nextId = 1

  constructor(session: UpstreamSession) {
    this.session = session
    session.onMessage = (bytes) => {
      const message = decodeJson(bytes) as Record<string, unknown>
      if (typeof message.id === 'number' && ('result' in message || 'error' in message)) {
        this.#pending.get(message.id)?.resolve(message)
        this.#pending.delete(message.id)
      }
    }
    this.ended = new Promise((resolve) => {
      session.onEnd = (code, reason) => {
        // Requests still waiting get no answer now: they fail with the reason, at once.
        for (const { reject } of this.#pending.values())
          reject(new Error(`session ended (${code}): ${reason}`))
        this.#pending.clear()
        resolve({ code, reason })
      }
    })
  }

  request(method: string, params: unknown, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    const answer = new Promise<Record<string, unknown>>((resolve, reject) =>
      this.#pending.set(id, { resolve, reject }),
    )
    this.session.send(encodeJson({ jsonrpc: '2.0', id, method, params }))
    return withTimeout(answer, timeoutMs, `the answer to ${method}`)
  }

  /** `initialize` and `notifications/initialized`, as an SDK client would. */
  async initialize(): Promise<void> {
    await this.request('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'nexus-kube-test', version: '1.0.0' },
    })
    this.session.send(encodeJson({ jsonrpc: '2.0', method: 'notifications/initialized' }))
  }

  async echo(message: string): Promise<string> {
    const answer = await this.request('tools/call', { name: 'echo', arguments: { message } })
    const result = answer.result as { content?: { text?: string }[] } | undefined
    return result?.content?.map((c) => c.text ?? '').join('') ?? JSON.stringify(answer)
  }
}
