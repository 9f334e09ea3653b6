#!/usr/bin/env node
import type { NodeConfigInput } from '../node/config.ts'
import { NexusNode } from '../node/nexus-node.ts'
import { parseCli, stopOnSignals } from '../protocol/cli-args.ts'
import { loadRawConfig } from '../protocol/config-env.ts'
import { errorMessage } from '../protocol/errors.ts'
import { TRUST_CLI_OPTIONS, TRUST_CLI_USAGE, trustFromCli } from '../trust/trust-config.ts'

const USAGE = `
Usage: nexus-node --config <node.yaml> [options]

Runs a Nexus node: a libp2p peer that hosts the MCP servers named in its configuration and serves MCP
sessions that gateways open to it.

Options:
  -c, --config <file>      YAML configuration (see README, "Node configuration")
      --listen <multiaddr>  listen address, repeatable (default /ip4/127.0.0.1/tcp/0)
      --bootstrap <multiaddr>
                           peer to join through, with /p2p/<peer-id>; repeatable
  -h, --help               show this help
${TRUST_CLI_USAGE}

Environment: NEXUS_LOG_LEVEL (trace|debug|info|warn|error|silent, default info); NEXUS_NODE_<FIELD> overrides
a configuration field (NEXUS_NODE_MAX_SESSIONS=128, NEXUS_NODE_OPS__PORT=9464: "__" nests).
`

const { values } = parseCli(USAGE, {
  config: { type: 'string', short: 'c' },
  listen: { type: 'string', multiple: true },
  bootstrap: { type: 'string', multiple: true },
  ...TRUST_CLI_OPTIONS,
})
try {
  const base = loadRawConfig(values.config, 'NEXUS_NODE_') as NodeConfigInput
  const node = new NexusNode({
    ...base,
    listen: values.listen ?? base.listen,
    bootstrap: [...(base.bootstrap ?? []), ...(values.bootstrap ?? [])],
    trust: trustFromCli(values, base.trust),
  })
  await node.start()
  process.stdout.write(`nexus-node ${node.peerId} listening on ${node.multiaddrs.join(' ')}\n`)
  stopOnSignals(() => node.stop())
} catch (err) {
  process.stderr.write(`nexus-node: ${errorMessage(err)}\n`)
  process.exit(1)
}
