import type { HttpServerConfig, StdioServerConfig } from '../config.ts'
import { resolvePackageBin } from './package-bin.ts'

export interface LaunchSpec {
  command: string
  args: string[]
  env: Record<string, string>
  cwd: string | undefined
}

/** What every process needs to run at all; nothing that could carry the operator's secrets. */
const BASE_ENV_NAMES = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'SYSTEMROOT']

/** Turns a server's launch fields into a concrete command, with a minimal, explicit environment. */
export function resolveLaunch(
  config: StdioServerConfig | HttpServerConfig,
  extraEnv: Record<string, string> = {},
): LaunchSpec {
  const env: Record<string, string> = {}
  for (const name of [...BASE_ENV_NAMES, ...config.passEnv]) {
    const value = process.env[name]
    if (value !== undefined) env[name] = value
  }
  Object.assign(env, config.env, extraEnv)
  if (config.package !== undefined) {
    const resolved = resolvePackageBin(config.package, config.bin)
    // The same Node.js that runs the node: the machine's default one may be too old for the server.
    return { command: process.execPath, args: [resolved.binPath, ...config.args], env, cwd: config.cwd }
  }
  return { command: config.command!, args: config.args, env, cwd: config.cwd }
}
