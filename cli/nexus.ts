#!/usr/bin/env node
import type { UnmetEntry } from '../gateway/unmet-demand.ts'
import { parseCli } from '../protocol/cli-args.ts'
import { errorMessage } from '../protocol/errors.ts'
import { newPeerKeyText } from '../protocol/peer-identity.ts'
import { keysCommand } from './nexus-keys.ts'
import { onboardCommand } from './nexus-onboard.ts'
import { manifestCommand, registryCommand } from './nexus-trust.ts'

const USAGE = `
Usage: nexus <command> [options]

Administration of a Nexus network.

Servers:
  servers --gateway <url>          list the servers a gateway can route to, with their live hosts

  requests --gateway <url> [--json]
                                   what the network's agents asked for and could not get, ranked by demand
                                   (the gateway's API key from NEXUS_TOKEN, when it needs one)

Peers:
  peer-key                         print a new peer identity for a node's identityFile (a Secret in k8s/)

API keys (for gateways' auth.apiKeys file):
  keys create --keys-file <file> --principal <name> [--scope <scope>]...
                                   create a key; it is printed once, only its hash is stored
                                   (scopes: server:<id>, server:<id>/<tool>, server:*)
  keys list --keys-file <file>     ids, principals, scopes, creation and revocation
  keys revoke <id> --keys-file <file>

Manifests (the whitelist's entries):
  manifest create <npm spec | file.tgz> [--id <id>] [--transport stdio|streamable-http] [--bin <name>]
                  [--arg <a>]... [--env <NAME>]... [--operator-args] [--cpu <cores>] [--memory-mib <n>]
                  [--note <text>]... [--from-registry] [-o <file>]
                                   the manifest of an npm package at an exact version, with its integrity and
                                   files hash (from the copy installed here, the registry, or a tarball)
  manifest hash <file>             the manifest hash (keccak256 of its canonical JSON)
  manifest sign <file> [--chain-id <n>] [-o <file>]
                                   add your EIP-712 signature to a manifest, signed manifest or whitelist
  manifest verify <file> [--curator <address>]... [--chain-id <n>] [--rpc <url> --registry <address>]
                  [--installed]    check signatures (and the registry, and the installed packages)

Onboarding (request → validate → pin → manifest to sign):
  onboard <npm:name@version | --request <id> --gateway <url>> [--id <id>] [--bin <name>] [--arg <a>]... [--env <NAME>]... [--operator-args]
          [--egress <host>]... [--policy <file>] [--registry <url>] [-o <folder>]
          [--image-layout <folder>] [--image-repository <registry/path>] [--no-image]
                                   install the exact version with its locked tree (no scripts run), check it
                                   statically and run it in a sandbox, pin its tools, build its OCI image
                                   (into ./nexus-images unless --no-image); writes the manifest to sign and
                                   the report; exits 3 when the policy blocks it
  onboard --upgrade <id> <version> [--whitelist <file>] [--policy <file>] [--registry <url>] [-o <folder>]
          [--image-layout <folder>] [--image-repository <registry/path>] [--no-image]
                                   the same for a new version, with the previous signed manifest's settings,
                                   and a diff against it (tools, dependencies, findings) in the report

Registry (on chain; --rpc <url> and, but for deploy, --registry <address>):
  registry deploy [--governance <address>]
  registry publish <file>          anchor the manifests of a manifest or whitelist file
  registry revoke <id> <version> --reason <text>
  registry list [--json]
  registry add-curator <address> | remove-curator <address>
  registry transfer-governance <address> | accept-governance

Keys: --keystore <file> with NEXUS_KEYSTORE_PASSWORD, or NEXUS_PRIVATE_KEY. They are never printed.
`

