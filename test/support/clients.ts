import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js'
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ProgressNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js'

export const SAMPLED_TEXT = 'sampled by the test client'

/** An SDK client that answers sampling and elicitation the way a person and a model would. */
export function newClient(name = 'nexus-test'): Client {
  const client = new Client(
    { name, version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
  )
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    model: 'test-model',
    role: 'assistant',
    content: { type: 'text', text: SAMPLED_TEXT },
  }))
  client.setRequestHandler(ElicitRequestSchema, async () => ({
    action: 'accept',
    content: { name: 'Ada Lovelace' },
  }))
  return client
}

export async function connectStreamable(
  url: string,
  options: { fetch?: FetchLike; name?: string; headers?: Record<string, string> } = {},
) {
  const client = newClient(options.name)
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    fetch: options.fetch,
    requestInit: options.headers === undefined ? undefined : { headers: options.headers },
    reconnectionOptions: {
      initialReconnectionDelay: 50,
      maxReconnectionDelay: 500,
      reconnectionDelayGrowFactor: 2,
      maxRetries: 5,
    },
  })
  await client.connect(transport)
  return { client, transport }
}

export async function connectLegacySse(url: string) {
  const client = newClient('nexus-test-sse')
  const transport = new SSEClientTransport(new URL(url))
  await client.connect(transport)
  return { client, transport }
}

/** Resolves when `predicate` holds for a value pushed through `feed`, or rejects after the timeout. */
export function waitUntil<T>(
  timeoutMs: number,
  what: string,
  setup: (check: (value: T) => void) => void,
  predicate: (value: T) => boolean,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    )
    setup((value) => {
      if (!predicate(value)) return
      clearTimeout(timer)
      resolve(value)
    })
  })
}

export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? []
  return content.map((c) => c.text ?? '').join('\n')
}

/**
 * Records every progress notification the client receives. The SDK's own `onprogress` drops a final progress
 * event that arrives in the same network chunk as the response (it defers notifications but not responses),
 * which would make a delivery test flaky for reasons outside the gateway. Calls still pass `onprogress` so
 * that the SDK asks the server for progress.
 */
export function recordProgress(client: Client): number[] {
  const seen: number[] = []
  client.setNotificationHandler(ProgressNotificationSchema, (n) => {
    seen.push(n.params.progress)
  })
  return seen
}

export type CallOutcome = { ok: true; value: unknown } | { ok: false; error: unknown }

/**
 * Calls one of the failover fixture's slow tools (`slow_read`, `slow_write`, `block`), which report progress
 * as they start: `running` resolves once the server runs it, `outcome` with its answer or its error.
 */
export function startSlowCall(client: Client, name: string, ms: number) {
  const running = Promise.withResolvers<void>()
  const outcome: Promise<CallOutcome> = client
    .callTool({ name, arguments: { ms } }, undefined, { onprogress: () => running.resolve() })
    .then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    )
  return { running: running.promise, outcome }
}

/**
 * Subscribes to a resource, has the server start its updates (`toggle`, a tool of server-everything), and
 * resolves with the uri of the first update for it.
 */
export async function firstResourceUpdate(client: Client, uri: string, toggle: string): Promise<string> {
  const updated = waitUntil<string>(
    20_000,
    'a resource update',
    (check) => client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => check(n.params.uri)),
    (value) => value === uri,
  )
  await client.subscribeResource({ uri })
  await client.callTool({ name: toggle, arguments: {} })
  return updated
}
