import { once } from 'node:events'
import type { Connection, Stream, StreamCloseEvent } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { asError, errorMessage } from './errors.ts'
import { FramedStream } from './framed-stream.ts'
import { encodeFrame } from './framing.ts'
import type { NexusPeer } from './peer.ts'

/**
 * The largest record one peer may hand another: gossipsub's own limit for a message. An announcement with its
 * 256 links is about 20 KB.
 */
export const MAX_DIRECT_RECORD_BYTES = 1024 * 1024
/** How long either side waits for the other: one frame, on a connection that is already open. */
export const DIRECT_RECORD_TIMEOUT_MS = 5_000
/**
 * Streams of a direct-record protocol a connection may carry at once, each way. A node hands a peer one record
 * at a time; a peer opening more is refused them (libp2p resets the stream) rather than holding them open.
 */
export const MAX_DIRECT_RECORD_STREAMS = 4

/**
 * Hands one record to one peer it is connected to, over a stream of its own: the record goes to that peer alone,
 * which neither forwards it nor sends it back. The connection's encryption authenticates the sender, so the
 * receiver needs no signature: it accepts only the sender's own records. Resolves true once the peer has read
 * the record and closed the stream; false when this peer is not connected to it (no new connection is dialled),
 * or the peer does not speak the protocol, refused the record or did not answer in time.
 */
export async function sendDirectRecord(
  peer: NexusPeer,
  peerId: string,
  protocol: string,
  data: Uint8Array,
  logger: Logger,
): Promise<boolean> {
  const connection = peer.getConnections(peerIdFromString(peerId)).find((c) => c.status === 'open')
  if (connection === undefined) return false
  const signal = AbortSignal.timeout(DIRECT_RECORD_TIMEOUT_MS)
  let stream: Stream | undefined
  try {
    stream = await connection.newStream(protocol, {
      signal,
      maxOutboundStreams: MAX_DIRECT_RECORD_STREAMS,
    })
    // The peer closes its end once it has taken the record, and resets the stream when it refuses it.
    const ended = once(stream, 'close', { signal })
    stream.send(encodeFrame(data))
    await stream.close({ signal })
    const [event] = (await ended) as [StreamCloseEvent]
    if (event.error !== undefined) throw event.error
    return true
  } catch (err) {
    stream?.abort(asError(err))
    logger.debug({ peerId, protocol, err: errorMessage(err) }, 'record not handed over')
    return false
  }
}

/**
 * Takes records handed over on `protocol`: one frame a stream, within `DIRECT_RECORD_TIMEOUT_MS` and
 * `MAX_DIRECT_RECORD_BYTES`, passed to `receive` with the sender's peer id (whom the connection authenticated).
 * `receive` returns false to refuse the record: the stream is then reset, which the sender sees as not handed.
 */
export async function handleDirectRecords(
  peer: NexusPeer,
  protocol: string,
  receive: (from: string, data: Uint8Array) => boolean,
  logger: Logger,
): Promise<void> {
  await peer.handle(
    protocol,
    (stream: Stream, connection: Connection) => readDirectRecord(stream, connection, receive, logger),
    { maxInboundStreams: MAX_DIRECT_RECORD_STREAMS },
  )
}

async function readDirectRecord(
  stream: Stream,
  connection: Connection,
  receive: (from: string, data: Uint8Array) => boolean,
  logger: Logger,
): Promise<void> {
  const from = connection.remotePeer.toString()
  const framed = new FramedStream(stream, { maxFrameBytes: MAX_DIRECT_RECORD_BYTES })
  let data: Uint8Array
  try {
    data = await framed.nextFrame(DIRECT_RECORD_TIMEOUT_MS)
  } catch (err) {
    logger.debug({ from, err: errorMessage(err) }, 'no record read from a direct stream')
    framed.abort(asError(err))
    return
  }
  if (receive(from, data)) await framed.close(DIRECT_RECORD_TIMEOUT_MS)
  else framed.abort(new Error('record refused'))
}
