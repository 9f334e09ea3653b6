import type { IncomingMessage } from 'node:http'

const LOOPBACK_HOSTNAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export interface OriginPolicy {
  allowedHosts: string[] | undefined
  allowedOrigins: string[] | undefined
  /** Whether the HTTP server listens on loopback only; then only loopback Host names make sense. */
  loopbackOnly: boolean
}

function hostnameOf(hostHeader: string): string {
  // Host is "name[:port]" or "[v6][:port]".
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1)
  return hostHeader.split(':')[0] ?? ''
}

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTNAMES.has(host)
}

/**
 * DNS-rebinding protection (MCP transport spec): a browser page on another site must not reach a gateway bound
 * to loopback by pointing its own name at 127.0.0.1. Returns why a request is refused, or undefined.
 */
export function refuseByOrigin(req: IncomingMessage, policy: OriginPolicy): string | undefined {
  const host = req.headers.host
  if (policy.allowedHosts !== undefined) {
    if (host === undefined || !policy.allowedHosts.includes(host))
      return `Host ${host ?? '(none)'} is not allowed`
  } else if (policy.loopbackOnly && (host === undefined || !isLoopbackHost(hostnameOf(host).toLowerCase()))) {
    return `Host ${host ?? '(none)'} is not allowed: this gateway serves loopback names only`
  }
  const origin = req.headers.origin
  if (origin === undefined) return undefined
  if (policy.allowedOrigins !== undefined) {
    return policy.allowedOrigins.includes(origin) ? undefined : `Origin ${origin} is not allowed`
  }
  try {
    if (isLoopbackHost(new URL(origin).hostname.toLowerCase())) return undefined
  } catch {
    return `Origin ${origin} is malformed`
  }
  return `Origin ${origin} is not allowed`
}
