#!/usr/bin/env node
import { StdioServerConfigSchema } from '../node/config.ts'
import { withImageLaunch } from '../node/pod-host/image-launch.ts'
import { PodHost } from '../node/pod-host/pod-host.ts'
import {
  IMAGE_LAUNCH_COMMAND,
  POD_HOST_PORT,
  POD_HOST_SERVER_ENV,
  POD_LAUNCH_ENV,
} from '../node/runtime/kubernetes/workload.ts'
import { parseJsonOrThrow } from '../protocol/bounded-json.ts'
import { parseCli, stopOnSignals } from '../protocol/cli-args.ts'
import { errorMessage } from '../protocol/errors.ts'
import { createLogger } from '../protocol/logger.ts'

const USAGE = `
Usage: nexus-pod-host [--port <port>] [--host <address>]

The entrypoint of a stdio MCP server's pod under the Kubernetes runtime. It runs the server described by
${POD_HOST_SERVER_ENV} (a stdio launch configuration as JSON: command and args, or an installed npm package
and its bin; passEnv names the variables it may receive) once per session, and serves the node's sessions
on TCP with Nexus session frames. The command ${IMAGE_LAUNCH_COMMAND} runs the launch an image built by
nexus onboard carries, from the file ${POD_LAUNCH_ENV} names.

Options:
      --port <port>      port to listen on (default ${POD_HOST_PORT})
      --host <address>   address to listen on (default 0.0.0.0)
      --max-sessions <n> sessions at once (default 64)
`

const { values } = parseCli(USAGE, {
  port: { type: 'string' },
  host: { type: 'string' },
  'max-sessions': { type: 'string' },
})
try {
  const raw = process.env[POD_HOST_SERVER_ENV]
  if (raw === undefined) throw new Error(`${POD_HOST_SERVER_ENV} is not set`)
  const parsed = StdioServerConfigSchema.safeParse(parseJsonOrThrow(raw, POD_HOST_SERVER_ENV))
  if (!parsed.success)
    throw new Error(`${POD_HOST_SERVER_ENV} is not a stdio launch configuration: ${parsed.error.message}`)
  const host = new PodHost({
    server: withImageLaunch(parsed.data),
    port: Number(values.port ?? POD_HOST_PORT),
    host: values.host,
    maxSessions: values['max-sessions'] === undefined ? undefined : Number(values['max-sessions']),
    logger: createLogger('pod-host'),
  })
  await host.start()
  process.stdout.write(`nexus-pod-host ${parsed.data.id} listening on ${host.port}\n`)
  stopOnSignals(() => host.stop())
} catch (err) {
  process.stderr.write(`nexus-pod-host: ${errorMessage(err)}\n`)
  process.exit(1)
}
