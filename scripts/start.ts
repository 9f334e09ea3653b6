#!/usr/bin/env node
import { demoServers } from '../node/demo-servers.ts'
/**
 * `npm start`: a local Nexus network — one gateway and two nodes over real libp2p (TCP on loopback) — hosting
 * the reference MCP servers from npm. Prints how to connect; Ctrl-C stops everything.
 */
import { parseCli, stopOnSignals } from '../protocol/cli-args.ts'
import { errorMessage } from '../protocol/errors.ts'
import { startNetwork } from '../testing/network.ts'
import { type LocalRegistry, startLocalRegistry } from '../trust/local-registry.ts'
import { DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { readWhitelistFile } from '../trust/whitelist-file.ts'

const { values } = parseCli(
  `
Usage: npm start [-- --port <port>] [-- --chain]

Starts one gateway and two nodes on this machine, hosting the everything, memory, filesystem and
sequential-thinking MCP servers, placed on the nodes by the allocator (2 s epochs). The gateway listens on 127.0.0.1:<port> (default 8080, or $PORT).
Nodes run what the embedded signed whitelist allows. With --chain, a local chain (anvil) is started, the
registry deployed and the four manifests published there, and every peer follows the registry instead.
`,
  { port: { type: 'string', short: 'p' }, chain: { type: 'boolean' } },
)
const port = Number(values.port ?? process.env.PORT ?? 8080)
process.env.NEXUS_LOG_LEVEL ??= 'warn'

/** How the nodes confine their servers, for the banner. */
function sandboxLine(runtime: unknown): string {
  const sandbox = (runtime as { sandbox?: string }).sandbox
  return sandbox === undefined || sandbox === 'none'
    ? 'NOT sandboxed (install bubblewrap: sudo apt-get install bubblewrap)'
    : `each in a sandbox (${sandbox}; no network, its own scratch folder)`
}

let registry: LocalRegistry | undefined
try {
  const started = Date.now()
  if (values.chain) registry = await startLocalRegistry(readWhitelistFile(DEFAULT_WHITELIST_PATH).manifests)
  const network = await startNetwork({
    transport: 'tcp',
    nodes: 2,
    // The nodes host what the allocator assigns them; these entries only give the operator's settings.
    servers: demoServers(),
    node: {
      allocation: { enabled: true, epochMs: 2_000, settleMs: 500, joinDelayMs: 2_500 },
      announceIntervalMs: 1_000,
    },
    gateway: { http: { port } },
    trust: registry?.trust,
  })
  stopOnSignals(async () => {
    await network.stop()
    await registry?.stop()
  })
  const gateway = network.gateway
  const ids = gateway.view.serverIds()
  const lines = [
    '',
    `MCP Nexus is up (${Date.now() - started} ms): 1 gateway, ${network.nodes.length} nodes, ${ids.length} servers.`,
    '',
    `One endpoint for all ${ids.length} servers (tools named <server>__<tool>): ${gateway.url}/mcp`,
    `The network, live, in a browser: ${gateway.url}/network`,
    '',
    'Streamable HTTP endpoints, one per server (MCP 2026-07-28 too):',
    ...ids.map((id) => `  ${id.padEnd(20)} ${gateway.serverUrl(id)}`),
    '',
    'Legacy HTTP+SSE endpoints:',
    ...ids.map((id) => `  ${id.padEnd(20)} ${gateway.sseUrl(id)}`),
    '',
    'Client configuration (Claude Desktop, Cursor, VS Code and other MCP clients), all servers in one entry:',
    JSON.stringify({ mcpServers: { nexus: { type: 'http', url: `${gateway.url}/mcp` } } }, null, 2),
    '',
    `Try it: npx @modelcontextprotocol/inspector --transport http --server-url ${gateway.serverUrl('everything')}`,
    ...(registry === undefined
      ? [
          'Whitelist: the embedded signed whitelist (npm start -- --chain follows an on-chain registry instead).',
        ]
      : [
          `Registry ${registry.registry.address} on ${registry.chain.url} (chain ${registry.chain.chainId}).`,
          "Revoke a server and watch the nodes stop it (the governance key is anvil's public dev key 0):",
          `  NEXUS_PRIVATE_KEY=${registry.governance.privateKey} npx nexus registry revoke memory ` +
            `${network.nodes[0]!.whitelist.resolve('memory').manifest.version} --reason demo ` +
            `--rpc ${registry.chain.url} --registry ${registry.registry.address}`,
        ]),
    `Server processes: ${sandboxLine(network.nodes[0]!.runtime)}.`,
    'Press Ctrl-C to stop.',
    '',
  ]
  process.stdout.write(lines.join('\n'))
} catch (err) {
  process.stderr.write(`npm start: ${errorMessage(err)}\n`)
  await registry?.stop()
  process.exit(1)
}
