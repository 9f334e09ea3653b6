import type { Logger } from 'pino'
import { decodeJsonBounded } from '../protocol/bounded-json.ts'
import { errorMessage } from '../protocol/errors.ts'
import type { FramedStream } from '../protocol/framed-stream.ts'
import { errorResponse, JsonRpcCode, NexusRpcCode } from '../protocol/rpc-codes.ts'
import type { OpenSession } from '../protocol/session-handshake.ts'
import type { ToolDrift } from '../trust/onboarding/tool-digest.ts'
import type { ModernRequest } from './era-bridge/bridge-session.ts'
import type { EraBridge } from './era-bridge/era-bridge.ts'
import { describeDrift, type ToolPins } from './tool-pins.ts'

/**
 * One modern-era request on a stream the gateway opened with `era: modern`: reads the request, serves it
 * through the era bridge, sends its notifications and its answer. Then, when `keep` (the gateway asked and the
 * node agreed), it leaves the stream open for the next request's `open` and resolves true; otherwise it ends
 * the stream. The gateway closing the stream before the answer is the client's cancellation, passed on to the
 * server.
 */
export async function serveModernRequest(
  open: OpenSession,
  framed: FramedStream,
  bridge: EraBridge,
  timeoutMs: number,
  logger: Logger,
  tools?: { pins: ToolPins; onDrift: (drift: ToolDrift) => void },
  keep = false,
): Promise<boolean> {
  let answered = false
  let cancel: ((reason: string) => void) | undefined
  const ended = Promise.withResolvers<void>()
  framed.onEnd(() => {
    if (!answered) cancel?.('the client closed the request')
    ended.resolve()
  })
  let request: ModernRequest
  try {
    const parsed = decodeJsonBounded(await framed.nextFrame(timeoutMs))
    const value = (parsed.ok ? parsed.value : undefined) as Partial<ModernRequest> | undefined
    if (value === undefined || typeof value.method !== 'string' || value.id === undefined)
      throw new Error(parsed.ok ? 'the frame is not a JSON-RPC request' : parsed.message)
    request = value as ModernRequest
  } catch (err) {
    logger.debug({ err: errorMessage(err) }, 'bad modern request frame')
    if (framed.writable)
      framed.sendJson({
        jsonrpc: '2.0',
        id: null,
        error: { code: JsonRpcCode.InvalidRequest, message: `Invalid Request: ${errorMessage(err)}` },
      })
    await framed.close()
    return false
  }
  const done = Promise.withResolvers<void>()
  cancel = await bridge.handle(open.serverId, request, {
    notify: (message) => {
      if (!answered && framed.writable) framed.sendJson(message)
    },
    respond: (message) => {
      if (answered) return
      answered = true
      // A tools/list answer is held to the manifest's pins, as on a legacy session.
      const drift = request.method === 'tools/list' ? tools?.pins.check(message.result) : undefined
      if (drift !== undefined) {
        tools!.onDrift(drift)
        message = errorResponse(
          request.id,
          NexusRpcCode.ToolsChanged,
          `Tools changed: the server's tools differ from its signed manifest (${describeDrift(drift)}); it is withdrawn from this node`,
        ) as typeof message
      }
      if (framed.writable) framed.sendJson(message)
      done.resolve()
    },
  })
  await Promise.race([done.promise, ended.promise])
  if (keep && answered && framed.writable && !framed.ended) {
    framed.detach()
    return true
  }
  await framed.close()
  return false
}
