import type { ServerConfig } from '../../config.ts'
import type { RuntimeServer } from '../runtime.ts'
import type { WorkloadSpec } from './workload.ts'

const DEFAULT_RESOURCES = { cpu: 0.25, memoryMiB: 256 }
/** What the pod host itself needs beside its servers (Node.js, measured at about 60 MiB resident). */
export const POD_HOST_RESOURCES = { cpu: 0.1, memoryMiB: 96 }

/**
 * A pod's requests and limits. A streamable-HTTP server's pod is one instance: the manifest's resources. A stdio
 * server's pod runs the pod host and one process per session plus its warm pool, so it requests the host and
 * one busy instance with its warm ones, and may grow to the host and `sessionsPerPod` instances with them —
 * limiting it to one instance would have the kernel kill it at its second session.
 */
export function podResources(
  instance: { cpu: number; memoryMiB: number },
  transport: 'stdio' | 'streamable-http',
  warmPool: number,
  sessionsPerPod: number,
): { requests: { cpu: number; memoryMiB: number }; limits: { cpu: number; memoryMiB: number } } {
  if (transport !== 'stdio') return { requests: instance, limits: instance }
  const times = (n: number) => ({
    cpu: Math.round((POD_HOST_RESOURCES.cpu + instance.cpu * n) * 1000) / 1000,
    memoryMiB: POD_HOST_RESOURCES.memoryMiB + instance.memoryMiB * n,
  })
  return { requests: times(1 + warmPool), limits: times(sessionsPerPod + warmPool) }
}

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
  sessionsPerPod = 16,
): WorkloadSpec {
  const { config, manifest } = server
  const env: Record<string, string> = { ...config.env }
  // Variables the operator passes from the node's environment are given to the pod with their values.
  for (const name of config.passEnv) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  const resources = podResources(
    manifest?.resources ?? DEFAULT_RESOURCES,
    config.transport,
    config.transport === 'stdio' ? config.warmPool : 0,
    sessionsPerPod,
  )
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
    requests: resources.requests,
    limits: resources.limits,
    egress: manifest?.egress === true,
    replicas,
  }
}
