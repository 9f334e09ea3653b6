const NEWLINE = 0x0a
const CARRIAGE_RETURN = 0x0d

/**
 * Splits a byte stream into newline-delimited messages without decoding them, so relaying a stdio server's
 * output costs no string conversions. Lines longer than `maxLineBytes` are reported and discarded.
 */
export class LineSplitter {
  readonly #maxLineBytes: number
  #pending: Buffer[] = []
  #pendingBytes = 0
  #discarding = false

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes
  }

  /** Returns the complete lines in `chunk` (without terminators); `onOversized` hears of dropped ones. */
  push(chunk: Buffer, onOversized: (bytes: number) => void): Uint8Array[] {
    const lines: Uint8Array[] = []
    let start = 0
    for (let index = chunk.indexOf(NEWLINE); index !== -1; index = chunk.indexOf(NEWLINE, start)) {
      const tail = chunk.subarray(start, index)
      start = index + 1
      if (this.#discarding || this.#pendingBytes + tail.byteLength > this.#maxLineBytes) {
        onOversized(this.#pendingBytes + tail.byteLength)
        this.#reset()
        continue
      }
      const line = this.#pendingBytes === 0 ? tail : Buffer.concat([...this.#pending, tail])
      this.#reset()
      const end =
        line.byteLength > 0 && line[line.byteLength - 1] === CARRIAGE_RETURN
          ? line.byteLength - 1
          : line.byteLength
      if (end > 0) lines.push(line.subarray(0, end))
    }
    if (start < chunk.byteLength) {
      const rest = chunk.subarray(start)
      this.#pendingBytes += rest.byteLength
      if (this.#pendingBytes > this.#maxLineBytes) {
        this.#discarding = true
        this.#pending = []
      } else {
        // Copy: the child process's chunk buffer may be reused after this callback.
        this.#pending.push(Buffer.from(rest))
      }
    }
    return lines
  }

  #reset(): void {
    this.#pending = []
    this.#pendingBytes = 0
    this.#discarding = false
  }
}
