import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest, type RequestOptions } from 'node:https'
import type { KubeConfig } from '@kubernetes/client-node'
import { errorMessage, NexusError } from '../../../protocol/errors.ts'
import { LineSplitter } from '../line-splitter.ts'

/** A Kubernetes object as the API carries it; the runtime reads only metadata and a few known fields. */
export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: {
    name: string
    namespace?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    resourceVersion?: string
    uid?: string
    managedFields?: unknown[]
    [key: string]: unknown
  }
  [key: string]: unknown
}

export interface KubeList<T extends KubeObject = KubeObject> {
  items: T[]
  metadata: { resourceVersion: string }
}

export interface WatchEvent<T extends KubeObject = KubeObject> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'
  object: T
}

/** A resource type the runtime touches: where its objects live in the API, and its name in RBAC terms. */
export interface ResourceType {
  /** `v1` for the core group, `apps/v1`, `networking.k8s.io/v1`, … */
  apiVersion: string
  /** The plural, as URLs and Roles spell it: `deployments`. */
  plural: string
}

export const DEPLOYMENTS: ResourceType = { apiVersion: 'apps/v1', plural: 'deployments' }
export const SERVICES: ResourceType = { apiVersion: 'v1', plural: 'services' }
export const NETWORK_POLICIES: ResourceType = {
  apiVersion: 'networking.k8s.io/v1',
  plural: 'networkpolicies',
}
export const ENDPOINT_SLICES: ResourceType = { apiVersion: 'discovery.k8s.io/v1', plural: 'endpointslices' }

/** `deployments.apps`: how RBAC rules and `kubectl auth can-i` name a resource. */
export function rbacName(type: ResourceType): string {
  const group = type.apiVersion.includes('/') ? type.apiVersion.split('/')[0] : ''
  return group === '' ? type.plural : `${type.plural}.${group}`
}

/** The API server's answer to a request it did not carry out. */
export class KubeApiError extends NexusError {
  readonly status: number
  readonly reason: string | undefined

  constructor(
    status: number,
    verb: string,
    type: ResourceType,
    namespace: string,
    detail: string,
    reason?: string,
  ) {
    const what = `${verb} ${rbacName(type)}${namespace === '' ? '' : ` in namespace ${namespace}`}`
    // RBAC says which verb it refused: an apply that creates an object needs `create`, not only `patch`.
    const refused = /cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?/.exec(detail)
    const resource =
      refused === null ? rbacName(type) : refused[3] ? `${refused[2]}.${refused[3]}` : refused[2]!
    const missing = refused?.[1] ?? verb
    super(
      status === 403 ? 'CLUSTER_FORBIDDEN' : 'CLUSTER_UNAVAILABLE',
      status === 403
        ? `the Kubernetes API server refused to ${what}: the node's Role lacks the verb "${missing}" on ` +
            `"${resource}" (grant it in the Role bound to the node's ServiceAccount). The server said: ${detail}`
        : `cannot ${what}: HTTP ${status}: ${detail}`,
    )
    this.status = status
    this.reason = reason
  }
}

export interface KubeRequestRecord {
  verb: string
  resource: string
  /** The object's name, for requests about one object. */
  name?: string
  status: number
}

export interface KubeApiOptions {
  /** Called once per request the API server answered (or failed to), for metrics and the benchmark. */
  onRequest?: (record: KubeRequestRecord) => void
  /** Requests that take longer fail (watches excepted). */
  timeoutMs?: number
}

/** Where the API server is and who the node is to it, loaded from a kubeconfig file or the pod's own account. */
export async function loadKubeConfig(source: {
  kubeconfig?: string
  inCluster?: boolean
  context?: string
}): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node')
  const config = new KubeConfig()
  try {
    if (source.inCluster === true) config.loadFromCluster()
    else if (source.kubeconfig !== undefined) config.loadFromFile(source.kubeconfig)
    else config.loadFromDefault()
    if (source.context !== undefined) config.setCurrentContext(source.context)
  } catch (err) {
    throw new NexusError('INVALID_CONFIG', `cannot load the Kubernetes configuration: ${errorMessage(err)}`)
  }
  if (config.getCurrentCluster() === null)
    throw new NexusError('INVALID_CONFIG', 'the Kubernetes configuration names no cluster')
  return config
}

