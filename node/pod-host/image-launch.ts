import { readFileSync } from 'node:fs'
import * as z from 'zod/v4'
import { parseJsonOrThrow } from '../../protocol/bounded-json.ts'
import type { StdioServerConfig } from '../config.ts'
import { IMAGE_LAUNCH_COMMAND, POD_LAUNCH_ENV } from '../runtime/kubernetes/workload.ts'

const ImageLaunchSchema = z
  .object({
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).default({}),
  })
  .strict()

/**
 * The server a pod runs, with an image's own launch put in: a node asks for `nexus:image-launch` when the
 * manifest's image was built by the onboarding pipeline, which writes how the server starts (its interpreter,
 * entry script and variables, in the image's paths) into the file `NEXUS_POD_LAUNCH` names. The arguments the
 * node sends (the manifest's and the operator's) follow the launch's own.
 */
export function withImageLaunch(
  server: StdioServerConfig,
  env: NodeJS.ProcessEnv = process.env,
): StdioServerConfig {
  if (server.command !== IMAGE_LAUNCH_COMMAND) return server
  const file = env[POD_LAUNCH_ENV]
  if (file === undefined)
    throw new Error(
      `the node asked for the image's own launch, but this image has no ${POD_LAUNCH_ENV} (it was not built by nexus onboard)`,
    )
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new Error(`cannot read the image's launch ${file}: ${(err as Error).message}`)
  }
  const parsed = ImageLaunchSchema.safeParse(parseJsonOrThrow(text, file))
  if (!parsed.success)
    throw new Error(`${file} is not a launch (command, args, env): ${parsed.error.message}`)
  const launch = parsed.data
  return {
    ...server,
    command: launch.command,
    args: [...launch.args, ...server.args],
    env: { ...launch.env, ...server.env },
  }
}
