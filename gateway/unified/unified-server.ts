import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js'
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  CompleteRequestSchema,
  CompleteResultSchema,
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  ElicitRequestSchema,
  ElicitResultSchema,
  EmptyResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  ListPromptsRequestSchema,
  ListPromptsResultSchema,
  ListResourcesRequestSchema,
  ListResourcesResultSchema,
  ListResourceTemplatesRequestSchema,
  ListResourceTemplatesResultSchema,
  ListRootsRequestSchema,
  ListRootsResultSchema,
  ListToolsRequestSchema,
  ListToolsResultSchema,
  LoggingMessageNotificationSchema,
  McpError,
  type Prompt,
  PromptListChangedNotificationSchema,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  type Resource,
  ResourceListChangedNotificationSchema,
  type ResourceTemplate,
  ResourceUpdatedNotificationSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  type Tool,
  ToolListChangedNotificationSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js'
import type { Logger } from 'pino'
import type { AuthContext } from '../../protocol/session-handshake.ts'
import type { SessionFactory } from '../session-factory.ts'
import type { Namespacing } from './namespacing.ts'
import { type Upstream, UpstreamClients } from './upstream-clients.ts'
import type { ToolView } from './virtual-servers.ts'

export interface UnifiedServerOptions {
  name: string
  version: string
  sessionId: string
  auth: AuthContext
  factory: SessionFactory
  names: Namespacing
  view: ToolView
  /**
   * The servers this principal may use here now (live hosts, scopes, the virtual server's list), each with a
   * signature of its hosts: a change in it is what tells the agent its lists may have changed.
   */
  visibleServers: () => Map<string, string>
  /** How long one server may take to answer a list before the list goes on without it. */
  listTimeoutMs: number
  /** How long a call may run (each progress notification starts it again). */
  callTimeoutMs: number
  logger: Logger
}

type Kind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates'

/** How each list is asked for: its method, the result's schema, the field of its items, the capability. */
const LIST_KINDS = {
  tools: { method: 'tools/list', schema: ListToolsResultSchema, field: 'tools', capability: 'tools' },
  prompts: {
    method: 'prompts/list',
    schema: ListPromptsResultSchema,
    field: 'prompts',
    capability: 'prompts',
  },
  resources: {
    method: 'resources/list',
    schema: ListResourcesResultSchema,
    field: 'resources',
    capability: 'resources',
  },
  resourceTemplates: {
    method: 'resources/templates/list',
    schema: ListResourceTemplatesResultSchema,
    field: 'resourceTemplates',
    capability: 'resources',
  },
} as const

/**
 * One agent session of the unified endpoint: an MCP server (the SDK's, over the agent's transport) whose tools,
 * prompts, resources and templates are those of every server the principal may use, namespaced, and whose
 * calls go to each server's own session. A server that has no host, fails or does not answer in time drops
 * out of the lists instead of failing them; when the set of servers changes, the agent is told the lists
 * changed.
 */
export class UnifiedServer {
  readonly server: Server
  readonly #options: UnifiedServerOptions
  readonly #clients: UpstreamClients
  /** The servers and their hosts when the agent last listed, or was told the lists changed. */
  #shown = ''

