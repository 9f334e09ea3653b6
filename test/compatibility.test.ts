import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { delimiter, dirname } from 'node:path'
import { promisify } from 'node:util'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { chromium as playwright } from 'playwright-core'
import t from 'tap'
import { demoServers } from '../node/demo-servers.ts'
import { startNetwork } from '../testing/network.ts'
import { findChromium } from './support/browser.ts'
import { connectStreamable, newClient, textOf } from './support/clients.ts'
import { INSPECTOR_VERSION, inspectorBin } from './support/inspector.ts'
import { connectModern } from './support/modern-clients.ts'

// The compatibility matrix of the README: each kind of client against a per-server URL and against the
// unified endpoint, calling `echo` of the reference `server-everything` through one gateway. A cell passes
// when the echoed text comes back.

const execute = promisify(execFile)
const ECHO = 'compatibility'

// A page of another origin, for the browser client through CORS.
const pageServer = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>agent</title>')
})
await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve))
t.teardown(() => pageServer.close())
const pageOrigin = `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}`

const network = await startNetwork({
  nodes: 1,
  servers: [demoServers({ warmPool: 1 })[0]!],
  gateway: { http: { allowedOrigins: [pageOrigin] } },
})
t.teardown(network.stop)
const base = network.gateway.url
const ENDPOINTS = {
  'per-server': { http: `${base}/mcp/everything`, sse: `${base}/sse/everything`, tool: 'echo' },
  unified: { http: `${base}/mcp`, sse: `${base}/sse`, tool: 'everything__echo' },
} as const
type Endpoint = keyof typeof ENDPOINTS
const matrix: string[] = []

async function cell(client: string, endpoint: Endpoint, attempt: () => Promise<string>) {
  await t.test(`${client} × ${endpoint}`, async (t) => {
    const text = await attempt()
    t.match(text, ECHO, `${client} called echo through the ${endpoint} endpoint`)
    matrix.push(`${client} | ${endpoint} | ${text.includes(ECHO) ? 'yes' : 'no'}`)
  })
}

// The Inspector's CLI, as a user runs it (outside the test runner's loader hooks, on this Node.js).
const env = {
  ...Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(?:NODE_OPTIONS$|TAP|_TAPJS)/.test(name)),
  ),
  PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
}
const inspector = await inspectorBin(env)
// Everything the cells need is ready before the first: tap ends a file whose top level waits between tests.
const chromium = findChromium()
const browser =
  chromium === undefined
    ? undefined
    : await playwright.launch({ executablePath: chromium, args: ['--no-sandbox', '--disable-gpu'] })
if (browser !== undefined) t.teardown(() => browser.close())
const page = await browser?.newPage()
await page?.goto(pageOrigin)

for (const endpoint of Object.keys(ENDPOINTS) as Endpoint[]) {
  const { http, sse, tool } = ENDPOINTS[endpoint]
  await cell('SDK v1, streamable HTTP', endpoint, async () => {
    const { client } = await connectStreamable(http)
    try {
      return textOf(await client.callTool({ name: tool, arguments: { message: ECHO } }))
    } finally {
      await client.close()
    }
  })
  await cell('SDK v1, HTTP+SSE', endpoint, async () => {
    const client = newClient('compat-sse')
    await client.connect(new SSEClientTransport(new URL(sse)))
    try {
      return textOf(await client.callTool({ name: tool, arguments: { message: ECHO } }))
    } finally {
      await client.close()
    }
  })
  await cell('SDK v2 (auto era)', endpoint, async () => {
    const client = await connectModern(http, 'auto')
    try {
      return textOf(await client.callTool({ name: tool, arguments: { message: ECHO } }))
    } finally {
      await client.close()
    }
  })
}

for (const endpoint of Object.keys(ENDPOINTS) as Endpoint[])
  for (const transport of ['http', 'sse'] as const)
    await cell(`MCP Inspector ${INSPECTOR_VERSION} CLI, ${transport}`, endpoint, async () => {
      const url = ENDPOINTS[endpoint][transport]
      const { stdout } = await execute(
        '/bin/sh',
        [
          '-c',
          'unset NODE_OPTIONS; exec "$0" "$@"',
          inspector,
          '--cli',
          url,
          '--transport',
          transport,
          '--method',
          'tools/call',
          '--tool-name',
          ENDPOINTS[endpoint].tool,
          '--tool-arg',
          `message=${ECHO}`,
        ],
        { env, timeout: 60_000 },
      )
      return stdout
    })

// A browser client through CORS: a page of another origin speaks streamable HTTP with fetch.
if (page === undefined)
  t.comment('no Chromium: the browser cells are not run (the network page test says so too)')
else {
  for (const endpoint of Object.keys(ENDPOINTS) as Endpoint[])
    await cell('browser (fetch, CORS)', endpoint, () =>
      page.evaluate(
        async ({ url, tool, message }) => {
          const headers: Record<string, string> = {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          }
          const post = async (body: unknown) => {
            const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) })
            const text = await response.text()
            return { response, text }
          }
          const init = await post({
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: {
              protocolVersion: '2025-11-25',
              capabilities: {},
              clientInfo: { name: 'browser', version: '1' },
            },
          })
          const session = init.response.headers.get('mcp-session-id')
          if (session === null) return `no session id readable through CORS: ${init.text}`
          headers['mcp-session-id'] = session
          headers['mcp-protocol-version'] = '2025-11-25'
          await post({ jsonrpc: '2.0', method: 'notifications/initialized' })
          const call = await post({
            jsonrpc: '2.0',
            id: 2,
            method: 'tools/call',
            params: { name: tool, arguments: { message } },
          })
          return call.text
        },
        { url: ENDPOINTS[endpoint].http, tool: ENDPOINTS[endpoint].tool, message: ECHO },
      ),
    )
}

t.test('the matrix', async (t) => {
  t.comment(`\n${matrix.join('\n')}`)
  t.ok(matrix.length >= 10)
})
