#!/usr/bin/env node
import { parseCli } from '../protocol/cli-args.ts'

const USAGE = `
Usage: nexus <command> [options]

Administration of a Nexus network.

Commands:
  servers --gateway <url>   list the servers a gateway can route to, with their live hosts
  help                      show this help
`

const { values, positionals } = parseCli(USAGE, { gateway: { type: 'string', short: 'g' } })
const command = positionals[0] ?? 'help'
if (command === 'servers') {
  const base = values.gateway ?? 'http://127.0.0.1:8080'
  try {
    const response = await fetch(new URL('/servers', base))
    const body = (await response.json()) as { servers: { id: string; hosts: number }[] }
    for (const server of body.servers)
      process.stdout.write(`${server.id}\t${server.hosts} host(s)\t${base}/mcp/${server.id}\n`)
  } catch (err) {
    process.stderr.write(`nexus: cannot reach gateway ${base}: ${(err as Error).message}\n`)
    process.exit(1)
  }
} else {
  process.stdout.write(`${USAGE.trim()}\n`)
  if (command !== 'help') process.exit(2)
}
