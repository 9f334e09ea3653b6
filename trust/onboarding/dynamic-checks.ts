import { Writable } from 'node:stream'
import { Ajv } from 'ajv'
import pino from 'pino'
import type { LaunchSpec } from '../../node/runtime/launch.ts'
import { ProcessLauncher } from '../../node/runtime/process-launcher.ts'
import { treeRssMiB } from '../../node/runtime/process-tree.ts'
import { Sandbox } from '../../node/runtime/sandbox/sandbox.ts'
import type { StdioProcess } from '../../node/runtime/stdio-process.ts'
import type { Finding, OnboardingPolicy } from './findings.ts'
import { sampleOf } from './schema-sample.ts'
import type { ToolDefinition } from './tool-digest.ts'

type Json = Record<string, unknown>

/** What the server showed of itself when it ran. */
export interface DynamicResult {
  findings: Finding[]
  /** `bubblewrap, cgroup v1` (or v2, rlimits), or `none` when the machine could not sandbox. */
  sandbox: string
  serverInfo?: Json
  protocolVersion?: string
  tools: ToolDefinition[]
  resources: Json[]
  prompts: Json[]
  /** Tools called (read-only ones), and how each answered. */
  calls: { tool: string; outcome: 'result' | 'tool-error' | 'protocol-error' | 'timeout' | 'crash' }[]
  startupMs?: number
  peakMemoryMiB?: number
}

const CLIENT_INFO = { name: 'nexus-onboarding', version: '1.0.0' }
const MAX_PAGES = 20

/** A JSON-RPC client over the server's stdio, keeping every line the server wrote that was not JSON-RPC. */
class StdioProbe {
  readonly noise: string[] = []
  readonly stderr: string[] = []
  readonly #pending = new Map<number, (message: Json | 'exited') => void>()
  /** Progress of a request, by its progress token: each one moves that request's deadline on. */
  readonly #progress = new Map<string, () => void>()
  #nextId = 1

  readonly proc: StdioProcess

  constructor(proc: StdioProcess) {
    this.proc = proc
    // The process ending answers every request still waiting.
    proc.onExit = () => {
      for (const waiting of this.#pending.values()) waiting('exited')
      this.#pending.clear()
    }
    proc.onMessage = (line) => {
      const text = Buffer.from(line).toString('utf8')
      let message: Json | undefined
      try {
        message = JSON.parse(text) as Json
      } catch {
        message = undefined
      }
      if (message === undefined || message.jsonrpc !== '2.0') {
        if (this.noise.length < 20) this.noise.push(text.slice(0, 200))
        return
      }
      if (message.method === 'notifications/progress') {
        const token = (message.params as { progressToken?: unknown } | undefined)?.progressToken
        this.#progress.get(String(token))?.()
        return
      }
      if (typeof message.method === 'string' && message.id !== undefined)
        // The server asks something of the client (sampling, roots): a probe has nothing to give.
        proc.send(
          Buffer.from(
            JSON.stringify({
              jsonrpc: '2.0',
              id: message.id,
              error: { code: -32601, message: 'the onboarding probe answers nothing' },
            }),
          ),
        )
      const waiting = this.#pending.get(message.id as number)
      if (waiting !== undefined) {
        this.#pending.delete(message.id as number)
        waiting(message)
      }
    }
  }

  /**
   * Sends a request; resolves with the answer, `timeout`, or `exited` when the process ends first. The request
   * asks for progress, and each progress notification gives it `timeoutMs` more: a long operation that says
   * how it goes is not a hang.
   */
  request(method: string, params: Json, timeoutMs: number): Promise<Json | 'timeout' | 'exited'> {
    const id = this.#nextId++
    if (this.proc.exited) return Promise.resolve('exited')
    const token = `probe-${id}`
    return new Promise((resolve) => {
      const expire = () => {
        this.#pending.delete(id)
        this.#progress.delete(token)
        resolve('timeout')
      }
      let timer = setTimeout(expire, timeoutMs)
      this.#progress.set(token, () => {
        clearTimeout(timer)
        timer = setTimeout(expire, timeoutMs)
      })
      this.#pending.set(id, (message) => {
        clearTimeout(timer)
        this.#progress.delete(token)
        resolve(message)
      })
      const meta = { ...((params._meta as Json | undefined) ?? {}), progressToken: token }
      this.proc.send(
        Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: meta } })),
      )
    })
  }

  notify(method: string): void {
    this.proc.send(Buffer.from(JSON.stringify({ jsonrpc: '2.0', method })))
  }
}

