import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, extname, isAbsolute, join, sep } from 'node:path'
import { errorMessage, NexusError } from '../../../protocol/errors.ts'
import type { LaunchSpec } from '../launch.ts'
import { CgroupHost, type InstanceCgroup, type InstanceLimits, type LimitEvents } from './cgroups.ts'
import { type EgressDecision, EgressProxy } from './egress-proxy.ts'
import { processAlive } from './process-alive.ts'

export type SandboxMode = 'required' | 'preferred' | 'off'

/** A path the operator lets a server see, at the same path inside its sandbox. */
export interface SandboxBind {
  path: string
  mode: 'ro' | 'rw'
}

/**
 * A server's way out: `none` (loopback of its own only), `host` (the machine's network), or the named hosts
 * only, through the node's egress proxy.
 */
export type SandboxNetwork = 'none' | 'host' | { hosts: string[] }

/** What one server's processes may see and use. */
export interface SandboxPolicy {
  serverId: string
  limits: InstanceLimits
  openFiles: number
  binds: SandboxBind[]
  network: SandboxNetwork
  /** For an HTTP server: the port it listens on in the sandbox, which the node reaches through a socket. */
  inboundPort?: number
  onEgress?: (decision: EgressDecision) => void
}

/** A launch inside a sandbox: the command to spawn, and what to do when its process has ended. */
export interface SandboxedLaunch {
  spec: LaunchSpec
  /** How the limits were enforced: `cgroup v1`, `cgroup v2`, or `rlimits` (memory and open files only). */
  enforcement: string
  /** For an HTTP server: the Unix socket through which the node reaches it (it exists once the server listens). */
  inboundSocket?: string
  /** Reads what the instance ran into, and removes its control group, proxy and scratch directory. */
  finish(): LimitEvents
}

/** The server's proxy inside its sandbox (`HTTP_PROXY`), carried by the relay to the node's egress proxy. */
const PROXY_PORT = 3128
/** The relay that gives a sandbox without a network its doors: see `sandbox-relay.ts`. */
// `.ts` in a checkout, `.js` in the installed package.
const RELAY = join(import.meta.dirname, `sandbox-relay${extname(import.meta.filename)}`)

/** System folders every process needs to run (read-only): the dynamic loader, libc, shells. */
const SYSTEM_DIRS = ['/usr', '/lib', '/lib32', '/lib64', '/bin', '/sbin']
/** The few files of `/etc` a server may read; the rest (shadow, the operator's configuration) stays out. */
const ETC_FILES = [
  '/etc/ssl',
  '/etc/ca-certificates',
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/nsswitch.conf',
  '/etc/localtime',
  '/etc/passwd',
  '/etc/group',
]

/**
 * Runs each server process in a sandbox of its own (bubblewrap): new user, pid, ipc, uts, cgroup and network
 * namespaces; a read-only view of the system folders, the runtime and the server's own package (the
 * `node_modules` it is installed in); a private scratch directory as its home and temp folder, removed when
 * it ends; the operator's binds; no capabilities; killed with the node. Its memory, CPU and task count are
 * limited by a control group of its own where the machine allows it, by rlimits otherwise.
 */
export class Sandbox {
  readonly #bwrap: string
  readonly #cgroups: CgroupHost | undefined
  readonly #scratchRoot: string
  #instances = 0

  private constructor(bwrap: string, cgroups: CgroupHost | undefined) {
    this.#bwrap = bwrap
    this.#cgroups = cgroups
    sweepStaleScratch()
    this.#scratchRoot = mkdtempSync(join(tmpdir(), `nexus-sandbox-${process.pid}-`))
  }

  /**
   * The sandbox this machine supports, or why there is none: `required` refuses to go on without one,
   * `preferred` runs servers unsandboxed (with the reason logged), `off` does not look.
   */
  static create(mode: SandboxMode | undefined): { sandbox?: Sandbox; unavailable?: string } {
    if (mode === 'off') return { unavailable: 'the sandbox is off in the configuration' }
    const problem = sandboxProblem()
    // Unset: required where the machine can sandbox (a sandbox that later fails to start is then an error).
    if (mode === undefined && problem === undefined) mode = 'required'
    if (problem === undefined) return { sandbox: new Sandbox('bwrap', CgroupHost.detect()) }
    if (mode === 'required')
      throw new NexusError(
        'INVALID_CONFIG',
        `sandbox: required, but ${problem}. Install bubblewrap (Debian: apt-get install bubblewrap), or set sandbox.mode: preferred`,
      )
    return { unavailable: problem }
  }