/**
 * The few calls the Kubernetes runtime makes, over Node's own HTTP stack with the TLS and credentials of a
 * kubeconfig. Kept this small on purpose: every request is counted (the benchmark's "writes per epoch"),
 * watches are plain streamed lines the runtime reconnects itself, and refusals say which verb was missing.
 */
export class KubeApi {
  readonly #config: KubeConfig
  readonly #server: URL
  readonly #options: KubeApiOptions

  constructor(config: KubeConfig, options: KubeApiOptions = {}) {
    this.#config = config
    this.#server = new URL(config.getCurrentCluster()!.server)
    this.#options = options
  }

  static async connect(
    source: { kubeconfig?: string; inCluster?: boolean; context?: string },
    options: KubeApiOptions = {},
  ): Promise<KubeApi> {
    return new KubeApi(await loadKubeConfig(source), options)
  }

  /** Path of a collection, or of one object when `name` is given; `namespace` '' for cluster-wide types. */
  path(type: ResourceType, namespace: string, name?: string): string {
    const base = type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`
    const scope = namespace === '' ? '' : `/namespaces/${encodeURIComponent(namespace)}`
    const collection = `${base}${scope}/${type.plural}`
    return name === undefined ? collection : `${collection}/${encodeURIComponent(name)}`
  }

  async list<T extends KubeObject>(
    type: ResourceType,
    namespace: string,
    labelSelector?: string,
  ): Promise<KubeList<T>> {
    const query = labelSelector === undefined ? '' : `?labelSelector=${encodeURIComponent(labelSelector)}`
    const { body } = await this.#call('list', type, namespace, 'GET', `${this.path(type, namespace)}${query}`)
    return body as KubeList<T>
  }

  async get<T extends KubeObject>(
    type: ResourceType,
    namespace: string,
    name: string,
  ): Promise<T | undefined> {
    try {
      const { body } = await this.#call(
        'get',
        type,
        namespace,
        'GET',
        this.path(type, namespace, name),
        undefined,
        undefined,
        name,
      )
      return body as T
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined
      throw err
    }
  }

  /**
   * Server-side apply under `fieldManager`. The runtime never forces: a field another manager owns is a
   * conflict the API server reports, not something the node overwrites. (`force` is for operators' tools.)
   */
  async apply<T extends KubeObject>(object: KubeObject, fieldManager: string, force = false): Promise<T> {
    const type = { apiVersion: object.apiVersion, plural: pluralOf(object.kind) }
    const namespace = object.metadata.namespace ?? ''
    const query = `?fieldManager=${encodeURIComponent(fieldManager)}&force=${force}`
    const { body } = await this.#call(
      'patch',
      type,
      namespace,
      'PATCH',
      `${this.path(type, namespace, object.metadata.name)}${query}`,
      JSON.stringify(object),
      'application/apply-patch+yaml',
      object.metadata.name,
    )
    return body as T
  }

  /** Deletes an object; one already gone counts as deleted. Dependents go too (`propagationPolicy`). */
  async delete(type: ResourceType, namespace: string, name: string): Promise<void> {
    try {
      await this.#call(
        'delete',
        type,
        namespace,
        'DELETE',
        this.path(type, namespace, name),
        JSON.stringify({ propagationPolicy: 'Background' }),
        undefined,
        name,
      )
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return
      throw err
    }
  }

  async create<T extends KubeObject>(type: ResourceType, namespace: string, object: KubeObject): Promise<T> {
    const { body } = await this.#call(
      'create',
      type,
      namespace,
      'POST',
      this.path(type, namespace),
      JSON.stringify(object),
    )
    return body as T
  }

  /**
   * Streams the changes of a collection from `resourceVersion` until the server ends the watch or `signal`
   * aborts. Resolves when the stream ends; `410 Gone` (too old a version) rejects, so the caller lists again.
   */
  async watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string,
    resourceVersion: string,
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
    labelSelector?: string,
  ): Promise<void> {
    const query = new URLSearchParams({ watch: '1', resourceVersion, allowWatchBookmarks: 'true' })
    if (labelSelector !== undefined) query.set('labelSelector', labelSelector)
    const response = await this.#send(
      'GET',
      `${this.path(type, namespace)}?${query}`,
      undefined,
      undefined,
      signal,
      0,
    )
    this.#options.onRequest?.({ verb: 'watch', resource: rbacName(type), status: response.statusCode ?? 0 })
    if (response.statusCode !== 200) {
      const text = await readBody(response)
      throw errorFrom(response.statusCode ?? 0, text, 'watch', type, namespace)
    }
    await new Promise<void>((resolve, reject) => {
      const lines = new LineSplitter(16 * 1024 * 1024)
      let failure: Error | undefined
      response.on('data', (chunk: Buffer) => {
        if (failure !== undefined) return
        try {
          const tooLong = (bytes: number) => {
            throw new NexusError('CLUSTER_UNAVAILABLE', `a watch event of ${bytes} bytes is too large`)
          }
          for (const line of lines.push(chunk, tooLong)) {
            const event = JSON.parse(Buffer.from(line).toString()) as WatchEvent<T>
            if (event.type === 'ERROR') {
              const status = (event.object as unknown as { code?: number; message?: string }) ?? {}
              failure = errorFrom(status.code ?? 500, JSON.stringify(status), 'watch', type, namespace)
              response.destroy()
              return
            }
            onEvent(event)
          }
        } catch (err) {
          failure = err as Error
          response.destroy()
        }
      })
      response.on('close', () => (failure === undefined ? resolve() : reject(failure)))
      response.on('error', (err) => {
        failure ??= new NexusError(
          'CLUSTER_UNAVAILABLE',
          `the watch of ${rbacName(type)} broke: ${err.message}`,
        )
      })
    })
  }

  async #call(
    verb: string,
    type: ResourceType,
    namespace: string,
    method: string,
    path: string,
    body?: string,
    contentType = 'application/json',
    name?: string,
  ): Promise<{ status: number; body: unknown }> {
    let response: IncomingMessage
    try {
      response = await this.#send(
        method,
        path,
        body,
        contentType,
        undefined,
        this.#options.timeoutMs ?? 15_000,
      )
    } catch (err) {
      this.#options.onRequest?.({ verb, resource: rbacName(type), name, status: 0 })
      throw new NexusError(
        'CLUSTER_UNAVAILABLE',
        `cannot reach the Kubernetes API server at ${this.#server.origin} (${verb} ${rbacName(type)}): ${errorMessage(err)}`,
      )
    }
    const text = await readBody(response)
    const status = response.statusCode ?? 0
    this.#options.onRequest?.({ verb, resource: rbacName(type), name, status })
    if (status < 200 || status >= 300) throw errorFrom(status, text, verb, type, namespace)
    return { status, body: text === '' ? undefined : JSON.parse(text) }
  }

  async #send(
    method: string,
    path: string,
    body: string | undefined,
    contentType: string | undefined,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<IncomingMessage> {
    const url = new URL(path, this.#server)
    const options: RequestOptions = {
      method,
      hostname: url.hostname,
      port: url.port,
      path: `${url.pathname}${url.search}`,
      headers: {
        accept: 'application/json',
        ...(contentType === undefined ? {} : { 'content-type': contentType }),
      },
      signal,
    }
    // Adds the cluster's CA, client certificates and bearer token (refreshing tokens that expire).
    await this.#config.applyToHTTPSOptions(options)
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(options, resolve)
      req.on('error', reject)
      if (timeoutMs > 0)
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
      req.end(body)
    })
  }
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    response.on('data', (chunk: Buffer) => chunks.push(chunk))
    response.on('end', () => resolve(Buffer.concat(chunks).toString()))
    response.on('error', reject)
  })
}

function errorFrom(
  status: number,
  text: string,
  verb: string,
  type: ResourceType,
  namespace: string,
): KubeApiError {
  let detail = text.slice(0, 2_000)
  let reason: string | undefined
  try {
    const parsed = JSON.parse(text) as { message?: string; reason?: string }
    detail = parsed.message ?? detail
    reason = parsed.reason
  } catch {
    // Not a Status object; keep the text.
  }
  return new KubeApiError(status, verb, type, namespace, detail, reason)
}

/** The plural of the kinds the runtime applies. */
function pluralOf(kind: string): string {
  const lower = kind.toLowerCase()
  return lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : `${lower}s`
}
