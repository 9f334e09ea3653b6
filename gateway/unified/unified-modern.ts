import type { IncomingMessage, ServerResponse } from 'node:http'
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js'
import { META_SERVER_INFO, MODERN_VERSIONS } from '../../protocol/modern-era.ts'
import { errorResponse, JsonRpcCode } from '../../protocol/rpc-codes.ts'
import type { AuthContext } from '../../protocol/session-handshake.ts'
import { sendHttpError } from '../http-responses.ts'
import { type ModernEndpoint, type RequestSink, ResponseStream } from '../modern-endpoint.ts'
import { validateModernRequest } from '../modern-validation.ts'
import type { Namespacing } from './namespacing.ts'
import type { ToolView } from './virtual-servers.ts'

type Json = Record<string, unknown>
type Request = JSONRPCMessage & { id: RequestId; method: string; params?: Json }

/** The lists of the unified endpoint: the method, the field its items are in, and how an item is renamed. */
const LISTS: Record<string, { field: string; key: 'name' | 'uri' | 'uriTemplate' }> = {
  'tools/list': { field: 'tools', key: 'name' },
  'prompts/list': { field: 'prompts', key: 'name' },
  'resources/list': { field: 'resources', key: 'uri' },
  'resources/templates/list': { field: 'resourceTemplates', key: 'uriTemplate' },
}

/** A list request to one server: nothing of it reaches the agent but its answer. */
class QuietSink implements RequestSink {
  closed = false
  onClose: (() => void) | undefined
  notify(): void {}
}

export interface UnifiedModernScope {
  view: ToolView
  /** The servers the principal may use here now. */
  servers: string[]
  auth: AuthContext
  name: string
}

/**
 * The unified endpoint in the 2026-07-28 era: no session, so each request stands alone. `server/discover` is
 * answered by the gateway; a list asks every server the principal may use (each with the list timeout, a
 * failing one left out) and merges their items, namespaced; a call, a prompt, a read or a completion goes to
 * its server alone, through the same routing and retries as its per-server URL, with its progress and log
 * messages streamed back. A follow-up that carries a `requestState` names its tool the same way, so it
 * reaches the same server (and the node that issued the state). `subscriptions/listen` is per server:
 * `/mcp/<server-id>`.
 */
export class UnifiedModern {
  readonly #modern: ModernEndpoint
  readonly #names: Namespacing
  readonly #listTimeoutMs: number

  constructor(modern: ModernEndpoint, names: Namespacing, listTimeoutMs: number) {
    this.#modern = modern
    this.#names = names
    this.#listTimeoutMs = listTimeoutMs
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
    scope: UnifiedModernScope,
  ): Promise<void> {
    const id = (body as { id?: RequestId } | undefined)?.id ?? null
    const refusal = validateModernRequest(req.headers, body)
    if (refusal !== undefined)
      return sendHttpError(res, refusal.status, refusal.code, refusal.message, {}, id, refusal.data)
    const request = body as Request
    if (request.id === undefined) return void res.writeHead(202).end()
    const stream = new ResponseStream(req, res)
    const answer = await this.#answer(request, stream, scope)
    if (answer !== undefined) stream.finish(answer)
  }

