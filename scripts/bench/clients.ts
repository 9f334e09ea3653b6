import {
  Client as ModernClient,
  StreamableHTTPClientTransport as ModernTransport,
} from '@modelcontextprotocol/client'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'

/** What a benchmark client does: call a tool, and go away. Both SDK lines' clients have it. */
export interface BenchClient {
  callTool(params: { name: string; arguments: Record<string, unknown> }): Promise<unknown>
  close(): Promise<void>
}

/** Opens one MCP session over streamable HTTP. */
export async function openClient(url: string): Promise<Client> {
  const client = new Client({ name: 'bench', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(url)))
  return client
}

/** Opens `count` MCP sessions over streamable HTTP, `batch` at a time (each may start a server process). */
export async function openClients(url: string, count: number, batch = 8): Promise<Client[]> {
  const clients: Client[] = []
  try {
    for (let i = 0; i < count; i += batch) {
      const opened = await Promise.all(
        Array.from({ length: Math.min(batch, count - i) }, () => openClient(url)),
      )
      clients.push(...opened)
    }
  } catch (err) {
    await closeClients(clients)
    throw err
  }
  return clients
}

/** Ends each session (DELETE) so that the node frees its slot now rather than at the idle timeout. */
export async function closeClients(clients: Client[]): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      await (c.transport as StreamableHTTPClientTransport | undefined)?.terminateSession().catch(() => {})
      await c.close()
    }),
  )
}

/**
 * Opens `count` clients of the SDK's v2 line pinned to revision 2026-07-28: no session, every call a request of
 * its own (through Nexus, each is routed on its own and served by a node's era bridge).
 */
export async function openModernClients(url: string, count: number): Promise<ModernClient[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const client = new ModernClient(
        { name: 'bench-modern', version: '1.0.0' },
        { versionNegotiation: { mode: { pin: '2026-07-28' } } },
      )
      await client.connect(new ModernTransport(new URL(url)))
      return client
    }),
  )
}
