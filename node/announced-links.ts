/**
 * Which announcements carry the node's links (the peers it is connected to, for the gateways' network page).
 *
 * At 100 peers a node is connected to 60–80 others, and their ids were three quarters of every announcement:
 * bytes that every copy encrypts and every peer parses, every interval, though the set seldom changes. They now
 * go out when the set changed since they last went out, with every announcement for newcomers (who have not
 * seen them), and every `REFRESH_EVERY`-th announcement (for a gateway that missed the last ones). Receivers
 * keep the last links they saw (`NetworkView`).
 */
export const REFRESH_EVERY = 5

export class AnnouncedLinks {
  #sent: Set<string> | undefined
  #sinceSent = 0

  /** The links to put in this announcement, or undefined to leave them out. */
  next(current: string[], forNewcomers: boolean): string[] | undefined {
    const changed =
      this.#sent === undefined ||
      this.#sent.size !== current.length ||
      current.some((id) => !this.#sent!.has(id))
    if (!changed && !forNewcomers && ++this.#sinceSent < REFRESH_EVERY) return undefined
    this.#sent = new Set(current)
    this.#sinceSent = 0
    return current
  }
}