/**
 * The dynamic stage: starts the server in a sandbox of its own (no network, a scratch folder), opens a session
 * (2025-11-25), lists its tools, resources and prompts (every page), checks every schema, calls each read-only
 * tool once with arguments built from its schema, and watches that stdout carries nothing but protocol. Start-up
 * time and peak memory are measured for the manifest's `resources`. A crash, a hang or a protocol break is a
 * finding with the evidence (stderr, the line, the timeout).
 */
export async function dynamicChecks(
  spec: LaunchSpec,
  serverId: string,
  policy: OnboardingPolicy,
  /** What the sandbox must show beyond the launch's own files (a Python tree's folder). */
  binds: { path: string; mode: 'ro' | 'rw' }[] = [],
): Promise<DynamicResult> {
  const { sandbox, unavailable } = Sandbox.create('preferred')
  const findings: Finding[] = []
  if (sandbox === undefined)
    findings.push({
      stage: 'dynamic',
      id: 'dynamic.unsandboxed',
      severity: 'medium',
      title: 'the server ran without a sandbox on this machine',
      evidence: unavailable,
    })
  const stderr: string[] = []
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) {
          if (!line) continue
          const entry = JSON.parse(line) as { stderr?: string }
          if (entry.stderr !== undefined && stderr.length < 200) stderr.push(entry.stderr)
        }
        done()
      },
    }),
  )
  const launcher = new ProcessLauncher(sandbox, { processes: 256, openFiles: 1024 })
  const result: DynamicResult = {
    findings,
    sandbox: sandbox === undefined ? 'none' : `bubblewrap, ${sandbox.enforcement}`,
    tools: [],
    resources: [],
    prompts: [],
    calls: [],
  }
  const started = performance.now()
  const proc = launcher.start(
    { id: serverId, transport: 'stdio', binds, resources: { cpu: 1, memoryMiB: 1024 } } as never,
    spec,
    logger,
  )
  const probe = new StdioProbe(proc)
  let peak = 0
  const sampler = setInterval(() => {
    if (proc.child.pid !== undefined) peak = Math.max(peak, treeRssMiB(proc.child.pid))
  }, 50)
  const evidence = () => stderr.slice(-8).join('\n') || '(nothing on stderr)'
  try {
    const init = await probe.request(
      'initialize',
      { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: CLIENT_INFO },
      policy.startTimeoutMs,
    )
    if (typeof init === 'string' || init.result === undefined) {
      findings.push({
        stage: 'dynamic',
        id: init === 'timeout' ? 'dynamic.start-timeout' : 'dynamic.crash-on-start',
        severity: 'high',
        title:
          init === 'timeout'
            ? `the server did not answer initialize within ${policy.startTimeoutMs} ms`
            : init === 'exited'
              ? `the server ${proc.exitDescription} before answering initialize`
              : 'the server refused initialize',
        evidence: typeof init === 'string' ? evidence() : JSON.stringify(init.error),
      })
      return result
    }
    result.startupMs = Math.round(performance.now() - started)
    const initialized = init.result as { protocolVersion?: string; serverInfo?: Json; capabilities?: Json }
    result.protocolVersion = initialized.protocolVersion
    result.serverInfo = initialized.serverInfo
    probe.notify('notifications/initialized')
    const capabilities = initialized.capabilities ?? {}
    const list = async (method: string, key: string): Promise<Json[]> => {
      const items: Json[] = []
      let cursor: string | undefined
      for (let page = 0; page < MAX_PAGES; page++) {
        const answer = await probe.request(
          method,
          cursor === undefined ? {} : { cursor },
          policy.callTimeoutMs,
        )
        if (typeof answer === 'string' || answer.result === undefined) {
          findings.push({
            stage: 'dynamic',
            id: `dynamic.list-failed:${method}`,
            severity: 'high',
            title: `${method} failed: ${typeof answer === 'string' ? answer : JSON.stringify(answer.error)}`,
            evidence: evidence(),
          })
          return items
        }
        const body = answer.result as Json
        items.push(...((body[key] as Json[] | undefined) ?? []))
        cursor = typeof body.nextCursor === 'string' ? body.nextCursor : undefined
        if (cursor === undefined) break
      }
      return items
    }
    if (capabilities.tools !== undefined)
      result.tools = (await list('tools/list', 'tools')) as unknown as ToolDefinition[]
    if (capabilities.resources !== undefined) result.resources = await list('resources/list', 'resources')
    if (capabilities.prompts !== undefined) result.prompts = await list('prompts/list', 'prompts')
    checkSchemas(result.tools, findings)
    for (const tool of result.tools) {
      const annotations = (tool.annotations ?? {}) as { readOnlyHint?: boolean }
      if (annotations.readOnlyHint !== true || proc.exited) continue
      const answer = await probe.request(
        'tools/call',
        { name: tool.name, arguments: sampleOf(tool.inputSchema) as Json },
        policy.callTimeoutMs,
      )
      if (answer === 'exited') {
        result.calls.push({ tool: tool.name, outcome: 'crash' })
        findings.push({
          stage: 'dynamic',
          id: `dynamic.crash-on-call:${tool.name}`,
          severity: 'high',
          title: `the server ${proc.exitDescription} when ${tool.name} was called`,
          evidence: evidence(),
        })
        break
      }
      if (answer === 'timeout') {
        result.calls.push({ tool: tool.name, outcome: 'timeout' })
        findings.push({
          stage: 'dynamic',
          id: `dynamic.hang:${tool.name}`,
          severity: 'high',
          title: `${tool.name} did not answer within ${policy.callTimeoutMs} ms`,
        })
        continue
      }
      const isError = (answer.result as { isError?: boolean } | undefined)?.isError === true
      result.calls.push({
        tool: tool.name,
        outcome: answer.error !== undefined ? 'protocol-error' : isError ? 'tool-error' : 'result',
      })
    }
  } finally {
    clearInterval(sampler)
    if (!proc.exited) await proc.stop()
    sandbox?.dispose()
  }
  if (probe.noise.length > 0)
    findings.push({
      stage: 'dynamic',
      id: 'dynamic.stdout-noise',
      severity: 'high',
      title: `the server wrote ${probe.noise.length} line(s) on stdout that are not MCP messages (stdout is the protocol's channel)`,
      evidence: probe.noise.slice(0, 3).join('\n'),
    })
  result.peakMemoryMiB = Math.round(peak)
  return result
}

/** Every input and output schema must be a JSON Schema a client can compile. */
function checkSchemas(tools: readonly ToolDefinition[], findings: Finding[]): void {
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false })
  for (const tool of tools)
    for (const [which, schema] of [
      ['input', tool.inputSchema],
      ['output', tool.outputSchema],
    ] as const) {
      if (schema === undefined) continue
      try {
        ajv.compile(schema as object)
      } catch (err) {
        findings.push({
          stage: 'dynamic',
          id: `dynamic.invalid-schema:${tool.name}`,
          severity: 'medium',
          title: `tool ${tool.name}: its ${which} schema is not valid JSON Schema`,
          evidence: (err as Error).message.slice(0, 300),
        })
      }
    }
}
