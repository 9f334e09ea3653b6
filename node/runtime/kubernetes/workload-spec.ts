import type { ServerConfig } from '../../config.ts'
import type { RuntimeServer } from '../runtime.ts'
import type { WorkloadSpec } from './workload.ts'

const DEFAULT_RESOURCES = { cpu: 0.25, memoryMiB: 256 }

/**
 * What the pod host runs, as JSON in its environment: the server's launch fields, with the variables given
 * by name only (their values are the pod's own environment, set from the same configuration).
 */
export function podServerConfig(config: ServerConfig): string {
  return JSON.stringify({
    id: config.id,
    version: config.version,
    transport: 'stdio',
    package: config.package,
    bin: config.bin,
    command: config.command,
    args: config.args,
    passEnv: [...new Set([...Object.keys(config.env), ...config.passEnv])].sort(),
    warmPool: config.transport === 'stdio' ? config.warmPool : 1,
  })
}

/** A server as the cluster runs it: the image, the launch, the manifest's resources and network stance. */
export function workloadSpec(
  server: RuntimeServer,
  image: string,
  podServer: string,
  replicas: number,
): WorkloadSpec {
  const { config, manifest } = server
  const env: Record<string, string> = { ...config.env }
  // Variables the operator passes from the node's environment are given to the pod with their values.
  for (const name of config.passEnv) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  const resources = manifest?.resources ?? DEFAULT_RESOURCES
  const http = config.transport === 'streamable-http' ? config : undefined
  return {
    serverId: config.id,
    version: config.version,
    manifestHash: server.manifestHash,
    image,
    transport: config.transport,
    podServer: config.transport === 'stdio' ? podServer : undefined,
    command: http?.command === undefined || http.command === 'entrypoint' ? undefined : [http.command],
    args: config.args,
    httpPath: http?.path ?? '/mcp',
    portEnv: http?.portEnv ?? 'PORT',
    env,
    cpu: resources.cpu,
    memoryMiB: resources.memoryMiB,
    egress: manifest?.egress === true,
    replicas,
  }
}
