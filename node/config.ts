import * as z from 'zod/v4'
import { ConnectionTrimConfigSchema } from '../protocol/connection-trim-config.ts'
import { NexusError } from '../protocol/errors.ts'
import { EgressSchema, ErasSchema, ResourcesSchema, SharedSchema } from '../protocol/manifest.ts'
import { isValidServerId } from '../protocol/session-handshake.ts'
import { TrustConfigSchema } from '../trust/trust-config.ts'

const ServerIdSchema = z
  .string()
  .refine(isValidServerId, 'lower-case letters, digits, ".", "_" or "-", at most 128')

/** A path the operator lets a server see (at the same path) inside its sandbox. */
const BindSchema = z
  .object({ path: z.string().startsWith('/', 'an absolute path'), mode: z.enum(['ro', 'rw']).default('ro') })
  .strict()

const EnvSchema = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({})

/** How to start a server's process: an installed npm package's executable, or an explicit command. */
const LaunchFields = {
  /** Name of an installed npm package whose executable is run with this Node.js. */
  package: z.string().min(1).optional(),
  /** Which executable of the package, when it has several. */
  bin: z.string().min(1).optional(),
  command: z.string().min(1).optional(),
  args: z.array(z.string()).default([]),
  /** Variables the server receives. The node's own environment is never passed on, except `passEnv`. */
  env: EnvSchema,
  passEnv: z.array(z.string()).default([]),
  cwd: z.string().optional(),
  /** Folders or files the server may see in its sandbox (its own package, runtime and scratch are always there). */
  binds: z.array(BindSchema).max(64).default([]),
  /** What one instance may use (the sandbox's limits); a whitelisted server's come from its manifest. */
  resources: ResourcesSchema.optional(),
  /** Whether the server keeps network access in its sandbox; a whitelisted server's comes from its manifest. */
  egress: EgressSchema.optional(),
}

export const StdioServerConfigSchema = z
  .object({
    id: ServerIdSchema,
    version: z.string().min(1).default('0.0.0'),
    transport: z.literal('stdio'),
    ...LaunchFields,
    /** Pre-started instances kept ready so that a new session does not wait for a cold start. */
    warmPool: z.number().int().min(0).max(64).default(1),
    /** Many sessions per process (a whitelisted server's comes from its manifest); see `SharedSchema`. */
    shared: SharedSchema.optional(),
  })
  .refine(
    (s) => (s.package === undefined) !== (s.command === undefined),
    'set exactly one of package or command',
  )

export const HttpServerConfigSchema = z
  .object({
    id: ServerIdSchema,
    version: z.string().min(1).default('0.0.0'),
    transport: z.literal('streamable-http'),
    /** An MCP endpoint that already runs; the node only connects to it. */
    url: z.url().optional(),
    ...LaunchFields,
    /** The variable through which the started server learns its port. */
    portEnv: z.string().default('PORT'),
    path: z.string().startsWith('/').default('/mcp'),
    /** The MCP eras the server speaks; absent: asked at start (`server/discover` and `initialize`). */
    eras: ErasSchema.optional(),
  })
  .refine(
    (s) => [s.url, s.package, s.command].filter((x) => x !== undefined).length === 1,
    'set exactly one of url, package or command',
  )

export const ServerConfigSchema = z.union([StdioServerConfigSchema, HttpServerConfigSchema])
export type StdioServerConfig = z.infer<typeof StdioServerConfigSchema>
export type HttpServerConfig = z.infer<typeof HttpServerConfigSchema>
/** How the runtime starts a server: from a whitelisted manifest, or (development only) from the config. */
export type ServerConfig = z.infer<typeof ServerConfigSchema>

/**
 * A whitelisted server the node hosts: its signed manifest says what runs; the operator adds only the values
 * of the variables the manifest allows, and how many warm instances to keep.
 */
export const WhitelistedServerSchema = z
  .object({
    id: ServerIdSchema,
    /** A version from the whitelist; the last one listed by default. */
    version: z.string().min(1).optional(),
    /** Appended to the manifest's arguments, when the manifest allows the operator to add any. */
    args: z.array(z.string()).default([]),
    env: EnvSchema,
    passEnv: z.array(z.string()).default([]),
    cwd: z.string().optional(),
    binds: z.array(BindSchema).max(64).default([]),
    warmPool: z.number().int().min(0).max(64).default(1),
  })
  .strict()
export type WhitelistedServer = z.infer<typeof WhitelistedServerSchema>

/** A server entry of the node's configuration: a whitelisted server by id, or an unverified launch config. */
export type HostedServerConfig = WhitelistedServer | ServerConfig
export type ServerConfigInput = z.input<typeof WhitelistedServerSchema> | z.input<typeof ServerConfigSchema>