  async #answer(
    request: Request,
    stream: ResponseStream,
    scope: UnifiedModernScope,
  ): Promise<JSONRPCMessage | undefined> {
    const { method, params } = request
    if (method === 'server/discover') return this.#discover(request, scope)
    const list = LISTS[method]
    if (list !== undefined) return this.#list(request, list, scope)
    if (method === 'subscriptions/listen')
      return errorResponse(
        request.id,
        JsonRpcCode.MethodNotFound,
        'subscriptions/listen is per server in this era: use /mcp/<server-id>',
      )
    const target = this.#target(method, params, scope)
    if (target === undefined)
      return errorResponse(request.id, JsonRpcCode.MethodNotFound, `Method not found: ${method}`)
    if ('error' in target) return errorResponse(request.id, JsonRpcCode.InvalidParams, target.error)
    const answer = await this.#modern.forward(
      target.serverId,
      scope.auth,
      { ...request, params: target.params },
      stream,
    )
    if (answer === undefined || !('result' in answer) || method !== 'resources/read') return answer
    const contents = (answer.result as { contents?: { uri: string }[] }).contents ?? []
    return {
      ...answer,
      result: {
        ...answer.result,
        contents: contents.map((c) => ({ ...c, uri: this.#names.qualifyUri(target.serverId, c.uri) })),
      },
    }
  }

  #discover(request: Request, scope: UnifiedModernScope): JSONRPCMessage {
    return {
      jsonrpc: '2.0',
      id: request.id,
      result: {
        resultType: 'complete',
        supportedVersions: [...MODERN_VERSIONS],
        capabilities: { tools: {}, prompts: {}, resources: {}, completions: {} },
        instructions: `One endpoint for ${scope.servers.length} MCP server(s): tools and prompts are named <server>${this.#names.separator}<name>, resources nexus:<server>:<uri>.`,
        ttlMs: 0,
        cacheScope: 'private',
        _meta: { [META_SERVER_INFO]: { name: scope.name, version: '1.0.0' } },
      },
    }
  }

  /** The server a call is for, and its params in that server's own names; an error for a name never given out. */
  #target(
    method: string,
    params: Json | undefined,
    scope: UnifiedModernScope,
  ): { serverId: string; params: Json } | { error: string } | undefined {
    const { view } = scope
    const check = (serverId: string | undefined, what: string) =>
      serverId !== undefined && scope.servers.includes(serverId)
        ? undefined
        : `${what} is not offered here${serverId === undefined ? '' : ` (server ${serverId} has no host, or is not yours to use)`}`
    if (method === 'tools/call' || method === 'prompts/get') {
      const name = String(params?.name ?? '')
      const target = (method === 'tools/call' ? view.renamed(name) : undefined) ?? this.#names.split(name)
      const problem = check(target?.serverId, `${method === 'tools/call' ? 'tool' : 'prompt'} ${name}`)
      if (problem !== undefined) return { error: problem }
      if (method === 'tools/call' && !view.includesTool(target!.serverId, target!.name))
        return { error: `tool ${name} is not offered here` }
      return { serverId: target!.serverId, params: { ...params, name: target!.name } }
    }
    if (method === 'resources/read') {
      const target = this.#names.splitUri(String(params?.uri ?? ''))
      const problem = check(target?.serverId, `resource ${String(params?.uri)}`)
      if (problem !== undefined) return { error: problem }
      return { serverId: target!.serverId, params: { ...params, uri: target!.uri } }
    }
    if (method === 'completion/complete') {
      const ref = (params?.ref ?? {}) as Json
      const target =
        ref.type === 'ref/prompt'
          ? this.#names.split(String(ref.name))
          : this.#names.splitUri(String(ref.uri))
      const problem = check(target?.serverId, `completion target ${String(ref.name ?? ref.uri)}`)
      if (problem !== undefined) return { error: problem }
      const own =
        'name' in target! ? { ...ref, name: target.name } : { ...ref, uri: (target as { uri: string }).uri }
      return { serverId: target!.serverId, params: { ...params, ref: own } }
    }
    return undefined
  }

  async #list(
    request: Request,
    list: { field: string; key: 'name' | 'uri' | 'uriTemplate' },
    scope: UnifiedModernScope,
  ): Promise<JSONRPCMessage> {
    const servers = scope.servers.filter((id) => this.#names.accepts(id))
    const gathered = await Promise.all(
      servers.map((serverId) => this.#listOne(serverId, request, list.field, scope)),
    )
    const items = gathered.flatMap(({ serverId, items }) =>
      items
        .filter(
          (item) =>
            list.key !== 'name' ||
            request.method !== 'tools/list' ||
            scope.view.includesTool(serverId, String(item.name)),
        )
        .map((item) => {
          if (list.key !== 'name')
            return { ...item, [list.key]: this.#names.qualifyUri(serverId, String(item[list.key])) }
          const own = String(item.name)
          const namespaced = this.#names.qualify(serverId, own)
          if (request.method !== 'tools/list') return { ...item, name: namespaced }
          return {
            ...item,
            name: scope.view.shownName(serverId, own, namespaced),
            description: scope.view.description(serverId, own, item.description as string | undefined),
          }
        }),
    )
    return {
      jsonrpc: '2.0',
      id: request.id,
      result: { resultType: 'complete', [list.field]: items, ttlMs: 0, cacheScope: 'private' },
    }
  }

  /** Every page of one server's list, within the list timeout; nothing when it fails. */
  async #listOne(
    serverId: string,
    request: Request,
    field: string,
    scope: UnifiedModernScope,
  ): Promise<{ serverId: string; items: Json[] }> {
    const sink = new QuietSink()
    const timer = setTimeout(() => {
      sink.closed = true
      sink.onClose?.()
    }, this.#listTimeoutMs)
    const items: Json[] = []
    try {
      let cursor: unknown
      for (let page = 0; page < 100; page++) {
        // The agent's own cursor means nothing to a server: the unified lists come in one page.
        const { cursor: _agentCursor, ...rest } = request.params ?? {}
        const params = cursor === undefined ? rest : { ...rest, cursor }
        const answer = await this.#modern.forward(
          serverId,
          scope.auth,
          { ...request, id: `${String(request.id)}/${serverId}/${page}`, params } as Request,
          sink,
        )
        if (answer === undefined || !('result' in answer)) break
        const result = answer.result as Json
        items.push(...((result[field] as Json[] | undefined) ?? []))
        cursor = result.nextCursor
        if (cursor === undefined) break
      }
    } finally {
      clearTimeout(timer)
    }
    return { serverId, items }
  }
}
