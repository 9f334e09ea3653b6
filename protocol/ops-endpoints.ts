import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { isLoopbackHost, refuseByOrigin } from './origin-guard.ts'

export interface OpsTarget {
  /** Why the peer cannot serve yet, or undefined when it can. */
  notReadyBecause(): string | undefined
  registry: Registry
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

/**
 * Answers the operations endpoints — `/healthz` (the process is alive), `/readyz` (it can serve: 200, or 503
 * with the reason) and `/metrics` (Prometheus text) — and returns false for any other path.
 */
export async function serveOps(path: string, res: ServerResponse, target: OpsTarget): Promise<boolean> {
  if (path === '/healthz') sendJson(res, 200, { status: 'ok' })
  else if (path === '/readyz') {
    const reason = target.notReadyBecause()
    sendJson(res, reason === undefined ? 200 : 503, { status: reason === undefined ? 'ready' : reason })
  } else if (path === '/metrics') {
    const text = await target.registry.metrics()
    res.writeHead(200, { 'Content-Type': target.registry.contentType })
    res.end(text)
  } else return false
  return true
}

/** An HTTP server with the operations endpoints alone, for peers that serve nothing else over HTTP (nodes). */
export async function startOpsServer(
  host: string,
  port: number,
  target: OpsTarget,
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    // A node's metrics on loopback are not for a browser page that rebinds its own name to 127.0.0.1.
    const refusal = refuseByOrigin(req, {
      allowedHosts: undefined,
      allowedOrigins: undefined,
      loopbackOnly: isLoopbackHost(host),
    })
    if (refusal !== undefined) return sendJson(res, 403, { error: refusal })
    const path = (req.url ?? '/').split('?')[0]!
    serveOps(path, res, target)
      .then((served) => {
        if (!served) sendJson(res, 404, { error: 'not found' })
      })
      .catch(() => sendJson(res, 500, { error: 'metrics unavailable' }))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  return { url: `http://${host}:${address.port}`, server }
}
