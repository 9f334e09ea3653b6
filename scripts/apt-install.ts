import { spawnSync } from 'node:child_process'

/** Whether this machine lets the set-up install Debian packages itself: root, with apt-get. */
export function canAptInstall(): boolean {
  return (
    process.platform === 'linux' &&
    process.getuid?.() === 0 &&
    spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0
  )
}

/** Installs Debian packages, saying so; whether it worked is for the caller to check again. */
export function aptInstall(packages: string[], why: string): void {
  process.stderr.write(`setup: installing ${packages.join(', ')} (${why}) with apt-get…\n`)
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' })
  spawnSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'ignore' })
}

/** Whether a command is on PATH. */
export function hasCommand(command: string): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0
}
