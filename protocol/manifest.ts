import { keccak256, toUtf8Bytes } from 'ethers'
import * as z from 'zod/v4'
import { canonicalJson } from './canonical-json.ts'
import { NexusError } from './errors.ts'
import { ERAS } from './modern-era.ts'
import { isValidServerId } from './session-handshake.ts'

/** An exact npm version: no ranges, tags or `latest`, so that a manifest names one tarball only. */
const EXACT_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/
const NPM_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/
const NPM_SPEC = /^npm:((?:@[^/@]+\/)?[^/@]+)@(.+)$/
const PYPI_SPEC = /^pypi:([A-Za-z0-9][A-Za-z0-9._-]{0,127})==(.+)$/
/** An exact PyPI version (PEP 440, no specifiers): digits first, then release, pre, post, dev or local parts. */
const PYPI_VERSION = /^\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?(?:\+[A-Za-z0-9.]+)?$/
/** One line of a hashed pip lock: `name==version --hash=sha256:<64 hex>`. */
const PIP_LOCK_LINE = /^[A-Za-z0-9][A-Za-z0-9._-]*==[0-9A-Za-z.+!-]+ --hash=sha256:[0-9a-f]{64}$/
const OCI_SPEC = /^oci:([a-z0-9][a-z0-9._\-/:]*)@sha256:([0-9a-f]{64})$/
const SHA512_SRI = /^sha512-[A-Za-z0-9+/]{86}==$/
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

export type PackageRef =
  | { kind: 'npm'; name: string; version: string }
  | { kind: 'pypi'; name: string; version: string }
  | { kind: 'oci'; image: string; digest: string }

/** Parses `npm:<name>@<exact version>` or `oci:<image>@sha256:<digest>`; throws a message naming what is wrong. */
export function parsePackageRef(spec: string): PackageRef {
  const npm = NPM_SPEC.exec(spec)
  if (npm !== null) {
    const [, name, version] = npm as unknown as [string, string, string]
    if (!NPM_NAME.test(name)) throw new Error(`"${name}" is not a valid npm package name`)
    if (!EXACT_VERSION.test(version))
      throw new Error(`npm version "${version}" is not exact (a range or tag is not allowed)`)
    return { kind: 'npm', name, version }
  }
  const pypi = PYPI_SPEC.exec(spec)
  if (pypi !== null) {
    const [, name, version] = pypi as unknown as [string, string, string]
    if (!PYPI_VERSION.test(version))
      throw new Error(`PyPI version "${version}" is not exact (a specifier or range is not allowed)`)
    return { kind: 'pypi', name, version }
  }
  const oci = OCI_SPEC.exec(spec)
  if (oci !== null) return { kind: 'oci', image: oci[1]!, digest: `sha256:${oci[2]}` }
  throw new Error(
    `"${spec}" is neither npm:<name>@<exact version>, pypi:<name>==<exact version> nor oci:<image>@sha256:<64 hex digits>`,
  )
}

export const ResourcesSchema = z
  .object({
    /** CPU cores one instance needs (0.25 = a quarter of a core). */
    cpu: z.number().positive().max(256).default(0.25),
    memoryMiB: z.number().int().positive().max(1_048_576).default(256),
    /** Tasks (processes and threads) one instance may have; absent: the node's `sandbox.processes`. */
    processes: z.number().int().min(8).max(65_536).optional(),
    /** Open files one instance may have; absent: the node's `sandbox.openFiles`. */
    openFiles: z.number().int().min(16).max(1_048_576).optional(),
  })
  .strict()

