import t from 'tap'
import { matchRoute } from '../gateway/routes.ts'

const url = (path: string) => new URL(path, 'http://gateway')

t.test('the route table names what each agent-facing path and method asks for', async (t) => {
  t.same(matchRoute('POST', url('/mcp/everything')), { route: { kind: 'mcp', serverId: 'everything' } })
  t.same(matchRoute('DELETE', url('/mcp/everything')), { route: { kind: 'mcp', serverId: 'everything' } })
  t.same(matchRoute('GET', url('/sse/memory')), { route: { kind: 'sse', serverId: 'memory' } })
  t.same(matchRoute('POST', url('/messages?sessionId=abc')), {
    route: { kind: 'legacy-messages', sessionId: 'abc' },
  })
  t.same(matchRoute('GET', url('/.well-known/oauth-protected-resource/mcp/x')), {
    route: { kind: 'resource-metadata' },
  })
})

t.test(
  'a known path with another method says which methods it takes; anything else matches nothing',
  async (t) => {
    t.same(matchRoute('PUT', url('/mcp/everything')), { notAllowed: ['GET', 'POST', 'DELETE'] })
    t.same(matchRoute('POST', url('/sse/memory')), { notAllowed: ['GET'] })
    t.equal(matchRoute('GET', url('/mcp/everything/extra')), undefined, 'no deeper paths')
    t.equal(matchRoute('GET', url('/mcp/')), undefined, 'a server id is required')
    t.equal(matchRoute('GET', url('/elsewhere')), undefined)
  },
)
