import { rmSync } from 'node:fs'
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'

/** What the proxy decided for one connection a server asked for. */
export interface EgressDecision {
  serverId: string
  host: string
  port: number
  allowed: boolean
}

/**
 * Whether `host` is one the manifest allows: an exact name or address, or `*.example.com` for the subdomains of
 * example.com (not example.com itself). Names are compared case-insensitively; nothing else matches.
 */
export function hostAllowed(host: string, allowed: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase()
    return p.startsWith('*.') ? name.endsWith(p.slice(1)) && name.length > p.length - 1 : name === p
  })
}

/**
 * The node's side of a sandboxed server's only way out: an HTTP proxy on a Unix socket in the instance's
 * scratch folder (the sandbox relay carries the server's proxy connections there). `CONNECT host:port`
 * tunnels (HTTPS and anything else over TCP) and plain `http://` requests are let through to the hosts the
 * manifest allows, and refused with 403 otherwise; each decision is reported.
 */
export class EgressProxy {
  readonly #server: Server
  readonly #socketPath: string

  private constructor(server: Server, socketPath: string) {
    this.#server = server
    this.#socketPath = socketPath
  }

  /** Listens at once (a Unix socket binds synchronously), so the server may connect as soon as it starts. */
  static start(
    socketPath: string,
    serverId: string,
    allowed: readonly string[],
    report: (decision: EgressDecision) => void,
  ): EgressProxy {
    const decide = (host: string, port: number) => {
      const decision = { serverId, host, port, allowed: hostAllowed(host, allowed) }
      report(decision)
      return decision.allowed
    }
    const server = createServer((req, res) => forward(req, res, decide))
    server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
      const target = parseAuthority(req.url ?? '')
      if (target === undefined || !decide(target.host, target.port)) {
        client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n')
        return
      }
      const upstream = connect(target.port, target.host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        if (head.length > 0) upstream.write(head)
        upstream.pipe(client)
        client.pipe(upstream)
      })
      const close = () => {
        upstream.destroy()
        client.destroy()
      }
      upstream.on('error', () => {
        if (!client.destroyed) client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
        close()
      })
      client.on('error', close)
    })
    rmSync(socketPath, { force: true })
    server.listen(socketPath)
    return new EgressProxy(server, socketPath)
  }

  close(): void {
    this.#server.close()
    this.#server.closeAllConnections()
    rmSync(this.#socketPath, { force: true })
  }
}

/** A plain HTTP request through the proxy (`GET http://host/path`), forwarded when its host is allowed. */
function forward(req: IncomingMessage, res: ServerResponse, decide: (host: string, port: number) => boolean) {
  let target: URL
  try {
    target = new URL(req.url ?? '')
  } catch {
    return res.writeHead(400).end('the proxy takes absolute http:// URLs and CONNECT')
  }
  const port = Number(target.port || 80)
  if (target.protocol !== 'http:' || !decide(target.hostname, port))
    return res.writeHead(403).end(`egress to ${target.hostname} is not allowed for this server`)
  const upstream = request(
    target,
    { method: req.method, headers: { ...req.headers, host: target.host } },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    },
  )
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502)
    res.end()
  })
  req.pipe(upstream)
}

function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(authority)
  if (match === null) return undefined
  const port = Number(match[2])
  return port > 0 && port < 65_536 ? { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port } : undefined
}
