import type { AuthContext } from '../protocol/session-handshake.ts'
import type { ClientChannel, GatewaySession } from './gateway-session.ts'
import type { BodyLimits } from './request-body.ts'
import type { ResponseBacklog } from './response-backlog.ts'

/** What the HTTP endpoints need from the gateway to start sessions. */
export interface SessionFactory {
  /**
   * Whether some live node hosts the server (asking the DHT if the view knows none). When none does, the
   * principal asking counts as unmet demand for it (`nexus requests`).
   */
  isServed(serverId: string, askedBy?: string): Promise<boolean>
  /** How much of request bodies the endpoints may read: each, and all at once. */
  readonly bodyLimits: BodyLimits
  /** The watch over a new session's HTTP responses, for back-pressure from slow clients. */
  createBacklog(serverId: string): ResponseBacklog
  createSession(serverId: string, sessionId: string, client: ClientChannel, auth: AuthContext): GatewaySession
}
