#!/usr/bin/env node
import { type GatewayConfigInput, parseGatewayConfig } from '../gateway/config.ts'
import { NexusGateway } from '../gateway/nexus-gateway.ts'
import { parseCli, stopOnSignals } from '../protocol/cli-args.ts'
import { loadRawConfig } from '../protocol/config-env.ts'
import { errorMessage } from '../protocol/errors.ts'
import { TRUST_CLI_OPTIONS, TRUST_CLI_USAGE, trustFromCli } from '../trust/trust-config.ts'

const USAGE = `
Usage: nexus-gateway [--config <gateway.yaml>] [options]

Runs a Nexus gateway: an HTTP server that speaks MCP to agents (streamable HTTP at /mcp/<server-id>, legacy
HTTP+SSE at /sse/<server-id>) and relays every session to a node that hosts the server.

Options:
  -c, --config <file>       YAML configuration (see README, "Gateway configuration")
      --host <address>      HTTP listen address (default 127.0.0.1)
  -p, --port <port>         HTTP port (default 8080)
      --listen <multiaddr>  libp2p listen address, repeatable
      --bootstrap <multiaddr>
                            peer to join through, with /p2p/<peer-id>; repeatable
  -h, --help                show this help
${TRUST_CLI_USAGE}

Environment: NEXUS_LOG_LEVEL (trace|debug|info|warn|error|silent, default info); NEXUS_GATEWAY_<FIELD>
overrides a configuration field (NEXUS_GATEWAY_HTTP__PORT=9000, NEXUS_GATEWAY_AUTH__API_KEYS=/etc/keys.json).
`

const { values } = parseCli(USAGE, {
  config: { type: 'string', short: 'c' },
  host: { type: 'string' },
  port: { type: 'string', short: 'p' },
  listen: { type: 'string', multiple: true },
  bootstrap: { type: 'string', multiple: true },
  ...TRUST_CLI_OPTIONS,
})
try {
  const base = loadRawConfig(values.config, 'NEXUS_GATEWAY_') as GatewayConfigInput
  const config = parseGatewayConfig({
    ...base,
    listen: values.listen ?? base.listen,
    bootstrap: [...(base.bootstrap ?? []), ...(values.bootstrap ?? [])],
    trust: trustFromCli(values, base.trust),
    http: {
      ...base.http,
      ...(values.host ? { host: values.host } : {}),
      ...(values.port ? { port: Number(values.port) } : {}),
    },
  })
  const gateway = new NexusGateway(config)
  await gateway.start()
  process.stdout.write(`nexus-gateway serving MCP at ${gateway.url}/mcp/<server-id>\n`)
  stopOnSignals(() => gateway.stop())
} catch (err) {
  process.stderr.write(`nexus-gateway: ${errorMessage(err)}\n`)
  process.exit(1)
}
