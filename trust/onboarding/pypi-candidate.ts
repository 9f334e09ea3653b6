import { createHash } from 'node:crypto'
import { chooseScript, consoleScripts } from '../../node/runtime/python-package.ts'
import type { Candidate, Timed } from './candidate.ts'
import { IMAGE_SERVER_DIR } from './image/build-image.ts'
import { IMAGE_PYTHON } from './image/runtime-files.ts'
import type { OnboardOptions } from './onboard.ts'
import { pypiAdvisories, resolvePypi } from './pypi-resolve.ts'
import { pythonStaticChecks } from './static-checks.ts'

/** A PyPI server through the resolve and static stages: its tree installed with pip and hashed, then checked. */
export async function pypiCandidate(
  options: OnboardOptions,
  workDir: string,
  timed: Timed,
): Promise<Candidate> {
  const resolved = await timed('resolve', () => resolvePypi(options.spec, workDir))
  const script = chooseScript(consoleScripts(resolved.site, resolved.name), resolved.name, options.bin)
  const main = `import sys; from ${script.module} import ${script.func} as main; sys.exit(main())`
  const findings = [
    ...resolved.findings,
    ...(await timed('static', async () => [
      ...pythonStaticChecks(resolved, script.module),
      ...(await pypiAdvisories(resolved.tree)),
    ])),
  ]
  return {
    name: resolved.name,
    findings,
    // As a node runs it (see `node/runtime/python-package.ts`): its console script, its tree on PYTHONPATH.
    launch: {
      command: resolved.python,
      args: ['-c', main, ...(options.args ?? [])],
      env: { PATH: process.env.PATH ?? '', PYTHONPATH: resolved.site, PYTHONDONTWRITEBYTECODE: '1' },
      cwd: undefined,
    },
    binds: [{ path: resolved.site, mode: 'ro' }],
    image: {
      tree: { from: resolved.site, to: `${IMAGE_SERVER_DIR}/python` },
      python: true,
      launch: {
        command: IMAGE_PYTHON,
        args: ['-c', main],
        env: { PYTHONPATH: `${IMAGE_SERVER_DIR}/python`, PYTHONDONTWRITEBYTECODE: '1' },
      },
    },
    dependencies: {
      packages: resolved.tree.length,
      lockfileSha256: createHash('sha256')
        .update(`${resolved.lock.join('\n')}\n`)
        .digest('hex'),
      // Wheels run no code when installed; a source distribution would have shown as built by pip.
      installScripts: [],
      tree: resolved.tree.map(({ name, version, sha256 }) => ({
        name,
        version,
        integrity: `sha256:${sha256}`,
      })),
    },
    manifest: async ({ id, memoryMiB, notes }) => ({
      id,
      version: resolved.version,
      package: `pypi:${resolved.name}==${resolved.version}`,
      transport: 'stdio',
      ...(options.bin === undefined ? {} : { bin: options.bin }),
      args: options.args ?? [],
      operatorArgs: options.operatorArgs ?? false,
      env: options.env ?? [],
      resources: { cpu: 0.25, memoryMiB },
      pythonLock: resolved.lock,
      notes,
    }),
  }
}
