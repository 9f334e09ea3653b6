import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { HDNodeWallet, JsonRpcProvider, Mnemonic, Wallet } from 'ethers'
import { NexusError } from '../protocol/errors.ts'

/** The mnemonic anvil funds its dev accounts from (public; for local chains only). */
const ANVIL_MNEMONIC = 'test test test test test test test test test test test junk'

export interface LocalChain {
  url: string
  chainId: number
  provider: JsonRpcProvider
  /** A funded dev account of the chain; index 0 is the one anvil lists first. */
  wallet(index: number): Wallet
  stop(): Promise<void>
}

export interface LocalChainOptions {
  chainId?: number
  /** Seconds between blocks; by default a block is mined for every transaction. */
  blockTime?: number
  timeoutMs?: number
}

/** The anvil binary of `@foundry-rs/anvil`, which npm installs as a per-platform package. */
function anvilBinary(): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch
  const pkg = `@foundry-rs/anvil-${process.platform}-${arch}`
  try {
    const require = createRequire(import.meta.url)
    const dir = join(require.resolve(`${pkg}/package.json`), '..')
    return join(dir, 'bin', process.platform === 'win32' ? 'anvil.exe' : 'anvil')
  } catch {
    throw new NexusError('CHAIN_UNAVAILABLE', `anvil is not installed for this platform (${pkg})`)
  }
}

/**
 * Starts a real local EVM chain (anvil) on a free loopback port and waits until it answers. For tests and the
 * demo; `stop()` ends the process.
 */
export async function startLocalChain(options: LocalChainOptions = {}): Promise<LocalChain> {
  const args = ['--host', '127.0.0.1', '--port', '0', '--chain-id', String(options.chainId ?? 31337)]
  if (options.blockTime !== undefined) args.push('--block-time', String(options.blockTime))
  const child = spawn(anvilBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new NexusError('CHAIN_UNAVAILABLE', `anvil did not start in time:\n${output}`)),
      options.timeoutMs ?? 20_000,
    )
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const match = /Listening on (\S+:\d+)/.exec(output)
      if (match !== null) {
        clearTimeout(timer)
        resolve(`http://${match[1]}`)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new NexusError('CHAIN_UNAVAILABLE', `anvil exited with ${code}:\n${output}`))
    })
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(new NexusError('CHAIN_UNAVAILABLE', `anvil cannot start: ${err.message}`))
    })
  }).catch((err) => {
    child.kill('SIGKILL')
    throw err
  })
  // Keep draining its output so that a full pipe never blocks it.
  child.stdout.resume()
  child.stderr.resume()
  const provider = new JsonRpcProvider(url, undefined, {
    staticNetwork: true,
    pollingInterval: 100,
    cacheTimeout: -1,
  })
  const chainId = Number((await provider.getNetwork()).chainId)
  const mnemonic = Mnemonic.fromPhrase(ANVIL_MNEMONIC)
  return {
    url,
    chainId,
    provider,
    wallet: (index) => {
      const hd = HDNodeWallet.fromMnemonic(mnemonic, `m/44'/60'/0'/0/${index}`)
      return new Wallet(hd.privateKey, provider)
    },
    stop: () => stopChild(child, provider),
  }
}

async function stopChild(child: ChildProcess, provider: JsonRpcProvider): Promise<void> {
  provider.destroy()
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}
