import type { Logger } from 'pino'
import { errorMessage, NexusError } from '../protocol/errors.ts'
import { chainProvider } from './chain-provider.ts'
import { RegistryFollower } from './registry-follower.ts'
import {
  DEFAULT_CHAIN_ID,
  DEFAULT_CURATORS,
  DEFAULT_WHITELIST_PATH,
  type TrustConfig,
} from './trust-config.ts'
import { Whitelist } from './whitelist.ts'
import { readWhitelistFile } from './whitelist-file.ts'

export interface OpenedWhitelist {
  whitelist: Whitelist
  /** Stops following the registry; a no-op offline. */
  close(): Promise<void>
}

/**
 * Loads the whitelist a trust configuration names: a signed file checked against the configured curators, or
 * that file checked against a registry on chain and kept up to date with its events.
 */
export async function openWhitelist(config: TrustConfig, logger: Logger): Promise<OpenedWhitelist> {
  const path = config.whitelist ?? DEFAULT_WHITELIST_PATH
  const bundle = readWhitelistFile(path).manifests
  if (config.chainRpc === undefined || config.registry === undefined) {
    const whitelist = new Whitelist(
      bundle,
      {
        curators: config.curators ?? DEFAULT_CURATORS,
        chainId: config.chainId ?? DEFAULT_CHAIN_ID,
        threshold: config.threshold,
      },
      path,
    )
    logRefusals(whitelist, logger)
    return { whitelist, close: async () => {} }
  }
  const provider = chainProvider(config.chainRpc, config.pollIntervalMs)
  const follower = new RegistryFollower({
    provider,
    address: config.registry,
    pollIntervalMs: config.pollIntervalMs,
    logger,
  })
  let state: Awaited<ReturnType<RegistryFollower['start']>>
  try {
    state = await follower.start()
    if (config.chainId !== undefined && config.chainId !== state.chainId)
      throw new NexusError(
        'CHAIN_UNAVAILABLE',
        `${config.chainRpc} serves chain ${state.chainId}, the configuration expects chain ${config.chainId}`,
      )
  } catch (err) {
    await follower.stop()
    provider.destroy()
    throw err
  }
  const source = `registry ${config.registry} on chain ${state.chainId} (manifests from ${path})`
  const whitelist = new Whitelist(
    bundle,
    { curators: [], chainId: state.chainId, threshold: config.threshold },
    source,
    state,
  )
  logRefusals(whitelist, logger)
  follower.on('update', (next) => {
    try {
      // The signed manifests are read again: a version published since start brings its manifest there.
      let manifests = bundle
      try {
        manifests = readWhitelistFile(path).manifests
      } catch (err) {
        logger.warn(
          { err: errorMessage(err), path },
          'cannot read the signed manifests again; keeping those read before',
        )
      }
      whitelist.update(next, manifests)
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'cannot apply a registry update')
    }
  })
  whitelist.on('change', ({ added, removed }) => {
    for (const { manifest } of added)
      logger.info({ server: `${manifest.id}@${manifest.version}` }, 'whitelisted')
    for (const { entry, refusal } of removed)
      logger.warn(
        { server: `${entry.manifest.id}@${entry.manifest.version}`, reason: refusal.reason },
        'no longer whitelisted',
      )
  })
  logger.info({ source, block: state.block, active: whitelist.entries().length }, 'following the registry')
  return {
    whitelist,
    close: async () => {
      await follower.stop()
      provider.destroy()
    },
  }
}

function logRefusals(whitelist: Whitelist, logger: Logger): void {
  for (const [server, refusal] of whitelist.refusals())
    logger.debug({ server, code: refusal.code, reason: refusal.reason }, 'manifest not whitelisted')
}