const { values, positionals } = parseCli(USAGE, {
  gateway: { type: 'string', short: 'g' },
  output: { type: 'string', short: 'o' },
  id: { type: 'string' },
  transport: { type: 'string' },
  bin: { type: 'string' },
  arg: { type: 'string', multiple: true },
  env: { type: 'string', multiple: true },
  'operator-args': { type: 'boolean' },
  cpu: { type: 'string' },
  'memory-mib': { type: 'string' },
  note: { type: 'string', multiple: true },
  'from-registry': { type: 'boolean' },
  'chain-id': { type: 'string' },
  curator: { type: 'string', multiple: true },
  keystore: { type: 'string' },
  rpc: { type: 'string' },
  registry: { type: 'string' },
  governance: { type: 'string' },
  reason: { type: 'string' },
  installed: { type: 'boolean' },
  json: { type: 'boolean' },
  'keys-file': { type: 'string' },
  principal: { type: 'string' },
  scope: { type: 'string', multiple: true },
  egress: { type: 'string', multiple: true },
  request: { type: 'string' },
  upgrade: { type: 'string' },
  whitelist: { type: 'string' },
  policy: { type: 'string' },
  'image-layout': { type: 'string' },
  'image-repository': { type: 'string' },
  'no-image': { type: 'boolean' },
})
const [command = 'help', sub, ...args] = positionals

/** What agents asked the network for and could not get, from a gateway's `/requests`. */
async function fetchRequests(gateway: string): Promise<UnmetEntry[]> {
  const headers: Record<string, string> = process.env.NEXUS_TOKEN
    ? { authorization: `Bearer ${process.env.NEXUS_TOKEN}` }
    : {}
  const response = await fetch(new URL('/requests', gateway), { headers }).catch((err: Error) => {
    throw new Error(`cannot reach gateway ${gateway}: ${err.message}`)
  })
  if (!response.ok)
    throw new Error(`gateway ${gateway} answered ${response.status}: ${await response.text()}`)
  return ((await response.json()) as { requests: UnmetEntry[] }).requests
}

async function listRequests(): Promise<number> {
  const requests = await fetchRequests(values.gateway ?? 'http://127.0.0.1:8080')
  if (values.json) {
    process.stdout.write(`${JSON.stringify(requests, null, 2)}\n`)
    return 0
  }
  if (requests.length === 0) process.stdout.write('no unmet requests\n')
  for (const r of requests)
    process.stdout.write(
      `${r.id}\t${r.principals} principal(s)\t${r.requests} request(s)\t${r.packages.join(' ') || '(no package named)'}\n`,
    )
  return 0
}

/** `nexus onboard --request <id>`: the package the request names (the most asked-for, if several). */
async function specOfRequest(id: string): Promise<string> {
  const request = (await fetchRequests(values.gateway ?? 'http://127.0.0.1:8080')).find((r) => r.id === id)
  if (request === undefined) throw new Error(`no unmet request for ${id}`)
  const [spec] = request.packages
  if (spec === undefined)
    throw new Error(`the requests for ${id} name no package; give it as npm:<name>@<version>`)
  return spec
}

async function listServers(): Promise<number> {
  const base = values.gateway ?? 'http://127.0.0.1:8080'
  const response = await fetch(new URL('/servers', base)).catch((err: Error) => {
    throw new Error(`cannot reach gateway ${base}: ${err.message}`)
  })
  const body = (await response.json()) as { servers: { id: string; hosts: number }[] }
  for (const server of body.servers)
    process.stdout.write(`${server.id}\t${server.hosts} host(s)\t${base}/mcp/${server.id}\n`)
  return 0
}

try {
  let code: number
  if (command === 'servers') code = await listServers()
  else if (command === 'peer-key') {
    process.stdout.write(`${await newPeerKeyText()}\n`)
    code = 0
  } else if (command === 'keys') code = keysCommand(sub, args, values)
  else if (command === 'manifest') code = await manifestCommand(sub, args, values)
  else if (command === 'registry') code = await registryCommand(sub, args, values)
  else if (command === 'requests') code = await listRequests()
  else if (command === 'onboard')
    code = await onboardCommand(values.request === undefined ? sub : await specOfRequest(values.request), {
      ...values,
      id: values.id ?? values.request,
    })
  else {
    process.stdout.write(`${USAGE.trim()}\n`)
    code = command === 'help' ? 0 : 2
  }
  process.exit(code)
} catch (err) {
  process.stderr.write(`nexus: ${errorMessage(err)}\n`)
  process.exit(1)
}
