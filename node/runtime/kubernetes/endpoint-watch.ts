import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { Backoff } from '../../../protocol/backoff.ts'
import { errorMessage } from '../../../protocol/errors.ts'
import { ENDPOINT_SLICES, type KubeApi, KubeApiError, type KubeObject, type WatchEvent } from './kube-api.ts'

/** A ready pod of a server: where the node opens its sessions. */
export interface PodEndpoint {
  address: string
  port: number
  /** The pod's name when the slice gives it (`targetRef`), else the address. */
  pod: string
}

interface EndpointSlice extends KubeObject {
  endpoints?: {
    addresses: string[]
    conditions?: { ready?: boolean | null; terminating?: boolean | null }
    targetRef?: { name?: string }
  }[]
  ports?: { name?: string; port?: number }[] | null
}

export interface EndpointWatchEvents {
  /** The ready endpoints of some Service changed. */
  change: []
  /** The watch could not be kept: `problem` says why; cleared once a list succeeds again. */
  problem: [string | undefined]
  /** The watch is back after a problem, this long after it started. */
  recovered: [{ afterMs: number }]
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

/**
 * Follows the EndpointSlices of the node's Services (list, then watch from that version; watched, never
 * polled). A broken watch is resumed from the last version seen (bookmarks keep it fresh), a `410 Gone`
 * lists again, an unreachable API server is retried with back-off — and meanwhile the endpoints last seen
 * stay in use, so sessions keep being served while the API server is away.
 */
export class EndpointWatch extends EventEmitter<EndpointWatchEvents> {
  readonly #api: KubeApi
  readonly #namespace: string
  readonly #selector: string
  readonly #logger: Logger
  readonly #slices = new Map<string, { service: string; endpoints: PodEndpoint[] }>()
  readonly #backoff = new Backoff(100, 5_000)
  #abort: AbortController | undefined
  #problem: string | undefined
  #problemSince = 0
  #running: Promise<void> | undefined
  #listed = false

  constructor(api: KubeApi, namespace: string, selector: string, logger: Logger) {
    super()
    this.#api = api
    this.#namespace = namespace
    this.#selector = selector
    this.#logger = logger
  }

  /** Why the watch is not current, or undefined when it is. */
  get problem(): string | undefined {
    return this.#problem
  }

  /** Whether a first list has succeeded (until then, no endpoint is known). */
  get listed(): boolean {
    return this.#listed
  }

  start(): void {
    if (this.#running !== undefined) return
    this.#abort = new AbortController()
    this.#running = this.#run(this.#abort.signal)
  }

  async stop(): Promise<void> {
    this.#abort?.abort()
    await this.#running
    this.#running = undefined
  }

  /** The ready endpoints of a Service, in a stable order. */
  endpoints(service: string): PodEndpoint[] {
    const found: PodEndpoint[] = []
    for (const slice of this.#slices.values()) if (slice.service === service) found.push(...slice.endpoints)
    return found.sort((a, b) => a.pod.localeCompare(b.pod) || a.address.localeCompare(b.address))
  }

  async #run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const list = await this.#api.list<EndpointSlice>(ENDPOINT_SLICES, this.#namespace, this.#selector)
        this.#slices.clear()
        for (const slice of list.items) this.#record(slice)
        this.#listed = true
        this.#backoff.succeed()
        this.#setProblem(undefined)
        this.emit('change')
        let version = list.metadata.resourceVersion
        while (!signal.aborted) {
          await this.#api.watch<EndpointSlice>(
            ENDPOINT_SLICES,
            this.#namespace,
            version,
            (event) => {
              version = event.object.metadata.resourceVersion ?? version
              this.#apply(event)
            },
            signal,
            this.#selector,
          )
        }
      } catch (err) {
        if (signal.aborted) return
        // A version too old to watch from: list again at once.
        if (err instanceof KubeApiError && err.status === 410) continue
        this.#setProblem(`cannot watch EndpointSlices in ${this.#namespace}: ${errorMessage(err)}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.#backoff.fail())
          signal.addEventListener('abort', () => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
    }
  }

  #setProblem(problem: string | undefined): void {
    if (problem === this.#problem) return
    if (problem !== undefined && this.#problem === undefined) this.#problemSince = Date.now()
    if (problem === undefined) this.emit('recovered', { afterMs: Date.now() - this.#problemSince })
    if (problem !== undefined) this.#logger.warn({ problem }, 'EndpointSlice watch interrupted; retrying')
    else this.#logger.info('EndpointSlice watch recovered')
    this.#problem = problem
    this.emit('problem', problem)
  }

  #apply(event: WatchEvent<EndpointSlice>): void {
    if (event.type === 'BOOKMARK') return
    const key = event.object.metadata.name
    if (event.type === 'DELETED') this.#slices.delete(key)
    else this.#record(event.object)
    this.emit('change')
  }

  #record(slice: EndpointSlice): void {
    const service = slice.metadata.labels?.[SERVICE_NAME_LABEL]
    if (service === undefined) return
    const port = slice.ports?.find((p) => p.name === 'mcp')?.port ?? slice.ports?.[0]?.port
    const endpoints: PodEndpoint[] = []
    if (port !== undefined)
      for (const endpoint of slice.endpoints ?? []) {
        // Kubernetes: a missing `ready` condition means ready; terminating pods are not.
        if (endpoint.conditions?.ready === false || endpoint.conditions?.terminating === true) continue
        for (const address of endpoint.addresses)
          endpoints.push({ address, port, pod: endpoint.targetRef?.name ?? address })
      }
    this.#slices.set(slice.metadata.name, { service, endpoints })
  }
}
