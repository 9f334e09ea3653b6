import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { StdioServerConfigSchema, WhitelistedServerSchema } from '../node/config.ts'
import { launchFromManifest } from '../node/hosted-servers.ts'
import { withImageLaunch } from '../node/pod-host/image-launch.ts'
import { IMAGE_LAUNCH_COMMAND, POD_LAUNCH_ENV } from '../node/runtime/kubernetes/workload.ts'
import { parseManifest } from '../protocol/manifest.ts'
import { FileTree } from '../trust/onboarding/image/file-tree.ts'
import { tarStream } from '../trust/onboarding/image/tar-stream.ts'

// The pieces of containerization that need no OCI runtime: the reproducible tar every layer is, the file
// tree's refusals, the manifest's `image`, how a node launches a server from an image, and the pod host's
// reading of an image's launch — each failure with a message that names the problem.

const scratch = mkdtempSync(join(tmpdir(), 'nexus-image-build-'))
const settings = WhitelistedServerSchema.parse({ id: 'time' })
const IMAGE = `oci:registry.example/team/time@sha256:${'a'.repeat(64)}`
const pypiManifest = (extra: Record<string, unknown> = {}) =>
  parseManifest({
    id: 'time',
    version: '2026.10.19',
    package: 'pypi:mcp-server-time==2026.10.19',
    transport: 'stdio',
    pythonLock: [`mcp-server-time==2026.10.19 --hash=sha256:${'b'.repeat(64)}`],
    ...extra,
  })

async function tarBytes(tree: FileTree): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of Readable.from(tarStream(tree))) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

t.test(
  'a layer is a tar that GNU tar reads: root-owned, time 0, normalized modes, long names kept',
  async (t) => {
    const host = join(scratch, 'host')
    mkdirSync(host)
    writeFileSync(join(host, 'script.sh'), '#!/bin/sh\n', { mode: 0o700 })
    writeFileSync(join(host, 'data.txt'), 'data', { mode: 0o600 })
    const tree = new FileTree()
    tree.file('bin/script.sh', join(host, 'script.sh'), 0o700)
    tree.file('share/data.txt', join(host, 'data.txt'), 0o600)
    const longName = `deep/${'x'.repeat(120)}/file.txt`
    tree.data(longName, 'long')
    tree.symlink('lib', 'usr/lib')
    tree.dir('tmp', 0o1777)
    const bytes = await tarBytes(tree)
    t.same(bytes, await tarBytes(tree), 'the same tree gives the same bytes')
    const archive = join(scratch, 'layer.tar')
    writeFileSync(archive, bytes)
    const listing = execFileSync('tar', ['-tvf', archive, '--numeric-owner', '--full-time'], {
      encoding: 'utf8',
    })
    t.match(listing, /-rwxr-xr-x 0\/0\s+10 1970-01-01 00:00:00 bin\/script\.sh/, 'executables are 0755')
    t.match(
      listing,
      /-rw-r--r-- 0\/0\s+4 1970-01-01 00:00:00 share\/data\.txt/,
      'others are 0644, owned by root',
    )
    t.match(listing, /lrwxrwxrwx 0\/0\s+0 1970-01-01 00:00:00 lib -> usr\/lib/)
    t.match(listing, /drwxrwxrwt 0\/0\s+0 1970-01-01 00:00:00 tmp\//, '/tmp is sticky and writable')
    t.ok(listing.includes(longName), 'a path over 100 bytes survives through a PAX header')
    const out = join(scratch, 'out')
    mkdirSync(out)
    execFileSync('tar', ['-xf', archive, '-C', out])
    t.equal(execFileSync('cat', [join(out, longName)], { encoding: 'utf8' }), 'long')
  },
)

t.test(
  'host paths are mirrored with every link on the way; a path added twice in two shapes is refused',
  async (t) => {
    const root = join(scratch, 'mirror')
    mkdirSync(join(root, 'usr', 'lib'), { recursive: true })
    writeFileSync(join(root, 'usr', 'lib', 'libx.so.1'), 'elf')
    symlinkSync('usr/lib', join(root, 'lib'))
    const tree = new FileTree()
    tree.hostPath(join(root, 'lib', 'libx.so.1'))
    const entries = new Map(tree.sorted())
    t.match(entries.get(join(root, 'lib').slice(1)), { type: 'symlink', target: 'usr/lib' })
    t.match(entries.get(join(root, 'usr', 'lib', 'libx.so.1').slice(1)), { type: 'file' })
    tree.data('etc/a', 'x')
    t.throws(
      () => tree.symlink('etc/a', 'b'),
      /the image path \/etc\/a is added twice, as a data and as a symlink/,
    )
    t.throws(() => tree.hostPath(join(root, 'missing')), /ENOENT/)
  },
)

t.test("a manifest's image is an oci: reference by digest, for npm and PyPI packages only", async (t) => {
  t.equal(pypiManifest({ image: IMAGE }).image, IMAGE)
  t.throws(() => pypiManifest({ image: 'oci:registry.example/team/time:latest' }), /oci:<repository>@sha256/)
  t.throws(
    () =>
      parseManifest({
        id: 'x',
        version: '1.0.0',
        package: `oci:registry.example/x@sha256:${'c'.repeat(64)}`,
        transport: 'stdio',
        command: ['x'],
        image: IMAGE,
      }),
    /an OCI package is its own image/,
  )
})

t.test(
  'a node on a runtime of images runs the built image; a PyPI manifest without one is refused',
  async (t) => {
    const fromImage = launchFromManifest(pypiManifest({ image: IMAGE }), settings, true)
    t.match(
      fromImage,
      { command: IMAGE_LAUNCH_COMMAND, args: [] },
      'the pod host runs the launch the image carries',
    )
    t.throws(
      () => launchFromManifest(pypiManifest(), settings, true),
      /a PyPI package runs in a cluster from the image nexus onboard built \(its manifest has none\)/,
    )
    t.throws(() => launchFromManifest(pypiManifest(), settings, false), /its PyPI package is not installed/)
  },
)

t.test("the pod host reads an image's launch, and says what is wrong with it", async (t) => {
  const server = StdioServerConfigSchema.parse({
    id: 'time',
    transport: 'stdio',
    command: IMAGE_LAUNCH_COMMAND,
    args: ['--operator-arg'],
    env: { TZ: 'UTC' },
  })
  const file = join(scratch, 'launch.json')
  writeFileSync(
    file,
    JSON.stringify({
      command: '/usr/local/bin/python3',
      args: ['-c', 'main()'],
      env: { PYTHONPATH: '/srv' },
    }),
  )
  t.match(withImageLaunch(server, { [POD_LAUNCH_ENV]: file }), {
    command: '/usr/local/bin/python3',
    args: ['-c', 'main()', '--operator-arg'],
    env: { PYTHONPATH: '/srv', TZ: 'UTC' },
  })
  const plain = StdioServerConfigSchema.parse({ id: 'x', transport: 'stdio', command: 'node' })
  t.equal(withImageLaunch(plain, {}), plain, 'a server with its own command is left alone')
  t.throws(
    () => withImageLaunch(server, {}),
    /this image has no NEXUS_POD_LAUNCH \(it was not built by nexus onboard\)/,
  )
  t.throws(
    () => withImageLaunch(server, { [POD_LAUNCH_ENV]: join(scratch, 'nowhere.json') }),
    /cannot read the image's launch .*nowhere\.json/,
  )
  writeFileSync(file, JSON.stringify({ args: [] }))
  t.throws(
    () => withImageLaunch(server, { [POD_LAUNCH_ENV]: file }),
    /is not a launch \(command, args, env\)/,
  )
})
