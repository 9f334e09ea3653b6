import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { posix, relative } from 'node:path'
import { resolvePackageBin } from '../../node/runtime/package-bin.ts'
import { createManifest } from '../manifest-create.ts'
import { advisoryChecks } from './advisories.ts'
import type { Candidate, Timed } from './candidate.ts'
import { IMAGE_SERVER_DIR } from './image/build-image.ts'
import { IMAGE_NODE } from './image/runtime-files.ts'
import { resolveNpm } from './npm-resolve.ts'
import type { OnboardOptions } from './onboard.ts'
import { staticChecks } from './static-checks.ts'

/** An npm server through the resolve and static stages: its tree installed with no scripts, then checked. */
export async function npmCandidate(
  options: OnboardOptions,
  workDir: string,
  timed: Timed,
): Promise<Candidate> {
  const resolved = await timed('resolve', () => resolveNpm(options.spec, workDir, options.registry))
  const findings = [
    ...resolved.findings,
    ...(await timed('static', async () => [
      ...staticChecks(resolved),
      ...(await advisoryChecks(resolved.tree, options.registry)),
    ])),
  ]
  const bin = resolvePackageBin(resolved.name, options.bin, [resolved.project])
  return {
    name: resolved.name,
    findings,
    launch: {
      command: process.execPath,
      args: [bin.binPath, ...(options.args ?? [])],
      env: { PATH: process.env.PATH ?? '' },
      cwd: undefined,
    },
    binds: [],
    // The whole project (package.json, lockfile, node_modules) becomes the image's server folder.
    image: {
      tree: { from: resolved.project, to: IMAGE_SERVER_DIR },
      python: false,
      launch: {
        command: IMAGE_NODE,
        args: [posix.join(IMAGE_SERVER_DIR, relative(resolved.project, bin.binPath))],
        env: {},
      },
    },
    dependencies: {
      packages: resolved.tree.length,
      lockfileSha256: createHash('sha256').update(readFileSync(resolved.lockfile)).digest('hex'),
      installScripts: resolved.tree
        .filter((p) => p.installScripts.length > 0)
        .map((p) => `${p.name}@${p.version}`),
      tree: resolved.tree.map(({ name, version, integrity }) => ({ name, version, integrity })),
    },
    manifest: ({ id, memoryMiB, notes }) =>
      createManifest(options.spec, {
        id,
        bin: options.bin,
        args: options.args,
        env: options.env,
        operatorArgs: options.operatorArgs,
        memoryMiB,
        searchFrom: [resolved.project],
        notes,
      }),
  }
}
