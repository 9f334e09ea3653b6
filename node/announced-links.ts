/**
 * Which announcements carry the node's links (the peers it is connected to, for the gateways' network page).
 *
 * At 100 peers a node is connected to 60–80 others, and their ids were three quarters of every announcement:
 * bytes that every copy encrypts and every peer parses. Sending them only when the set changed was not enough:
 * peer exchange, the DHT and the topic-peer keeper open a connection somewhere about every 35 s per peer, so at a
 * 10 s interval most announcements still carried them (3.1 KB a record on average, the bench's count).
 *
 * Links are a picture of the network, not routing state, so they may lag: they go out with a node's first
 * announcement and those for newcomers (who have not seen them), and otherwise once `CHANGED_AFTER`
 * announcements have gone without them if they changed, or `REFRESH_AFTER` if they did not (for a gateway that
 * missed the last ones). At most one record in `CHANGED_AFTER` carries them. Receivers keep the last links they
 * saw (`NetworkView`).
 */
export const CHANGED_AFTER = 6
export const REFRESH_AFTER = 30

export class AnnouncedLinks {
  #sent: Set<string> | undefined
  #without = 0

  /** The links to put in this announcement, or undefined to leave them out. */
  next(current: string[], forNewcomers: boolean): string[] | undefined {
    const first = this.#sent === undefined
    if (!first && !forNewcomers) {
      this.#without++
      const changed = this.#sent!.size !== current.length || current.some((id) => !this.#sent!.has(id))
      if (this.#without < (changed ? CHANGED_AFTER : REFRESH_AFTER)) return undefined
    }
    this.#sent = new Set(current)
    this.#without = 0
    return current
  }
}
