import * as z from 'zod/v4'
import { ConnectionTrimConfigSchema } from '../protocol/connection-trim-config.ts'
import { NexusError } from '../protocol/errors.ts'
import { TrustConfigSchema } from '../trust/trust-config.ts'
import { VirtualServerSchema } from './unified/virtual-servers.ts'

export const GatewayConfigSchema = z.object({
  /** libp2p transport and addresses, as for nodes. */
  transport: z.enum(['tcp', 'memory']).default('tcp'),
  listen: z.array(z.string()).optional(),
  bootstrap: z.array(z.string()).default([]),
  http: z
    .object({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Exact Host values accepted. Default: loopback names when bound to loopback, anything otherwise. */
      allowedHosts: z.array(z.string()).optional(),
      /** Exact Origin values accepted from browsers. Default: loopback origins only. */
      allowedOrigins: z.array(z.string()).optional(),
      maxBodyBytes: z
        .number()
        .int()
        .min(1024)
        .default(4 * 1024 * 1024),
      /** Request bodies being read at once, all clients together; past it, 503 with Retry-After. */
      maxBufferedBodyBytes: z
        .number()
        .int()
        .min(1024)
        .default(64 * 1024 * 1024),
      /** A client must send a request's headers within this time, and the whole request within the next. */
      headersTimeoutMs: z.number().int().min(100).default(10_000),
      requestTimeoutMs: z.number().int().min(100).default(60_000),
      /** Connections open at once; more are refused until some close. */
      maxConnections: z.number().int().min(1).default(20_000),
    })
    .prefault({}),
  sessions: z
    .object({
      /** A session with no traffic either way for this long is closed, freeing its server instance. */
      idleTimeoutMs: z
        .number()
        .int()
        .min(100)
        .default(30 * 60_000),
      /** Events kept per session for Last-Event-ID resumption; the oldest go first. */
      maxStoredEvents: z.number().int().min(0).default(1_000),
      maxStoredEventBytes: z
        .number()
        .int()
        .min(0)
        .default(4 * 1024 * 1024),
      /**
       * Stored events of all sessions together. Past it, a session that stores evicts its own oldest events
       * first, keeping its newest 32 KiB.
       */
      maxStoredEventBytesTotal: z
        .number()
        .int()
        .min(0)
        .default(256 * 1024 * 1024),
      /** The reconnection delay suggested to clients in SSE `retry` fields. */
      sseRetryMs: z.number().int().min(0).default(1_000),
      /**
       * A response stream whose client has taken nothing for this long, while the session waits for it, is
       * closed; a streamable HTTP client resumes it from the stored events.
       */
      slowClientTimeoutMs: z.number().int().min(100).default(30_000),
      /** What a node may leave unread of a session's messages before further requests are refused. */
      maxUnsentBytes: z
        .number()
        .int()
        .min(64 * 1024)
        .default(8 * 1024 * 1024),
    })
    .prefault({}),
  /** How long a node may take to accept or refuse a session. */
  handshakeTimeoutMs: z.number().int().min(100).default(10_000),
  /**
   * How long a stream to a node stays open after a modern request's answer, for the next request to that node
   * (0: a stream per request). Keep it below the nodes' `keptStreamIdleMs` (60 s).
   */
  keptStreamIdleMs: z.number().int().min(0).default(30_000),
  /** Upper bound on libp2p connections. */
  maxConnections: z.number().int().min(1).default(300),
  /** Connections nobody uses are closed above a high-water mark (see "Connections" in the README). */
  connectionTrim: ConnectionTrimConfigSchema,
  discovery: z
    .object({
      /** Learn hosts from gossiped node announcements. */
      gossip: z.boolean().default(true),
      /** Ask the DHT for providers of a server no announcement names. */
      dht: z.boolean().default(true),
      /** A node is forgotten after this many of its announcement intervals without one. */
      missedHeartbeats: z.number().int().min(1).default(3),
      dhtLookupTimeoutMs: z.number().int().min(100).default(5_000),
      /** How long a provider found in the DHT is trusted without a fresh lookup. */
      dhtEntryTtlMs: z.number().int().min(1_000).default(60_000),
    })
    .prefault({}),
  failover: z
    .object({
      /** A request with no frame from its node for this long makes the gateway probe the node. */
      probeAfterMs: z.number().int().min(50).default(10_000),
      /** A node that does not answer a probe within this time is given up on; its sessions move. */
      probeTimeoutMs: z.number().int().min(50).default(5_000),
      /** How long a new node may take to answer the replayed initialize. */
      replayTimeoutMs: z.number().int().min(100).default(10_000),
      /**
       * How long a session whose node failed keeps looking for another host before it ends: a moment with no
       * host known (announcements delayed on a busy network, a replacement node still joining) is ridden out.
       */
      takeoverTimeoutMs: z.number().int().min(0).default(10_000),
    })
    .prefault({}),
  /** `/mcp`: one endpoint for every server a principal may use (see README, "One endpoint for all servers"). */
  unified: z
    .object({
      /** Between a server's id and a tool or prompt name; a server id containing it is left out. */
      separator: z
        .string()
        .regex(
          /^[A-Za-z0-9_.-]{1,8}$/,
          'up to 8 of letters, digits, "_", "." and "-" (tool names allow no others)',
        )
        .default('__'),
      /** How long one server may take to answer a list before the list goes on without it. */
      listTimeoutMs: z.number().int().min(100).default(5_000),
      /** How long a call may run; each progress notification starts the time again. */
      callTimeoutMs: z.number().int().min(1_000).default(600_000),
    })
    .strict()
    .prefault({}),
  /** `/mcp/v/<name>`: named subsets of servers and tools, with renames, descriptions and who may see them. */
  virtualServers: z
    .record(z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'a lower-case name'), VirtualServerSchema)
    .default({}),
  /** On shutdown (SIGTERM), how long requests in flight may take to finish before they are answered with an error. */
  shutdownTimeoutMs: z.number().int().min(0).default(10_000),
  /** How often the gateway publishes its demand report (sessions and call rates per server). */
  demandIntervalMs: z.number().int().min(100).default(2_000),
  /** What one principal, and everyone together, may use; beyond it, 429 with Retry-After (503 when full). */
  limits: z
    .object({
      /** Requests per second per principal (0: no limit), with bursts up to `burst`. */
      requestsPerSecond: z.number().min(0).default(50),
      burst: z.number().int().min(1).default(100),
      /** Sessions one principal may hold at once. */
      sessionsPerPrincipal: z.number().int().min(1).default(64),
      /** Sessions the gateway holds at once, all principals together. */
      maxSessions: z.number().int().min(1).default(10_000),
      /** Requests one session may have waiting for answers; more are answered with -32014 and not sent. */
      inFlightPerSession: z.number().int().min(1).default(256),
      /** Requests one principal may have waiting, all its sessions together. */
      inFlightPerPrincipal: z.number().int().min(1).default(1_024),
      /** Requests the gateway holds waiting, everyone together. */
      maxInFlight: z.number().int().min(1).default(100_000),
    })
    .strict()
    .prefault({}),
  /** Who may use the gateway: API keys and JWTs as `Authorization: Bearer`; anonymous for a local demo only. */
  auth: z
    .object({
      /** Lets requests without a token in, as principal `anonymous` with every scope. Local demos only. */
      anonymous: z.boolean().default(false),
      /** File of hashed API keys (`nexus keys create`); re-read when it changes. */
      apiKeys: z.string().min(1).optional(),
      jwt: z
        .object({
          issuer: z.string().min(1),
          audience: z.string().min(1),
          /** Where the issuer publishes its keys... */
          jwksUrl: z.url().optional(),
          /** ...or the keys themselves (a JWK Set). */
          jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
          algorithms: z.array(z.string()).optional(),
          /** The claim that names the principal. */
          principalClaim: z.string().default('sub'),
          clockToleranceSec: z.number().int().min(0).max(300).default(30),
        })
        .strict()
        .refine(
          (j) => (j.jwksUrl === undefined) !== (j.jwks === undefined),
          'set exactly one of jwksUrl or jwks',
        )
        .optional(),
      /** This gateway's public URL, named in the protected resource metadata; the HTTP address by default. */
      resource: z.url().optional(),
      /** Authorization servers for MCP clients to use (RFC 9728); the JWT issuer by default. */
      authorizationServers: z.array(z.url()).optional(),
    })
    .strict()
    .prefault({}),
  /** The whitelist: the gateway routes only to nodes that announce a whitelisted manifest for the server. */
  trust: TrustConfigSchema.prefault({}),
})
export type GatewayConfig = z.infer<typeof GatewayConfigSchema>
export type GatewayConfigInput = z.input<typeof GatewayConfigSchema>

export function parseGatewayConfig(input: unknown): GatewayConfig {
  const result = GatewayConfigSchema.safeParse(input)
  if (!result.success) {
    throw new NexusError('INVALID_CONFIG', `invalid gateway configuration:\n${z.prettifyError(result.error)}`)
  }
  return result.data
}
