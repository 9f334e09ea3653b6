import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { Backoff } from './backoff.ts'
import { errorMessage, NexusError } from './errors.ts'
import type { NexusPeer } from './peer.ts'

const DIAL_TIMEOUT_MS = 10_000
/**
 * The longest wait between dials while this peer has no connection at all: alone, it has no other way into the
 * network, and waiting out a 60 s back-off after a few refused dials (many nodes starting at once) left it out
 * of the network for minutes.
 */
export const ISOLATED_RETRY_MS = 5_000

interface Target {
  address: Multiaddr
  peerId: PeerId
  backoff: Backoff
  timer: NodeJS.Timeout | undefined
  dialing: boolean
}

/**
 * Keeps this peer connected to its bootstrap peers: dials them at start, and redials one whenever its
 * connection drops (a restart, a network partition), with exponential back-off from 1 s to 60 s while it stays
 * unreachable (at most `ISOLATED_RETRY_MS` while this peer has no connection at all). Start does not fail when a
 * bootstrap peer is down; it keeps trying.
 */
export class BootstrapKeeper {
  readonly #peer: NexusPeer
  readonly #targets: Target[]
  readonly #logger: Logger | undefined
  #stopped = false
  readonly #onDisconnect = (evt: CustomEvent<PeerId>) => {
    const target = this.#targets.find((t) => t.peerId.equals(evt.detail))
    if (target !== undefined) this.#schedule(target, target.backoff.fail())
  }

  constructor(peer: NexusPeer, addresses: Multiaddr[], logger?: Logger) {
    this.#peer = peer
    this.#logger = logger
    this.#targets = addresses.map((address) => {
      const id = address.getComponents().findLast((c) => c.name === 'p2p')?.value
      if (id === undefined)
        throw new NexusError('INVALID_CONFIG', `bootstrap address ${address} must end with /p2p/<peer-id>`)
      return {
        address,
        peerId: peerIdFromString(id),
        backoff: new Backoff(1_000, 60_000),
        timer: undefined,
        dialing: false,
      }
    })
  }

  /** Dials every bootstrap peer once, concurrently; those that fail are retried in the background. */
  async start(): Promise<void> {
    this.#peer.addEventListener('peer:disconnect', this.#onDisconnect)
    await Promise.all(this.#targets.map((t) => this.#dial(t)))
  }

  /** Whether `peerId` is one of the bootstrap peers this keeper redials. */
  keeps(peerId: string): boolean {
    return this.#targets.some((t) => t.peerId.toString() === peerId)
  }

  stop(): void {
    this.#stopped = true
    this.#peer.removeEventListener('peer:disconnect', this.#onDisconnect)
    for (const target of this.#targets) clearTimeout(target.timer)
  }

  async #dial(target: Target): Promise<void> {
    if (this.#stopped || target.dialing) return
    target.dialing = true
    try {
      await this.#peer.dial(target.address, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      target.backoff.succeed()
    } catch (err) {
      const backoffMs = target.backoff.fail()
      const retryInMs =
        this.#peer.getConnections().length === 0 ? Math.min(backoffMs, ISOLATED_RETRY_MS) : backoffMs
      this.#logger?.warn(
        { address: target.address.toString(), retryInMs, err: errorMessage(err) },
        'bootstrap peer unreachable',
      )
      this.#schedule(target, retryInMs)
    } finally {
      target.dialing = false
    }
  }

  #schedule(target: Target, delayMs: number): void {
    if (this.#stopped) return
    clearTimeout(target.timer)
    target.timer = setTimeout(() => void this.#dial(target), delayMs)
    target.timer.unref()
  }
}
