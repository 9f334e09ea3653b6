import { JsonRpcProvider } from 'ethers'

/**
 * A JSON-RPC connection to a chain. Response caching is off: ethers otherwise answers a repeated
 * `eth_getTransactionCount` within 250 ms from its cache, and two transactions in a row reuse a nonce.
 */
export function chainProvider(url: string, pollingIntervalMs: number): JsonRpcProvider {
  return new JsonRpcProvider(url, undefined, { pollingInterval: pollingIntervalMs, cacheTimeout: -1 })
}
