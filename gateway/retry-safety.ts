/** Methods that only read: running one twice changes nothing, so it may be retried on another node. */
const READ_METHODS = new Set([
  'initialize',
  'ping',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'prompts/list',
  'prompts/get',
  'completion/complete',
])

interface ToolAnnotations {
  readOnlyHint?: boolean
  idempotentHint?: boolean
}

/**
 * Which requests may run again on another node after theirs failed: read methods, and calls of tools that
 * declare `readOnlyHint` or `idempotentHint`. The gateway learns the tools' annotations from the `tools/list`
 * answers it relays, per server (every host of a server runs the same pinned version).
 */
export class RetrySafety {
  readonly #toolsByServer = new Map<string, Map<string, boolean>>()

  /** Records the annotations of a `tools/list` result. */
  learnTools(serverId: string, result: unknown): void {
    const tools = (result as { tools?: unknown } | undefined)?.tools
    if (!Array.isArray(tools)) return
    let known = this.#toolsByServer.get(serverId)
    if (known === undefined) {
      known = new Map()
      this.#toolsByServer.set(serverId, known)
    }
    for (const tool of tools) {
      const { name, annotations } = (tool ?? {}) as { name?: unknown; annotations?: ToolAnnotations }
      if (typeof name !== 'string') continue
      known.set(name, annotations?.readOnlyHint === true || annotations?.idempotentHint === true)
    }
  }

  isSafe(serverId: string, method: string, params: unknown): boolean {
    if (READ_METHODS.has(method)) return true
    if (method !== 'tools/call') return false
    const name = (params as { name?: unknown } | undefined)?.name
    return typeof name === 'string' && this.#toolsByServer.get(serverId)?.get(name) === true
  }
}
