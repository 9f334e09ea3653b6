import type { IncomingMessage } from 'node:http'
import { createLocalJWKSet, createRemoteJWKSet, type JWTPayload, errors as joseErrors, jwtVerify } from 'jose'
import { NexusError } from '../protocol/errors.ts'
import type { AuthContext } from '../protocol/session-handshake.ts'
import { ApiKeyStore } from './api-keys.ts'
import type { GatewayConfig } from './config.ts'

export const ANONYMOUS: AuthContext = { principal: 'anonymous' }

export type Authentication =
  | { ok: true; auth: AuthContext }
  /** `tokenPresented`: a token came and was refused (the challenge then says invalid_token). */
  | { ok: false; tokenPresented: boolean; reason: string }

/**
 * Who an HTTP request comes from: an API key or a JWT, both as `Authorization: Bearer`, or nobody in the
 * anonymous mode of the local demo. Scopes: `server:<id>` (a server, all its tools), `server:<id>/<tool>` (one
 * tool), `server:*` (everything); a principal without scopes (anonymous) may use everything.
 */
export class Authenticator {
  readonly #config: GatewayConfig['auth']
  readonly #keys: ApiKeyStore | undefined
  readonly #jwks: Parameters<typeof jwtVerify>[1] | undefined

  constructor(config: GatewayConfig['auth']) {
    this.#config = config
    if (!config.anonymous && config.apiKeys === undefined && config.jwt === undefined)
      throw new NexusError(
        'INVALID_CONFIG',
        'auth: configure apiKeys or jwt, or set auth.anonymous (for a local demo only)',
      )
    this.#keys = config.apiKeys === undefined ? undefined : new ApiKeyStore(config.apiKeys)
    const jwt = config.jwt
    if (jwt !== undefined)
      this.#jwks =
        jwt.jwksUrl !== undefined
          ? createRemoteJWKSet(new URL(jwt.jwksUrl))
          : createLocalJWKSet(jwt.jwks as Parameters<typeof createLocalJWKSet>[0])
  }

  async authenticate(req: IncomingMessage): Promise<Authentication> {
    const header = req.headers.authorization
    if (header === undefined) {
      if (this.#config.anonymous) return { ok: true, auth: ANONYMOUS }
      return { ok: false, tokenPresented: false, reason: 'authentication required' }
    }
    const match = /^Bearer ([\x21-\x7e]+)$/.exec(header)
    if (match === null)
      return { ok: false, tokenPresented: true, reason: 'expected Authorization: Bearer <token>' }
    const token = match[1]!
    if (token.startsWith('nxk_') && this.#keys !== undefined) {
      const verified = this.#keys.verify(token)
      if ('error' in verified) return { ok: false, tokenPresented: true, reason: verified.error }
      return {
        ok: true,
        auth: { principal: `key:${verified.record.principal}`, scopes: verified.record.scopes },
      }
    }
    if (this.#jwks !== undefined && this.#config.jwt !== undefined) return this.#verifyJwt(token)
    return { ok: false, tokenPresented: true, reason: 'unknown token' }
  }

  async #verifyJwt(token: string): Promise<Authentication> {
    const jwt = this.#config.jwt!
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, this.#jwks!, {
        issuer: jwt.issuer,
        audience: jwt.audience,
        algorithms: jwt.algorithms,
        clockTolerance: jwt.clockToleranceSec,
      }))
    } catch (err) {
      const reason =
        err instanceof joseErrors.JWTExpired
          ? 'token expired'
          : err instanceof joseErrors.JWTClaimValidationFailed
            ? `token ${err.claim} claim is not accepted`
            : 'invalid token'
      return { ok: false, tokenPresented: true, reason }
    }
    const subject = payload[jwt.principalClaim]
    if (typeof subject !== 'string' || subject === '')
      return { ok: false, tokenPresented: true, reason: `token has no ${jwt.principalClaim} claim` }
    const scope = payload.scope
    const scp = payload.scp
    const scopes =
      typeof scope === 'string' ? scope.split(' ').filter(Boolean) : Array.isArray(scp) ? scp.map(String) : []
    return { ok: true, auth: { principal: `jwt:${subject}`, scopes } }
  }
}

/** Whether the principal may use the server at all. */
export function mayUseServer(auth: AuthContext, serverId: string): boolean {
  if (auth.scopes === undefined) return true
  return auth.scopes.some(
    (s) => s === 'server:*' || s === `server:${serverId}` || s.startsWith(`server:${serverId}/`),
  )
}

/** Whether the principal may call this tool of the server. */
export function mayUseTool(auth: AuthContext, serverId: string, tool: string): boolean {
  if (auth.scopes === undefined) return true
  return auth.scopes.some(
    (s) => s === 'server:*' || s === `server:${serverId}` || s === `server:${serverId}/${tool}`,
  )
}
