import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AuthContext } from '../protocol/session-handshake.ts'
import type { Route } from './routes.ts'

/** One HTTP request on its way through the gateway, with what each stage learnt of it. */
export interface Exchange {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  route?: Route
  /** The server the request is for (the route's, or its legacy session's). */
  serverId?: string
  auth?: AuthContext
}

/**
 * A step of the gateway's HTTP handling. It answers the request itself (and returns true: the pipeline
 * stops), or lets it through (false), possibly having added to the exchange.
 */
export interface Stage {
  name: string
  run(exchange: Exchange): boolean | Promise<boolean>
}

/** Runs the stages in their declared order until one answers. */
export async function runPipeline(stages: readonly Stage[], exchange: Exchange): Promise<void> {
  for (const stage of stages) if (await stage.run(exchange)) return
}
