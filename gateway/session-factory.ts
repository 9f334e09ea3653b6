import type { AuthContext } from '../protocol/session-handshake.ts'
import type { ClientChannel, GatewaySession } from './gateway-session.ts'

/** What the HTTP endpoints need from the gateway to start sessions. */
export interface SessionFactory {
  /** Whether some live node hosts the server (asking the DHT if the view knows none). */
  isServed(serverId: string): Promise<boolean>
  createSession(serverId: string, sessionId: string, client: ClientChannel, auth: AuthContext): GatewaySession
}
