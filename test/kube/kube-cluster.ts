import { type ChildProcess, spawn } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { KubeApi, type KubeObject } from '../../node/runtime/kubernetes/kube-api.ts'
import { freePort } from '../../node/runtime/ports.ts'
import { ensureHarness } from './harness-build.ts'

/**
 * A real Kubernetes control plane for tests: etcd and kube-apiserver (from `kube-harness`, built from their Go
 * modules) on loopback, with RBAC, admission (PodSecurity included), server-side apply, watches and
 * ServiceAccount tokens all genuine. No kubelet or controllers run: the tests play their part explicitly
 * (`ClusterActor`). The API server can be stopped and started again on the same port and data.
 */
export class KubeCluster {
  readonly dir: string
  readonly adminToken = randomBytes(24).toString('hex')
  readonly #binary: string
  readonly #etcdPort: number
  readonly #etcdPeerPort: number
  readonly apiPort: number
  #etcd: ChildProcess | undefined
  #apiserver: ChildProcess | undefined
  #apiserverLog = ''

  private constructor(binary: string, dir: string, ports: number[]) {
    this.#binary = binary
    this.dir = dir
    ;[this.#etcdPort, this.#etcdPeerPort, this.apiPort] = ports as [number, number, number]
  }

  static async start(): Promise<KubeCluster> {
    const binary = await ensureHarness()
    const dir = mkdtempSync(join(tmpdir(), 'nexus-kube-'))
    const cluster = new KubeCluster(binary, dir, await Promise.all([freePort(), freePort(), freePort()]))
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }))
    writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }))
    writeFileSync(
      join(dir, 'tokens.csv'),
      `${cluster.adminToken},nexus-test-admin,nexus-test-admin,"system:masters"\n`,
    )
    try {
      await cluster.#startEtcd()
      await cluster.startApiServer()
    } catch (err) {
      await cluster.stop()
      throw err
    }
    return cluster
  }

  /** The API server's process id while it runs (for CPU figures). */
  get apiServerPid(): number | undefined {
    return this.#apiserver?.pid
  }

  get server(): string {
    return `https://127.0.0.1:${this.apiPort}`
  }

  /** A kubeconfig file for `token` (the admin's by default), trusting the API server's own certificate. */
  kubeconfig(token = this.adminToken, name = 'admin'): string {
    const ca = readFileSync(join(this.dir, 'certs', 'apiserver.crt')).toString('base64')
    const path = join(this.dir, `kubeconfig-${name}.yaml`)
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'test', cluster: { server: this.server, 'certificate-authority-data': ca } }],
        users: [{ name, user: { token } }],
        contexts: [{ name: 'test', context: { cluster: 'test', user: name } }],
        'current-context': 'test',
      }),
    )
    return path
  }

  /** An API client with the admin's rights, for the tests' own cluster work. */
  admin(): Promise<KubeApi> {
    return KubeApi.connect({ kubeconfig: this.kubeconfig() })
  }

  /** A token of a ServiceAccount, from the API server's TokenRequest (as a pod would have it mounted). */
  async serviceAccountToken(namespace: string, name: string): Promise<string> {
    const admin = await this.admin()
    const request = await admin.create<KubeObject & { status: { token: string } }>(
      { apiVersion: 'v1', plural: `serviceaccounts/${name}/token` },
      namespace,
      {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        metadata: { name },
        spec: { expirationSeconds: 3600 },
      },
    )
    return request.status.token
  }

  async startApiServer(): Promise<void> {
    if (this.#apiserver !== undefined) return
    this.#apiserverLog = ''
    const proc = spawn(
      this.#binary,
      [
        'kube-apiserver',
        `--etcd-servers=http://127.0.0.1:${this.#etcdPort}`,
        `--secure-port=${this.apiPort}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--cert-dir=${join(this.dir, 'certs')}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        '--service-account-issuer=https://kubernetes.default.svc',
        `--service-account-key-file=${join(this.dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(this.dir, 'sa.key')}`,
        `--token-auth-file=${join(this.dir, 'tokens.csv')}`,
        '--authorization-mode=RBAC',
        '--enable-priority-and-fairness=false',
        // The kubernetes Service's endpoints would name this loopback address, which Endpoints refuse.
        '--endpoint-reconciler-type=none',
        '--v=0',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    proc.stderr!.on('data', (chunk: Buffer) => {
      this.#apiserverLog = (this.#apiserverLog + chunk.toString()).slice(-8_000)
    })
    this.#apiserver = proc
    await this.#waitReady(proc, 120_000)
  }

  /**
   * Stops the API server (etcd keeps the state); `startApiServer()` brings it back on the same port. It is
   * killed, as a crash or a lost control plane would end it: a graceful stop waits about 30 s for open watches.
   */
  async stopApiServer(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.#apiserver
    this.#apiserver = undefined
    if (proc === undefined || proc.exitCode !== null) return
    proc.kill(signal)
    await once(proc, 'exit')
  }

  async stop(): Promise<void> {
    await this.stopApiServer('SIGKILL')
    const etcd = this.#etcd
    this.#etcd = undefined
    if (etcd !== undefined && etcd.exitCode === null) {
      etcd.kill('SIGTERM')
      await once(etcd, 'exit')
    }
    rmSync(this.dir, { recursive: true, force: true })
  }

  async #startEtcd(): Promise<void> {
    const client = `http://127.0.0.1:${this.#etcdPort}`
    const peer = `http://127.0.0.1:${this.#etcdPeerPort}`
    const proc = spawn(
      this.#binary,
      [
        'etcd',
        '--name=nexus-test',
        `--data-dir=${join(this.dir, 'etcd')}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=nexus-test=${peer}`,
        '--unsafe-no-fsync',
        '--log-level=error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    let log = ''
    proc.stderr!.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4_000)
    })
    this.#etcd = proc
    const deadline = Date.now() + 30_000
    // etcd says nothing at log level error; its health endpoint tells when it serves.
    for (let wait = 20; ; wait = Math.min(wait * 2, 500)) {
      if (proc.exitCode !== null) throw new Error(`etcd exited (${proc.exitCode}):\n${log}`)
      const healthy = await fetch(`${client}/health`).then(
        (r) => r.ok,
        () => false,
      )
      if (healthy) return
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy:\n${log}`)
      await delay(wait)
    }
  }

  /** Waits until `/readyz` answers 200 (the API server's own post-start hooks done). */
  async #waitReady(proc: ChildProcess, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const exited = once(proc, 'exit')
    for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
      if (proc.exitCode !== null)
        throw new Error(`kube-apiserver exited (${proc.exitCode}):\n${this.#apiserverLog}`)
      if (await this.#ready()) return
      if (Date.now() > deadline)
        throw new Error(`kube-apiserver was not ready in time:\n${this.#apiserverLog}`)
      await Promise.race([delay(wait), exited])
    }
  }

  async #ready(): Promise<boolean> {
    try {
      const api = await this.admin()
      await api.list({ apiVersion: 'v1', plural: 'serviceaccounts' }, 'default')
      return true
    } catch {
      return false
    }
  }
}
