#!/usr/bin/env node
/**
 * Part of the test set-up (`npm test` runs it first): the image tests unpack the images `nexus onboard` builds
 * with `umoci` and run them with `runc`, the reference OCI runtime, as a cluster's kubelet would. Without
 * them it installs Debian's `runc` and `umoci` when it can (root, apt-get); otherwise it says how. It never
 * fails the command that ran it: the image tests say themselves that they cannot run.
 */
import { aptInstall, canAptInstall, hasCommand } from './apt-install.ts'

const missing = ['runc', 'umoci'].filter((command) => !hasCommand(command))
if (missing.length > 0 && process.platform === 'linux') {
  if (canAptInstall()) aptInstall(missing, 'running OCI images in the tests')
  const left = missing.filter((command) => !hasCommand(command))
  if (left.length > 0)
    process.stderr.write(
      `setup: ${left.join(' and ')} missing: the image tests will not run their images.\n` +
        `       Install them (Debian/Ubuntu: sudo apt-get install ${left.join(' ')}).\n`,
    )
}
