/**
 * How one endpoint names the tools, prompts and resources of many servers without collisions. A tool or prompt
 * is `<server id><separator><name>`; a server id that contains the separator is left out of the unified
 * endpoint (and said so), so the first separator always ends the id. A resource URI or template is
 * `nexus:<server id>:<its own URI>` — ids have no colon, so the id ends at the first one after the prefix, and
 * a template stays a template.
 */
export class Namespacing {
  readonly separator: string

  constructor(separator: string) {
    this.separator = separator
  }

  /** Whether a server can be named in this endpoint at all. */
  accepts(serverId: string): boolean {
    return !serverId.includes(this.separator)
  }

  qualify(serverId: string, name: string): string {
    return `${serverId}${this.separator}${name}`
  }

  /** The server and its own name, or undefined for a name this endpoint never gave out. */
  split(qualified: string): { serverId: string; name: string } | undefined {
    const at = qualified.indexOf(this.separator)
    if (at <= 0) return undefined
    return { serverId: qualified.slice(0, at), name: qualified.slice(at + this.separator.length) }
  }

  qualifyUri(serverId: string, uri: string): string {
    return `${RESOURCE_PREFIX}${serverId}:${uri}`
  }

  splitUri(qualified: string): { serverId: string; uri: string } | undefined {
    if (!qualified.startsWith(RESOURCE_PREFIX)) return undefined
    const rest = qualified.slice(RESOURCE_PREFIX.length)
    const at = rest.indexOf(':')
    if (at <= 0) return undefined
    return { serverId: rest.slice(0, at), uri: rest.slice(at + 1) }
  }
}

export const RESOURCE_PREFIX = 'nexus:'