/**
 * Validates one server entry against the schema its shape calls for (a launch configuration has a transport),
 * so that errors name the entry's own fields rather than every alternative.
 */
const HostedServerConfigSchema = z.looseObject({}).transform((entry, ctx): HostedServerConfig => {
  const schema = 'transport' in entry ? ServerConfigSchema : WhitelistedServerSchema
  const result = schema.safeParse(entry)
  if (result.success) return result.data
  for (const issue of result.error.issues) ctx.addIssue({ ...issue, path: issue.path } as never)
  return z.NEVER
})

export function isWhitelistedServer(server: HostedServerConfig): server is WhitelistedServer {
  return !('transport' in server)
}

const LabelsSchema = z.record(z.string().max(317), z.string().max(63))

/** Where a Kubernetes runtime applies its workloads and how it reaches the API server. */
export const KubernetesRuntimeSchema = z
  .object({
    kind: z.literal('kubernetes'),
    /** The namespace the node's workloads go to (one node, one namespace, is the simple layout). */
    namespace: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
      .max(63),
    /** A kubeconfig file; by default the standard places (KUBECONFIG, ~/.kube/config). */
    kubeconfig: z.string().optional(),
    context: z.string().optional(),
    /** The node runs in a pod: use its ServiceAccount's token and the cluster's CA. */
    inCluster: z.boolean().default(false),
    /**
     * The name this node's objects carry (label `nexus.mcp/node`): stable across restarts, so that a restarted
     * node adopts its objects. By default the host name (a StatefulSet pod's name).
     */
    nodeName: z.string().min(1).max(63).optional(),
    /** Where the node's own pods run, and their labels: the only traffic the servers' pods admit. */
    nodeNamespace: z.string().optional(),
    nodePodLabels: LabelsSchema.default({ 'app.kubernetes.io/name': 'nexus-node' }),
    /**
     * Image of a server whose manifest is an npm package (an OCI manifest pins its own), by `id@version`, `id` or
     * manifest hash: `registry/repository@sha256:<digest>` only — a tag is refused.
     */
    images: z.record(z.string(), z.string()).default({}),
    /** Sessions one pod serves before another is added; replicas follow the node's sessions. */
    sessionsPerPod: z.number().int().min(1).max(4096).default(16),
    minPods: z.number().int().min(0).max(64).default(1),
    maxPods: z.number().int().min(1).max(1024).default(16),
    /** On a graceful stop: keep the objects (a restart adopts them) or delete them. */
    onStop: z.enum(['keep', 'delete']).default('keep'),
    fieldManager: z.string().min(1).max(128).default('nexus-node'),
  })
  .strict()
export type KubernetesRuntimeConfig = z.infer<typeof KubernetesRuntimeSchema>

export const RuntimeConfigSchema = z
  .discriminatedUnion('kind', [z.object({ kind: z.literal('process') }).strict(), KubernetesRuntimeSchema])
  .default({ kind: 'process' })