  /** How limits are enforced on this machine. */
  get enforcement(): string {
    return this.#cgroups === undefined ? 'rlimits' : `cgroup v${this.#cgroups.version}`
  }

  wrap(spec: LaunchSpec, policy: SandboxPolicy): SandboxedLaunch {
    for (const bind of policy.binds)
      if (!isAbsolute(bind.path) || !existsSync(bind.path))
        throw new NexusError(
          'INVALID_CONFIG',
          `server ${policy.serverId}: the folder to bind, ${bind.path}, does not exist`,
        )
    // Unique across the sandboxes of one process too (tests run several nodes in one).
    const instance = `${basename(this.#scratchRoot)}-${policy.serverId}-${++this.#instances}`
    // Short names: the sockets in it must fit a Unix socket path (108 bytes).
    const scratch = mkdtempSync(join(this.#scratchRoot, `${this.#instances}-`))
    let cgroup: InstanceCgroup | undefined
    let enforcement = this.enforcement
    try {
      cgroup = this.#cgroups?.create(instance, policy.limits)
    } catch (err) {
      enforcement = `rlimits (no control group: ${errorMessage(err)})`
    }
    const { inner, env, proxy, inboundSocket } = this.#doors(spec, policy, scratch)
    const bwrap = this.#bwrapArgs(inner, policy, scratch)
    const limits = [`--nofile=${policy.openFiles}`]
    // Without a memory cgroup, the data-segment rlimit is the memory bound. Not the address-space one: V8
    // reserves gigabytes of address space it never uses, and fails to start under any tight bound on it.
    // The data limit counts only writable private memory, so it is set at twice the memory limit.
    if (cgroup === undefined) limits.push(`--data=${policy.limits.memoryMiB * 2 * 1024 * 1024}`)
    const enter = (cgroup?.procsFiles ?? []).map((file) => `echo $$ > ${file}`).join(' && ')
    return {
      spec: {
        command: '/bin/sh',
        // The shell enters the control groups itself and then becomes the sandbox, so no process of the
        // server ever runs outside its limits.
        args: [
          '-c',
          `${enter ? `${enter} && ` : ''}exec "$@"`,
          'nexus-sandbox',
          'prlimit',
          ...limits,
          '--',
          this.#bwrap,
          ...bwrap,
        ],
        env: { ...spec.env, ...env, HOME: scratch, TMPDIR: scratch },
        cwd: scratch,
      },
      enforcement,
      inboundSocket,
      finish: () => {
        proxy?.close()
        const events = cgroup?.events() ?? { oomKills: 0, forksRefused: 0, cpuThrottled: 0 }
        cgroup?.remove()
        rmSync(scratch, { recursive: true, force: true })
        return events
      },
    }
  }

  /**
   * The sandbox's doors: with a network of its own, an HTTP server is reached through a Unix socket, and named
   * egress hosts through the node's proxy; both need the relay to start the server. With the machine's
   * network, nothing is needed.
   */
  #doors(spec: LaunchSpec, policy: SandboxPolicy, scratch: string) {
    const relayArgs: string[] = []
    const env: Record<string, string> = {}
    let proxy: EgressProxy | undefined
    let inboundSocket: string | undefined
    if (policy.network !== 'host' && policy.inboundPort !== undefined) {
      inboundSocket = join(scratch, '.http.sock')
      relayArgs.push('--inbound', `${inboundSocket}:${policy.inboundPort}`)
    }
    if (typeof policy.network === 'object') {
      const socket = join(scratch, '.egress.sock')
      proxy = EgressProxy.start(socket, policy.serverId, policy.network.hosts, (d) => policy.onEgress?.(d))
      relayArgs.push('--outbound', `${PROXY_PORT}:${socket}`)
      const url = `http://127.0.0.1:${PROXY_PORT}`
      Object.assign(env, { HTTP_PROXY: url, HTTPS_PROXY: url, http_proxy: url, https_proxy: url })
      // Node.js's own fetch and http follow the proxy variables only when told to.
      env.NODE_USE_ENV_PROXY = '1'
    }
    const inner: LaunchSpec =
      relayArgs.length === 0
        ? spec
        : {
            ...spec,
            command: process.execPath,
            args: [RELAY, ...relayArgs, '--', spec.command, ...spec.args],
          }
    return { inner, env, proxy, inboundSocket }
  }

  #bwrapArgs(spec: LaunchSpec, policy: SandboxPolicy, scratch: string): string[] {
    // NODE_OPTIONS never crosses into a sandbox: it would make Node.js load code of the node's choosing
    // (test runners inject their hooks this way) from paths the server cannot see, or should not.
    const args = [
      '--die-with-parent',
      '--new-session',
      '--unshare-all',
      '--cap-drop',
      'ALL',
      '--unsetenv',
      'NODE_OPTIONS',
    ]
    if (policy.network === 'host') args.push('--share-net')
    args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp')
    const readOnly = new Set<string>()
    for (const dir of [...SYSTEM_DIRS, ...ETC_FILES]) if (existsSync(dir)) readOnly.add(dir)
    for (const path of runtimePaths(spec)) readOnly.add(path)
    for (const path of narrowest(readOnly)) args.push('--ro-bind', path, path)
    args.push('--bind', scratch, scratch)
    for (const bind of policy.binds)
      args.push(bind.mode === 'rw' ? '--bind' : '--ro-bind', bind.path, bind.path)
    const cwd =
      spec.cwd !== undefined && policy.binds.some((b) => within(spec.cwd!, b.path)) ? spec.cwd : scratch
    args.push('--chdir', cwd, '--', spec.command, ...spec.args)
    return args
  }