/** A host a server may reach: a name, `*.` and a domain for its subdomains, or an IP address. */
const EGRESS_HOST =
  /^(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$|^[0-9a-f:.]+$/

/** Where a server may connect: nowhere (false), anywhere (true), or only to the hosts listed. */
export const EgressSchema = z.union([
  z.boolean(),
  z.array(z.string().regex(EGRESS_HOST, 'a host name, *.domain or an IP address')).min(1).max(64),
])

/**
 * A stdio server whose one process may serve many sessions at once: it keeps nothing between requests that
 * belongs to one session, and never asks the client anything (sampling, elicitation, roots). The node then
 * multiplexes up to `sessionsPerProcess` sessions over each process (`node/runtime/shared-stdio/`).
 */
export const SharedSchema = z.object({ sessionsPerProcess: z.number().int().min(2).max(10_000) }).strict()

/** The MCP eras a server speaks, each at most once. */
export const ErasSchema = z
  .array(z.enum(ERAS))
  .min(1)
  .max(2)
  .refine((eras) => new Set(eras).size === eras.length, 'an era is listed twice')

export const ManifestSchema = z
  .object({
    id: z.string().refine(isValidServerId, 'lower-case letters, digits, ".", "_" or "-", at most 128'),
    version: z
      .string()
      .refine((v) => EXACT_VERSION.test(v) || PYPI_VERSION.test(v), 'an exact version such as 1.2.3'),
    package: z.string().superRefine((spec, ctx) => {
      try {
        parsePackageRef(spec)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
      }
    }),
    /** The npm registry's integrity of the tarball (`dist.integrity`). */
    integrity: z.string().regex(SHA512_SRI, 'sha512-<base64> as npm reports it').optional(),
    /** Hash of the unpacked package's files (see `package-files.ts`), checked on the node before a start. */
    files: z.string().regex(SHA512_SRI, 'sha512-<base64>').optional(),
    transport: z.enum(['stdio', 'streamable-http']),
    /** Which executable of an npm package to run, when it has several. */
    bin: z.string().min(1).max(128).optional(),
    /** The command inside an OCI image; an npm package runs its `bin` with the node's Node.js. */
    command: z.array(z.string().max(4096)).max(64).optional(),
    args: z.array(z.string().max(4096)).max(256).default([]),
    /** Whether the operator may append arguments (say, the folders a filesystem server may touch). */
    operatorArgs: z.boolean().default(false),
    /** Names of the environment variables the server may receive; values come from the operator. */
    env: z.array(z.string().regex(ENV_NAME)).max(256).default([]),
    /** For streamable HTTP: where the server listens, and the variable that tells it its port. */
    http: z
      .object({
        path: z.string().startsWith('/').max(1024).default('/mcp'),
        portEnv: z.string().regex(ENV_NAME).default('PORT'),
      })
      .strict()
      .optional(),
    resources: ResourcesSchema.default({ cpu: 0.25, memoryMiB: 256 }),
    /**
     * Where the server may connect out of its sandbox or pod: `true` anywhere, a list of hosts (`api.github.com`,
     * `*.example.com`, an IP address) only those, through the node's egress proxy. Absent or false means
     * nowhere. (Optional with no default: manifests signed before it hash alike.)
     */
    egress: EgressSchema.optional(),
    /**
     * The MCP eras the server speaks (`legacy`: sessions opened by `initialize`; `modern`: 2026-07-28). Nodes
     * serve the other era through their era bridge. Absent: a streamable-HTTP server is asked at start, a stdio
     * server is taken as legacy. (Optional with no default: manifests signed before it hash alike.)
     */
    eras: ErasSchema.optional(),
    /**
     * A stdio server safe to share (see `SharedSchema`): many sessions per process. Absent: one process per
     * session. (Optional with no default: manifests signed before it hash alike.)
     */
    shared: SharedSchema.optional(),
    /**
     * The folders an operator may bind into the server's sandbox, one entry each: what it is for, and whether
     * the server may write there (`rw`; an `ro` entry takes read-only binds only). Absent: the operator
     * decides alone, as for manifests signed before the field (their hash is unchanged).
     */
    binds: z
      .array(z.object({ purpose: z.string().min(1).max(256), mode: z.enum(['ro', 'rw']) }).strict())
      .max(16)
      .optional(),
    /**
     * The digest of each tool's definition when the version was reviewed (see `trust/onboarding/tool-digest.ts`):
     * nodes refuse a server whose live tools differ (a tool changed after approval is a "rug pull").
     */
    tools: z
      .record(z.string().min(1).max(128), z.string().regex(/^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex digits>'))
      .optional(),
    /**
     * A PyPI server's whole locked tree, one `name==version --hash=sha256:…` line per distribution: nodes
     * install exactly these with pip's `--require-hashes`, so nothing unpinned or altered runs.
     */
    pythonLock: z
      .array(z.string().regex(PIP_LOCK_LINE, 'name==version --hash=sha256:<64 hex digits>'))
      .max(1024)
      .optional(),
    /**
     * The OCI image the onboarding pipeline built from this npm or PyPI package (`oci:<repository>@sha256:…`):
     * what the Kubernetes runtime runs, while the process runtime runs the package itself. (Optional with no
     * default: manifests signed before it hash alike.)
     */
    image: z.string().regex(OCI_SPEC, 'oci:<repository>@sha256:<64 hex digits>').optional(),
    /** What the curators found when they reviewed this version. */
    notes: z.array(z.string().max(4096)).max(64).default([]),
  })
  .strict()
  .superRefine((m, ctx) => {
    const ref = safePackageRef(m.package)
    if (ref?.kind === 'npm') {
      if (m.integrity === undefined)
        ctx.addIssue({ code: 'custom', path: ['integrity'], message: 'an npm package needs its integrity' })
      if (m.files === undefined)
        ctx.addIssue({ code: 'custom', path: ['files'], message: 'an npm package needs its files hash' })
      if (m.command !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['command'],
          message: 'an npm package runs its bin, not a command',
        })
    }
    if (ref?.kind === 'pypi') {
      if (m.pythonLock === undefined || m.pythonLock.length === 0)
        ctx.addIssue({
          code: 'custom',
          path: ['pythonLock'],
          message: 'a PyPI package needs its hashed lock',
        })
      if (m.integrity !== undefined || m.files !== undefined || m.command !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['package'],
          message: 'a PyPI package is pinned by its lock, and runs its console script',
        })
    }
    if (m.shared !== undefined && m.transport !== 'stdio')
      ctx.addIssue({
        code: 'custom',
        path: ['shared'],
        message: 'only a stdio server is shared: an HTTP server serves its sessions itself',
      })
    if (ref?.kind !== 'pypi' && m.pythonLock !== undefined)
      ctx.addIssue({ code: 'custom', path: ['pythonLock'], message: 'only a PyPI package has a Python lock' })
    if (ref?.kind === 'oci' && (m.integrity !== undefined || m.files !== undefined))
      ctx.addIssue({
        code: 'custom',
        path: ['package'],
        message: 'an OCI image is pinned by its digest alone',
      })
    if (ref?.kind === 'oci' && m.image !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['image'],
        message: 'an OCI package is its own image; image is for npm and PyPI packages',
      })
    if (m.transport === 'stdio' && m.eras !== undefined && !m.eras.includes('legacy'))
      ctx.addIssue({
        code: 'custom',
        path: ['eras'],
        message: 'a stdio server must speak the legacy era (nodes open legacy sessions with stdio servers)',
      })
    if (new Set(m.env).size !== m.env.length)
      ctx.addIssue({ code: 'custom', path: ['env'], message: 'a variable is listed twice' })
  })

