import t from 'tap'
import { Namespacing } from '../gateway/unified/namespacing.ts'
import { mayUseVirtual, ToolView, VirtualServerSchema } from '../gateway/unified/virtual-servers.ts'

// The names of the unified endpoint map both ways without collisions, whatever the servers call things.

t.test('names split at the first separator; an id that contains it is not accepted', async (t) => {
  const names = new Namespacing('__')
  t.equal(names.qualify('memory', 'read__graph'), 'memory__read__graph')
  t.same(
    names.split('memory__read__graph'),
    { serverId: 'memory', name: 'read__graph' },
    'a tool may contain it',
  )
  t.notOk(names.accepts('my__server'), 'a server id may not')
  t.equal(names.split('noseparator'), undefined)
  t.equal(names.split('__leading'), undefined)
})

t.test(
  'resource URIs and templates: nexus:<id>:<uri>, split at the first colon after the prefix',
  async (t) => {
    const names = new Namespacing('__')
    const uri = names.qualifyUri('files', 'file:///a:b/{path}')
    t.equal(uri, 'nexus:files:file:///a:b/{path}')
    t.same(names.splitUri(uri), { serverId: 'files', uri: 'file:///a:b/{path}' })
    t.equal(names.splitUri('file:///x'), undefined, 'a URI this endpoint never gave out')
    t.equal(names.splitUri('nexus::x'), undefined)
  },
)

t.test('a virtual server filters, renames and decides who sees it', async (t) => {
  const definition = VirtualServerSchema.parse({
    servers: ['everything', 'memory'],
    tools: ['everything/echo', 'memory/*'],
    rename: { 'everything/echo': 'say' },
    scopes: ['team:a'],
    principals: ['key:bob'],
  })
  const view = new ToolView(definition)
  t.ok(view.includesTool('memory', 'anything'))
  t.notOk(view.includesTool('everything', 'add'))
  t.notOk(view.includesServer('filesystem'))
  t.equal(view.shownName('everything', 'echo', 'everything__echo'), 'say')
  t.same(view.renamed('say'), { serverId: 'everything', name: 'echo' })
  t.ok(mayUseVirtual(definition, { principal: 'key:alice', scopes: ['team:a'] }))
  t.ok(mayUseVirtual(definition, { principal: 'key:bob', scopes: [] }), 'a listed principal')
  t.notOk(mayUseVirtual(definition, { principal: 'key:carol', scopes: ['server:*'] }))
  t.ok(mayUseVirtual(definition, { principal: 'anonymous' }), 'unlimited scopes (a local demo) see it')
  t.ok(mayUseVirtual(VirtualServerSchema.parse({ servers: ['x'] }), { principal: 'key:carol', scopes: [] }))
})
