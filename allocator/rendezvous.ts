/**
 * Rendezvous (highest random weight) hashing with a fast 32-bit mix: every peer ranks the nodes for a server in
 * the same order, and a node joining or leaving changes each server's ranking only where that node stands.
 * Not cryptographic, and need not be: ids are public and the ranking only spreads load.
 */

/** FNV-1a over the UTF-16 code units of a string. */
export function hashId(id: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** murmur3's finaliser: every input bit affects every output bit. */
function mix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** The weight of a node for a server, from their precomputed id hashes. */
export function weight(serverHash: number, nodeHash: number): number {
  return mix(serverHash ^ mix(nodeHash + 0x9e3779b9))
}

/**
 * Node indexes in descending weight for the server (ties, which need equal 32-bit weights, by index, i.e. by
 * node id order). Weight and index are packed into one float, exactly, so a native typed-array sort does it.
 */
export function rankNodes(serverHash: number, nodeHashes: Uint32Array, scratch: Float64Array): Float64Array {
  const n = nodeHashes.length
  const packed = scratch.subarray(0, n)
  for (let i = 0; i < n; i++) packed[i] = weight(serverHash, nodeHashes[i]!) * 1_048_576 + (1_048_575 - i)
  packed.sort()
  packed.reverse()
  return packed
}

export function rankedIndex(packed: number): number {
  return 1_048_575 - (packed % 1_048_576)
}
