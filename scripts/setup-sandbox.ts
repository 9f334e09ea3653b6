#!/usr/bin/env node
/**
 * Part of the project's set-up (`npm start` and `npm test` run it first): makes sure this machine can run
 * server processes in sandboxes. On Linux without bubblewrap it installs Debian's `bubblewrap` when it can
 * (root, apt-get); otherwise it says how, and nodes run servers unsandboxed (`sandbox.mode: preferred`, the
 * default where the machine has no sandbox). It never fails the command that ran it.
 */
import { Sandbox } from '../node/runtime/sandbox/sandbox.ts'
import { aptInstall, canAptInstall } from './apt-install.ts'

function sandboxProblem(): string | undefined {
  const { sandbox, unavailable } = Sandbox.create('preferred')
  sandbox?.dispose()
  return sandbox === undefined ? unavailable : undefined
}

const problem = sandboxProblem()
if (problem !== undefined && process.platform === 'linux') {
  if (canAptInstall() && /not installed/.test(problem))
    aptInstall(['bubblewrap', 'util-linux'], 'server sandboxes')
  const left = sandboxProblem()
  if (left !== undefined)
    process.stderr.write(
      `setup: server processes will run WITHOUT a sandbox: ${left}.\n` +
        '       Install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap) to sandbox them.\n',
    )
}
