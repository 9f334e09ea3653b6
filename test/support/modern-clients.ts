import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'

export const MODERN_SAMPLED_TEXT = 'sampled for a 2026-07-28 client'

/**
 * A client of the SDK's v2 line (revision 2026-07-28), pinned to that revision or in `auto` mode (it probes
 * with `server/discover`), answering sampling and elicitation as a person and a model would.
 */
export async function connectModern(
  url: string,
  mode: 'pinned' | 'auto' = 'pinned',
  headers?: Record<string, string>,
) {
  const client = new Client(
    { name: 'nexus-modern-test', version: '1.0.0' },
    {
      capabilities: { sampling: {}, elicitation: {} },
      versionNegotiation: { mode: mode === 'pinned' ? { pin: '2026-07-28' } : 'auto' },
    },
  )
  client.setRequestHandler('sampling/createMessage', async () => ({
    model: 'test-model',
    role: 'assistant',
    content: { type: 'text', text: MODERN_SAMPLED_TEXT },
  }))
  client.setRequestHandler('elicitation/create', async () => ({
    action: 'accept',
    content: { name: 'Ada Lovelace' },
  }))
  const transport = new StreamableHTTPClientTransport(
    new URL(url),
    headers === undefined ? undefined : { requestInit: { headers } },
  )
  await client.connect(transport)
  return client
}