export const NodeConfigSchema = z.object({
  /** Where servers run: child processes of the node (default), or workloads in a Kubernetes cluster. */
  runtime: RuntimeConfigSchema,
  transport: z.enum(['tcp', 'memory']).default('tcp'),
  /**
   * A file with this node's private key (`nexus peer-key` makes one): the same peer id across restarts, as a
   * StatefulSet pod with its Secret needs. Without it, every start is a new peer.
   */
  identityFile: z.string().min(1).optional(),
  listen: z.array(z.string()).optional(),
  bootstrap: z.array(z.string()).default([]),
  servers: z.array(HostedServerConfigSchema).default([]),
  trust: TrustConfigSchema.prefault({}),
  /**
   * Network allocation: the node hosts what the allocator assigns it among the whitelisted servers (the
   * `servers` entries then only give the operator's settings for them). Off: it hosts `servers` as listed.
   */
  allocation: z
    .object({
      enabled: z.boolean().default(false),
      /** Length of an epoch; every peer computes the assignment once per epoch. */
      epochMs: z.number().int().min(200).default(10_000),
      /** How long after an epoch boundary to compute, so that the records signed before it arrived. */
      settleMs: z.number().int().min(0).default(1_000),
      /**
       * A node counts for allocation once it has announced for this long, so that every peer has its records;
       * until then it computes assignments but neither applies nor announces them.
       */
      joinDelayMs: z.number().int().min(0).default(6_000),
      policy: z
        .object({
          minReplicas: z.number().int().min(1).max(64),
          maxReplicas: z.number().int().min(1).max(1024),
          idleReplicas: z.number().int().min(0).max(64),
          sessionsPerReplica: z.number().positive(),
          callsPerReplica: z.number().positive(),
          targetUtilisation: z.number().positive().max(1),
          shrinkHysteresis: z.number().min(0).max(4),
        })
        .partial()
        .strict()
        .default({}),
    })
    .strict()
    .prefault({}),
  /** Operations endpoints (`/healthz`, `/readyz`, `/metrics`) on their own HTTP port; off unless a port is set. */
  ops: z
    .object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535).optional() })
    .prefault({}),
  /** Told to the allocator: replicas of a server go to distinct operators where possible. */
  labels: z
    .object({ operator: z.string().max(128).optional(), region: z.string().max(128).optional() })
    .default({}),
  /** What this node offers servers; by default the machine's cores and memory. */
  resources: z.object({ cpu: z.number().positive(), memoryMiB: z.number().int().positive() }).optional(),
  /** Session slots this node offers across all its servers. */
  maxSessions: z.number().int().min(1).default(256),
  /** Requests of one session its server may be working on at once; more are answered with -32014. */
  maxInFlightPerSession: z.number().int().min(1).default(1_024),
  /**
   * Server processes being stopped at once. Ending hundreds of sessions together (a gateway that fails or an
   * agent that deletes them all) queues their processes' shutdown instead of starving the node's other work.
   */
  maxConcurrentTeardowns: z.number().int().min(1).default(4),
  /**
   * Server processes started at once (process runtime). A burst of new sessions on a stdio server queues for a
   * start slot instead of starting every process together; a session that finds the queue full, or waits longer
   * than `queueTimeoutMs`, is refused with NODE_BUSY and a time to retry after.
   */
  admission: z
    .object({
      /** Default: the machine's cores. */
      maxStarting: z.number().int().min(1).max(1024).optional(),
      maxQueued: z.number().int().min(0).max(100_000).default(256),
      /** Keep it below the gateways' `handshakeTimeoutMs` (10 s): they wait this long for the node's answer. */
      queueTimeoutMs: z.number().int().min(100).default(5_000),
    })
    .strict()
    .prefault({}),
  /**
   * Each server process in a sandbox of its own (process runtime, Linux, bubblewrap): `required` refuses to
   * run a server without one, `preferred` runs it unsandboxed (and says why) where the machine cannot,
   * `off` never sandboxes. Absent: `required` where the machine can sandbox, `preferred` where it cannot.
   */
  sandbox: z
    .object({
      mode: z.enum(['required', 'preferred', 'off']).optional(),
      /** Tasks (processes and threads) one server instance may have at once. */
      processes: z.number().int().min(8).max(65_536).default(256),
      openFiles: z.number().int().min(16).max(1_048_576).default(1024),
    })
    .strict()
    .default({ processes: 256, openFiles: 1024 }),
  announceIntervalMs: z.number().int().min(100).default(2_000),
  /** A session whose first frame does not arrive within this time is dropped. */
  handshakeTimeoutMs: z.number().int().min(100).default(10_000),
  /**
   * How long a gateway's stream stays open after a modern request's answer, waiting for its next request
   * (0: every modern request has a stream of its own). Keep it above the gateways' `keptStreamIdleMs` (30 s),
   * so that a gateway lets go of a stream before the node ends it.
   */
  keptStreamIdleMs: z.number().int().min(0).default(60_000),
  /** On shutdown, how long sessions may take to finish their requests before they are moved anyway. */
  drainTimeoutMs: z.number().int().min(0).default(10_000),
  /** Upper bound on libp2p connections. */
  maxConnections: z.number().int().min(1).default(300),
  /** Connections nobody uses are closed above a high-water mark (see "Connections" in the README). */
  connectionTrim: ConnectionTrimConfigSchema,
})
export type NodeConfig = z.infer<typeof NodeConfigSchema>
export type NodeConfigInput = Omit<z.input<typeof NodeConfigSchema>, 'servers'> & {
  servers?: ServerConfigInput[]
}

/** Validates a node configuration, naming every offending field in one error. */
export function parseNodeConfig(input: unknown): NodeConfig {
  const result = NodeConfigSchema.safeParse(input)
  if (!result.success)
    throw new NexusError('INVALID_CONFIG', `invalid node configuration:\n${z.prettifyError(result.error)}`)
  const ids = new Set<string>()
  for (const server of result.data.servers) {
    if (ids.has(server.id))
      throw new NexusError('INVALID_CONFIG', `server id ${server.id} is configured twice`)
    ids.add(server.id)
  }
  const unverified = result.data.servers.find((s) => !isWhitelistedServer(s))
  if (unverified !== undefined && !result.data.trust.allowUnverified)
    throw new NexusError(
      'INVALID_CONFIG',
      `server ${unverified.id} gives its own launch configuration, but a node runs only whitelisted manifests: ` +
        'list it by id (and version) so that its signed manifest decides how it runs, or set ' +
        'trust.allowUnverified (development only)',
    )
  return result.data
}