  /** Removes the scratch root (the node is stopping). */
  dispose(): void {
    rmSync(this.#scratchRoot, { recursive: true, force: true })
  }
}

/**
 * What the launch itself needs to see: the executable's installation (for Node.js, its prefix), and for each
 * script argument what loading it reads: an installed package's `node_modules` (its hoisted dependencies live
 * there); for a script outside one, its folder, every `node_modules` its imports may resolve from (Node looks
 * in each folder up to the root), and the `package.json` that says its module type.
 */
function runtimePaths(spec: LaunchSpec): string[] {
  const paths: string[] = []
  const command = realpathSync(spec.command)
  paths.push(basename(dirname(command)) === 'bin' ? dirname(dirname(command)) : dirname(command))
  for (const arg of spec.args) {
    if (!isAbsolute(arg) || !existsSync(arg) || !statSync(arg).isFile()) continue
    const real = realpathSync(arg)
    const modules = enclosingNodeModules(real)
    if (modules !== undefined) {
      paths.push(modules)
      continue
    }
    paths.push(dirname(real))
    let packageJsonFound = false
    for (let dir = dirname(real); ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'node_modules'))) paths.push(join(dir, 'node_modules'))
      if (!packageJsonFound && existsSync(join(dir, 'package.json'))) {
        paths.push(join(dir, 'package.json'))
        packageJsonFound = true
      }
      if (dirname(dir) === dir) break
    }
  }
  return paths
}

/** The outermost `node_modules` folder a file is installed in, if any (hoisted dependencies live there). */
function enclosingNodeModules(file: string): string | undefined {
  const parts = file.split(sep)
  const at = parts.indexOf('node_modules')
  return at < 0 ? undefined : parts.slice(0, at + 1).join(sep)
}

/** Removes the scratch folders of node processes that ended without cleaning up (killed, crashed). */
function sweepStaleScratch(): void {
  try {
    for (const entry of readdirSync(tmpdir())) {
      const pid = /^nexus-sandbox-(\d+)-/.exec(entry)?.[1]
      if (pid === undefined || Number(pid) === process.pid || processAlive(Number(pid))) continue
      rmSync(join(tmpdir(), entry), { recursive: true, force: true })
    }
  } catch {
    // Nothing to sweep, or not ours.
  }
}

/** Drops paths that lie inside another path of the set (one bind covers them). */
function narrowest(paths: Set<string>): string[] {
  const sorted = [...paths].sort()
  return sorted.filter((path) => !sorted.some((other) => other !== path && within(path, other)))
}

function within(path: string, folder: string): boolean {
  return path === folder || path.startsWith(folder.endsWith(sep) ? folder : folder + sep)
}

/** Why this machine cannot sandbox, or undefined when it can (bubblewrap present, namespaces allowed). */
function sandboxProblem(): string | undefined {
  if (process.platform !== 'linux') return `the sandbox needs Linux (this is ${process.platform})`
  const probe = spawnSync('bwrap', ['--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', 'true'], {
    encoding: 'utf8',
    timeout: 10_000,
  })
  if (probe.error !== undefined) return 'bubblewrap (bwrap) is not installed'
  if (probe.status !== 0) return `bubblewrap cannot create namespaces here: ${probe.stderr.trim()}`
  if (spawnSync('prlimit', ['--version']).error !== undefined) return 'prlimit (util-linux) is not installed'
  return undefined
}
