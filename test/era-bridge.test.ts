import t from 'tap'
import { StdioServerConfigSchema } from '../node/config.ts'
import type { ModernRequest } from '../node/era-bridge/bridge-session.ts'
import { EraBridge } from '../node/era-bridge/era-bridge.ts'
import { ProcessRuntime } from '../node/runtime/process-runtime.ts'
import { createLogger } from '../protocol/logger.ts'
import { withTimeout } from './support/wait.ts'

// The era bridge alone, on the process runtime and the real `everything` server: what a node does with
// modern requests, without a gateway in front.

const logger = createLogger('node')
const runtime = new ProcessRuntime(logger)
await runtime.ensure([
  {
    config: StdioServerConfigSchema.parse({
      id: 'everything',
      transport: 'stdio',
      package: '@modelcontextprotocol/server-everything',
      args: ['stdio'],
      warmPool: 0,
    }),
    manifestHash: `0x${'e'.repeat(64)}`,
  },
])
t.teardown(() => runtime.stop())

const meta = (capabilities: object = {}) => ({
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientCapabilities': capabilities,
})

// biome-ignore lint/suspicious/noExplicitAny: JSON-RPC answers the tests probe field by field
type Answer = Record<string, any>

/** Serves one request through the bridge and resolves with its answer. */
function serve(bridge: EraBridge, request: ModernRequest): Promise<Answer> {
  const { promise, resolve } = Promise.withResolvers<Answer>()
  void bridge.handle('everything', request, { notify: () => {}, respond: resolve })
  return withTimeout(promise, 20_000, `the answer to ${request.method}`)
}

t.test(
  'with one legacy session allowed, a second request waits for it instead of starting another',
  async (t) => {
    const bridge = new EraBridge({ runtime, peerId: () => 'peer', logger, maxSessions: 1 })
    t.teardown(() => bridge.close())
    const call = (id: number) =>
      serve(bridge, {
        id,
        method: 'tools/call',
        params: { name: 'echo', arguments: { message: `m${id}` }, _meta: meta() },
      })
    const [first, second] = await Promise.all([call(1), call(2)])
    t.match(first.result.content, [{ text: 'Echo: m1' }])
    t.match(second.result.content, [{ text: 'Echo: m2' }])
    t.equal(bridge.sessions, 1, 'one legacy session served both')
  },
)

t.test(
  'a follow-up that does not answer every input request is refused, naming what is missing',
  async (t) => {
    const bridge = new EraBridge({ runtime, peerId: () => 'peer', logger })
    t.teardown(() => bridge.close())
    const params = { name: 'trigger-elicitation-request', arguments: {}, _meta: meta({ elicitation: {} }) }
    const first = await serve(bridge, { id: 1, method: 'tools/call', params })
    t.equal(first.result.resultType, 'input_required', 'the elicitation suspends the call')
    const [key] = Object.keys(first.result.inputRequests)
    t.match(first.result.inputRequests[key!], { method: 'elicitation/create' })
    const incomplete = await serve(bridge, {
      id: 2,
      method: 'tools/call',
      params: { ...params, requestState: first.result.requestState, inputResponses: {} },
    })
    t.match(incomplete.error, { code: -32602, message: new RegExp(`inputResponses lacks ${key}`) })
  },
)
