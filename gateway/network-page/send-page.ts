import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { NETWORK_PAGE } from './network-page.ts'

/** The CSP hash of the page's one inline script or style: nothing else may run or style it. */
function inlineHash(tag: 'script' | 'style'): string {
  const body = NETWORK_PAGE.split(`<${tag}>`)[1]!.split(`</${tag}>`)[0]!
  return `'sha256-${createHash('sha256').update(body).digest('base64')}'`
}

const POLICY = [
  "default-src 'none'",
  `script-src ${inlineHash('script')}`,
  `style-src ${inlineHash('style')}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/** `/network`: the page, with a policy that lets only its own inline script and style run. */
export function sendNetworkPage(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': POLICY,
    'x-content-type-options': 'nosniff',
  })
  res.end(NETWORK_PAGE)
}
