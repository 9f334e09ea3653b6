import t from 'tap'
import { NexusNode } from '../node/nexus-node.ts'
import { hostAllowed } from '../node/runtime/sandbox/egress-proxy.ts'

// The sandbox's settings on a machine without one (bubblewrap hidden from PATH): `required` refuses to start
// the node, naming what is missing; `preferred` runs the servers unsandboxed. And the egress host patterns.

t.test('without bubblewrap: required refuses to start, preferred runs unsandboxed', async (t) => {
  const path = process.env.PATH
  process.env.PATH = '/nonexistent'
  t.teardown(() => {
    process.env.PATH = path
  })
  t.throws(
    () => new NexusNode({ sandbox: { mode: 'required' } }),
    /sandbox: required, but bubblewrap \(bwrap\) is not installed\. Install bubblewrap/,
  )
  const preferred = new NexusNode({ sandbox: { mode: 'preferred' } })
  t.match(preferred.runtime, { sandbox: 'none' }, 'preferred: the node runs, its servers unsandboxed')
  const unset = new NexusNode({})
  t.match(unset.runtime, { sandbox: 'none' }, 'unset: preferred where the machine cannot sandbox')
})

t.test('egress host patterns: exact names and addresses, *. for subdomains only', async (t) => {
  const allowed = ['api.github.com', '*.example.com', '10.0.0.1']
  t.ok(hostAllowed('api.github.com', allowed))
  t.ok(hostAllowed('API.GitHub.com', allowed), 'names compare case-insensitively')
  t.ok(hostAllowed('a.b.example.com', allowed))
  t.notOk(hostAllowed('example.com', allowed), '*.example.com is not example.com itself')
  t.notOk(hostAllowed('evilexample.com', allowed))
  t.notOk(hostAllowed('github.com', allowed))
  t.ok(hostAllowed('10.0.0.1', allowed))
  t.notOk(hostAllowed('10.0.0.2', allowed))
})