export type Manifest = z.infer<typeof ManifestSchema>
export type ManifestInput = z.input<typeof ManifestSchema>

function safePackageRef(spec: string): PackageRef | undefined {
  try {
    return parsePackageRef(spec)
  } catch {
    return undefined
  }
}

/** Validates a manifest (with defaults filled in), naming every offending field in one error. */
export function parseManifest(input: unknown, where = 'manifest'): Manifest {
  const result = ManifestSchema.safeParse(input)
  if (!result.success)
    throw new NexusError('UNTRUSTED_MANIFEST', `invalid ${where}:\n${z.prettifyError(result.error)}`)
  return result.data
}

/** The image a manifest names: its `oci:` package, or the image built from its npm or PyPI package. */
export function manifestImage(manifest: Manifest): { image: string; digest: string } | undefined {
  const ref = manifestPackage(manifest)
  if (ref.kind === 'oci') return { image: ref.image, digest: ref.digest }
  const built = manifest.image === undefined ? undefined : parsePackageRef(manifest.image)
  return built?.kind === 'oci' ? { image: built.image, digest: built.digest } : undefined
}

/** The manifest's package, already validated by the schema. */
export function manifestPackage(manifest: Manifest): PackageRef {
  return parsePackageRef(manifest.package)
}

/**
 * keccak256 of the canonical JSON of the manifest with its defaults filled in: what curators sign and the
 * registry anchors, and what nodes announce. Two encodings of the same manifest hash the same.
 */
export function manifestHash(manifest: Manifest): string {
  return keccak256(toUtf8Bytes(canonicalJson(manifest)))
}