  constructor(options: UnifiedServerOptions) {
    this.#options = options
    this.server = new Server(
      { name: options.name, version: options.version },
      {
        capabilities: {
          tools: { listChanged: true },
          prompts: { listChanged: true },
          resources: { listChanged: true, subscribe: true },
          completions: {},
          logging: {},
        },
        instructions:
          `One endpoint for several MCP servers: tools and prompts are named <server>${options.names.separator}<name>, ` +
          'resources nexus:<server>:<uri>.',
      },
    )
    this.#clients = new UpstreamClients({
      factory: options.factory,
      auth: options.auth,
      sessionId: options.sessionId,
      capabilities: () => this.server.getClientCapabilities() ?? {},
      clientInfo: () => this.server.getClientVersion() ?? { name: 'agent', version: '0' },
      wire: (upstream) => this.#wire(upstream),
      onEnded: () => this.refresh(),
      logger: options.logger,
    })
    this.#handleLists()
    this.#handleCalls()
    this.server.setRequestHandler(SetLevelRequestSchema, async (request) => {
      await Promise.allSettled(
        this.#visible().map(async (id) => {
          const upstream = await this.#clients.get(id)
          if (upstream.client.getServerCapabilities()?.logging !== undefined)
            await upstream.client.setLoggingLevel(request.params.level)
        }),
      )
      return {}
    })
  }

  /**
   * The servers or their hosts may have changed: tell the agent its lists changed, once per change — a server
   * that lost its last host drops out of the next list, and one that has a host again comes back.
   */
  refresh(): void {
    const now = this.#state()
    if (now === this.#shown || this.server.getClientCapabilities() === undefined) return
    this.#shown = now
    void this.server.sendToolListChanged().catch(() => {})
    void this.server.sendPromptListChanged().catch(() => {})
    void this.server.sendResourceListChanged().catch(() => {})
  }

  async close(): Promise<void> {
    await this.#clients.close()
  }

  #visible(): string[] {
    return [...this.#options.visibleServers().keys()].filter((id) => this.#options.names.accepts(id))
  }

  #state(): string {
    return JSON.stringify(
      [...this.#options.visibleServers()].filter(([id]) => this.#options.names.accepts(id)),
    )
  }

  /** Every visible server's items of one kind, each server given `listTimeoutMs`; a failing one is left out. */
  /**
   * Every visible server's items of one kind, every page of them, each server given `listTimeoutMs`; a server
   * that fails or is too slow is left out (and logged) rather than failing the list.
   */
  async #gather(kind: Kind): Promise<{ serverId: string; items: Record<string, unknown>[] }[]> {
    const servers = this.#visible()
    this.#shown = this.#state()
    const { method, schema, field, capability } = LIST_KINDS[kind]
    const outcomes = await Promise.allSettled(
      servers.map(async (serverId) => {
        const { client } = await withDeadline(
          this.#clients.get(serverId),
          this.#options.listTimeoutMs,
          serverId,
        )
        const items: Record<string, unknown>[] = []
        if (client.getServerCapabilities()?.[capability] === undefined) return { serverId, items }
        let cursor: string | undefined
        for (let page = 0; page < 100; page++) {
          const result = (await client.request({ method, params: cursor ? { cursor } : {} }, schema, {
            timeout: this.#options.listTimeoutMs,
          })) as Record<string, unknown>
          items.push(...(result[field] as Record<string, unknown>[]))
          cursor = result.nextCursor as string | undefined
          if (cursor === undefined) break
        }
        return { serverId, items }
      }),
    )
    const gathered: { serverId: string; items: Record<string, unknown>[] }[] = []
    for (const [i, outcome] of outcomes.entries()) {
      if (outcome.status === 'fulfilled') gathered.push(outcome.value)
      else
        this.#options.logger.info(
          { serverId: servers[i], err: outcome.reason },
          `unified endpoint: ${servers[i]} left out of the ${kind} list`,
        )
    }
    return gathered
  }

  #handleLists(): void {
    const { names, view } = this.#options
    const name = (item: Record<string, unknown>) => String(item.name)
    this.server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: (await this.#gather('tools')).flatMap(({ serverId, items }) =>
        items
          .filter((tool) => view.includesTool(serverId, name(tool)))
          .map((tool) => ({
            ...tool,
            name: view.shownName(serverId, name(tool), names.qualify(serverId, name(tool))),
            description: view.description(serverId, name(tool), tool.description as string | undefined),
          })),
      ) as Tool[],
    }))
    this.server.setRequestHandler(ListPromptsRequestSchema, async () => ({
      prompts: (await this.#gather('prompts')).flatMap(({ serverId, items }) =>
        items.map((prompt) => ({ ...prompt, name: names.qualify(serverId, name(prompt)) })),
      ) as Prompt[],
    }))
    this.server.setRequestHandler(ListResourcesRequestSchema, async () => ({
      resources: (await this.#gather('resources')).flatMap(({ serverId, items }) =>
        items.map((resource) => ({ ...resource, uri: names.qualifyUri(serverId, String(resource.uri)) })),
      ) as Resource[],
    }))
    this.server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
      resourceTemplates: (await this.#gather('resourceTemplates')).flatMap(({ serverId, items }) =>
        items.map((template) => ({
          ...template,
          uriTemplate: names.qualifyUri(serverId, String(template.uriTemplate)),
        })),
      ) as ResourceTemplate[],
    }))
  }

  /** The server a name or URI belongs to, if the principal may use it here; otherwise an invalid-params error. */
  #route(target: { serverId: string } | undefined, what: string): string {
    if (target === undefined || !this.#visible().includes(target.serverId))
      throw new McpError(
        ErrorCode.InvalidParams,
        `${what} is not offered here` +
          (target === undefined ? '' : ` (server ${target.serverId} has no host, or is not yours to use)`),
      )
    return target.serverId
  }

  #handleCalls(): void {
    const { names, view } = this.#options
    this.server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const target = view.renamed(request.params.name) ?? names.split(request.params.name)
      const serverId = this.#route(target, `tool ${request.params.name}`)
      if (!view.includesTool(serverId, target!.name))
        throw new McpError(ErrorCode.InvalidParams, `tool ${request.params.name} is not offered here`)
      const upstream = await this.#clients.get(serverId)
      return upstream.client.request(
        {
          method: 'tools/call',
          params: { ...request.params, name: target!.name, _meta: forwardMeta(request.params._meta) },
        },
        CallToolResultSchema,
        this.#callOptions(extra),
      )
    })
    this.server.setRequestHandler(GetPromptRequestSchema, async (request, extra) => {
      const target = names.split(request.params.name)
      const serverId = this.#route(target, `prompt ${request.params.name}`)
      const upstream = await this.#clients.get(serverId)
      return upstream.client.request(
        { method: 'prompts/get', params: { ...request.params, name: target!.name } },
        GetPromptResultSchema,
        this.#callOptions(extra),
      )
    })
    this.server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
      const target = names.splitUri(request.params.uri)
      const serverId = this.#route(target, `resource ${request.params.uri}`)
      const upstream = await this.#clients.get(serverId)
      const result = await upstream.client.request(
        { method: 'resources/read', params: { ...request.params, uri: target!.uri } },
        ReadResourceResultSchema,
        this.#callOptions(extra),
      )
      return {
        ...result,
        contents: result.contents.map((c) => ({ ...c, uri: names.qualifyUri(serverId, c.uri) })),
      }
    })
    for (const [schema, method] of [
      [SubscribeRequestSchema, 'resources/subscribe'],
      [UnsubscribeRequestSchema, 'resources/unsubscribe'],
    ] as const)
      this.server.setRequestHandler(schema, async (request, extra) => {
        const target = names.splitUri(request.params.uri)
        const serverId = this.#route(target, `resource ${request.params.uri}`)
        const upstream = await this.#clients.get(serverId)
        await upstream.client.request(
          { method, params: { uri: target!.uri } },
          EmptyResultSchema,
          this.#callOptions(extra),
        )
        return {}
      })
    this.server.setRequestHandler(CompleteRequestSchema, async (request, extra) => {
      const ref = request.params.ref
      const target = ref.type === 'ref/prompt' ? names.split(ref.name) : names.splitUri(ref.uri)
      const serverId = this.#route(
        target,
        ref.type === 'ref/prompt' ? `prompt ${ref.name}` : `resource ${ref.uri}`,
      )
      const upstream = await this.#clients.get(serverId)
      const own =
        ref.type === 'ref/prompt'
          ? { ...ref, name: (target as { name: string }).name }
          : { ...ref, uri: (target as { uri: string }).uri }
      return upstream.client.request(
        { method: 'completion/complete', params: { ...request.params, ref: own } },
        CompleteResultSchema,
        this.#callOptions(extra),
      )
    })
  }

  /** A call's options: the agent's cancellation, its progress relayed with its own token, the call timeout. */
  #callOptions(extra: {
    signal: AbortSignal
    requestId: string | number
    _meta?: { progressToken?: string | number }
    sendNotification: (n: {
      method: 'notifications/progress'
      params: Record<string, unknown>
    }) => Promise<void>
  }): RequestOptions {
    const token = extra._meta?.progressToken
    return {
      signal: extra.signal,
      relatedRequestId: extra.requestId,
      timeout: this.#options.callTimeoutMs,
      resetTimeoutOnProgress: true,
      ...(token === undefined
        ? {}
        : {
            onprogress: (progress) =>
              void extra
                .sendNotification({
                  method: 'notifications/progress',
                  params: { ...progress, progressToken: token },
                })
                .catch(() => {}),
          }),
    }
  }

  /** What a server sends back: its requests go to the agent (on the stream of the call they came up in). */
  #wire({ serverId, client, transport }: Upstream): void {
    const { names } = this.#options
    const toAgent = (resultSchema: Parameters<Server['request']>[1]) =>
      (async (
        request: { method: string; params?: Record<string, unknown> },
        extra: { requestId: string | number; signal: AbortSignal },
      ) =>
        this.server.request(request as never, resultSchema, {
          relatedRequestId: transport.agentRequestOf(extra.requestId),
          signal: extra.signal,
          timeout: this.#options.callTimeoutMs,
        })) as never
    // Only what the agent can answer: an SDK client refuses handlers for capabilities it did not declare, and
    // the server is not told it may send such requests.
    const agent = this.server.getClientCapabilities() ?? {}
    if (agent.sampling !== undefined)
      client.setRequestHandler(CreateMessageRequestSchema, toAgent(CreateMessageResultSchema))
    if (agent.elicitation !== undefined)
      client.setRequestHandler(ElicitRequestSchema, toAgent(ElicitResultSchema))
    if (agent.roots !== undefined)
      client.setRequestHandler(ListRootsRequestSchema, toAgent(ListRootsResultSchema))
    client.setNotificationHandler(
      ToolListChangedNotificationSchema,
      () => void this.server.sendToolListChanged().catch(() => {}),
    )
    client.setNotificationHandler(
      PromptListChangedNotificationSchema,
      () => void this.server.sendPromptListChanged().catch(() => {}),
    )
    client.setNotificationHandler(
      ResourceListChangedNotificationSchema,
      () => void this.server.sendResourceListChanged().catch(() => {}),
    )
    client.setNotificationHandler(
      ResourceUpdatedNotificationSchema,
      (n) =>
        void this.server
          .sendResourceUpdated({ ...n.params, uri: names.qualifyUri(serverId, n.params.uri) })
          .catch(() => {}),
    )
    client.setNotificationHandler(
      LoggingMessageNotificationSchema,
      (n) =>
        void this.server
          .sendLoggingMessage({
            ...n.params,
            logger: n.params.logger === undefined ? serverId : `${serverId}/${n.params.logger}`,
          })
          .catch(() => {}),
    )
  }
}

/** The agent's `_meta` minus its progress token: the client puts its own, and relays progress under the agent's. */
function forwardMeta(meta: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (meta === undefined) return undefined
  const { progressToken: _token, ...rest } = meta
  return Object.keys(rest).length === 0 ? undefined : rest
}

function withDeadline<T>(promise: Promise<T>, ms: number, serverId: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${serverId} did not open its session within ${ms} ms`)),
      ms,
    )
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err) => {
        clearTimeout(timer)
        reject(err)
      },
    )
  })
}
