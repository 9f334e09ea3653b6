import * as z from 'zod/v4'
import type { AuthContext } from '../../protocol/session-handshake.ts'

/** `<server id>/<tool>` or `<server id>/*`. */
const TOOL_REF = /^[a-z0-9._-]+\/(?:\*|[A-Za-z0-9_.\-/]+)$/

export const VirtualServerSchema = z
  .object({
    /** The servers it unites. */
    servers: z.array(z.string().min(1)).min(1).max(256),
    /** Only these tools (`<server>/<tool>`, or `<server>/*` for all of one server); absent: every tool. */
    tools: z.array(z.string().regex(TOOL_REF, '<server id>/<tool> or <server id>/*')).optional(),
    /** New names for tools (`<server>/<tool>`: name), shown instead of the namespaced one. */
    rename: z.record(z.string().regex(TOOL_REF), z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/)).default({}),
    /** Descriptions that replace the server's (`<server>/<tool>`: text). */
    descriptions: z.record(z.string().regex(TOOL_REF), z.string().max(4096)).default({}),
    /** Who sees it: principals with one of these scopes, or these principals (`key:…`, `jwt:…`); absent: all. */
    scopes: z.array(z.string().min(1)).optional(),
    principals: z.array(z.string().min(1)).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const names = Object.values(v.rename)
    if (new Set(names).size !== names.length)
      ctx.addIssue({ code: 'custom', path: ['rename'], message: 'two tools are renamed to the same name' })
    for (const ref of [...(v.tools ?? []), ...Object.keys(v.rename), ...Object.keys(v.descriptions)])
      if (!v.servers.includes(ref.split('/')[0]!))
        ctx.addIssue({ code: 'custom', message: `${ref} names a server the virtual server does not list` })
  })
export type VirtualServer = z.infer<typeof VirtualServerSchema>

/** Whether a principal may see a virtual server. */
export function mayUseVirtual(server: VirtualServer, auth: AuthContext): boolean {
  if (server.scopes === undefined && server.principals === undefined) return true
  if (server.principals?.includes(auth.principal)) return true
  if (server.scopes === undefined) return false
  // A principal whose scopes are not limited (anonymous in a demo, a key made without scopes) has them all.
  return auth.scopes === undefined || server.scopes.some((s) => auth.scopes!.includes(s))
}

/**
 * What a unified endpoint shows: every server (the plain `/mcp`), or a virtual server's subset, with its
 * renames and descriptions. Names map both ways, so a renamed tool is called by its new name.
 */
export class ToolView {
  readonly #virtual: VirtualServer | undefined
  readonly #renamedFrom = new Map<string, string>()

  constructor(virtual?: VirtualServer) {
    this.#virtual = virtual
    for (const [ref, name] of Object.entries(virtual?.rename ?? {})) this.#renamedFrom.set(name, ref)
  }

  includesServer(serverId: string): boolean {
    return this.#virtual === undefined || this.#virtual.servers.includes(serverId)
  }

  includesTool(serverId: string, tool: string): boolean {
    const tools = this.#virtual?.tools
    return tools === undefined || tools.includes(`${serverId}/*`) || tools.includes(`${serverId}/${tool}`)
  }

  /** The name shown for a tool: its rename, or the namespaced name. */
  shownName(serverId: string, tool: string, namespaced: string): string {
    return this.#virtual?.rename[`${serverId}/${tool}`] ?? namespaced
  }

  description(serverId: string, tool: string, own: string | undefined): string | undefined {
    return this.#virtual?.descriptions[`${serverId}/${tool}`] ?? own
  }

  /** The server and tool a renamed tool stands for. */
  renamed(name: string): { serverId: string; name: string } | undefined {
    const ref = this.#renamedFrom.get(name)
    if (ref === undefined) return undefined
    const at = ref.indexOf('/')
    return { serverId: ref.slice(0, at), name: ref.slice(at + 1) }
  }
}
