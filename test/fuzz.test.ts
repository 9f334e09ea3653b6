import { readFileSync } from 'node:fs'
import { Interface, type JsonRpcProvider, type Log } from 'ethers'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { isNexusError } from '../protocol/errors.ts'
import { ANNOUNCE_TOPIC } from '../protocol/names.ts'
import { verifySignedManifest } from '../trust/manifest-signature.ts'
import { registryArtifact } from '../trust/registry-artifact.ts'
import { RegistryFollower } from '../trust/registry-follower.ts'
import { DEFAULT_CHAIN_ID, DEFAULT_CURATORS, DEFAULT_WHITELIST_PATH } from '../trust/trust-config.ts'
import { parseWhitelistFile } from '../trust/whitelist-file.ts'
import { textOf } from './support/clients.ts'
import {
  type FuzzTally,
  fuzzGossipAndDht,
  fuzzHostileNode,
  fuzzLegacySse,
  fuzzNodeStreams,
  fuzzStreamableHttp,
  inputFailures,
  startFuzzNetwork,
  startHostileNode,
} from './support/fuzz-boundaries.ts'
import { integer, mutateJson, pick } from './support/hostile-inputs.ts'
import { seededRandom } from './support/seeded-random.ts'
import { waitFor, withTimeout } from './support/wait.ts'

// Seeded fuzzing at every trust boundary of a real network (a gateway, two nodes, real libp2p, real servers)
// with a canary session calling a tool between rounds. The same seeds on every run; `npm run bench` (suite
// `fuzz`) runs many more inputs. Every boundary's invariants: no peer dies, no handler fails on an input
// (`*_input_failures_total` stays 0), nothing answers 500 or breaks a connection, the canary keeps working.

const SEED = Number(process.env.FUZZ_SEED ?? 19)
const { gateway, nodes, canary, attacker, stop } = await startFuzzNetwork()
t.teardown(stop)

const failures = () => inputFailures(gateway, nodes)

async function checkRound(t: Test, tally: FuzzTally): Promise<void> {
  t.ok(tally.inputs > 0, `${tally.boundary}: ${tally.inputs} inputs`)
  t.same(tally.unexpected, [], `${tally.boundary}: nothing unexpected came back`)
  t.equal(await failures(), 0, 'no handler failed on any input')
  const result = await canary.client.callTool({ name: 'test_simple_text', arguments: {} })
  t.match(textOf(result), /simple text/i, 'the canary session still works')
}

t.test('a malicious agent over streamable HTTP', async (t) => {
  await checkRound(t, await fuzzStreamableHttp(gateway, 'conformance', seededRandom(SEED), 150))
  await waitFor(() => gateway.sessions.size === 1, gateway, 'session-closed', 10_000, 'only the canary left')
  t.equal(gateway.inFlightBudget.total, 0, 'no request left waiting')
})

t.test('a malicious agent over legacy HTTP+SSE', async (t) => {
  await checkRound(t, await fuzzLegacySse(gateway, 'conformance', seededRandom(SEED + 1), 100))
})

t.test('a malicious gateway toward a node', async (t) => {
  const node = nodes[1]!
  const before = node.sessions.size
  await checkRound(t, await fuzzNodeStreams(attacker, node, 'conformance', seededRandom(SEED + 2), 120))
  await waitFor(
    () => node.sessions.size <= before,
    node,
    'session-closed',
    15_000,
    'the attacker sessions gone',
  )
})

t.test('a malicious node toward the gateway', async (t) => {
  const hostile = await startHostileNode(attacker, seededRandom(SEED + 3))
  await hostile.announce()
  await gateway.view.waitForServer('hostile', 10_000)
  await checkRound(t, await fuzzHostileNode(gateway, seededRandom(SEED + 4), 40))
  await attacker.unhandle('/nexus/mcp/1.0.0')
})

t.test('a malicious peer gossips hostile records and sends garbage on the DHT protocol', async (t) => {
  const pubsub = attacker.services.pubsub
  if (pubsub.getSubscribers(ANNOUNCE_TOPIC).length === 0)
    await withTimeout(
      new Promise<void>((resolve) => {
        const onChange = () => {
          if (pubsub.getSubscribers(ANNOUNCE_TOPIC).length === 0) return
          pubsub.removeEventListener('subscription-change', onChange)
          resolve()
        }
        pubsub.addEventListener('subscription-change', onChange)
      }),
      10_000,
      'the attacker to see subscribers',
    )
  const rejectedBefore = gateway.view.announcements.counts.rejected
  const victims = [gateway.peer.peerId.toString(), ...nodes.map((n) => n.peerId)]
  await checkRound(t, await fuzzGossipAndDht(attacker, victims, seededRandom(SEED + 5), 150))
  t.ok(gateway.view.announcements.counts.rejected > rejectedBefore, 'malformed records were rejected')
  t.equal(gateway.view.hostsOf('conformance').length, 2, 'both real hosts are still in the view')
})

t.test(
  'malformed manifests and whitelist files give UNTRUSTED_MANIFEST or INVALID_CONFIG, nothing else',
  async (t) => {
    const raw = JSON.parse(readFileSync(DEFAULT_WHITELIST_PATH, 'utf8')) as {
      manifests: Record<string, unknown>[]
    }
    const random = seededRandom(SEED + 6)
    const anchors = { curators: DEFAULT_CURATORS, chainId: DEFAULT_CHAIN_ID }
    let refused = 0
    for (let i = 0; i < 300; i++) {
      const signed = pick(random, raw.manifests)
      const mutated = mutateJson(
        random,
        random() < 0.5 ? signed : (signed.manifest as Record<string, unknown>),
        64 * 1024,
      )
      try {
        const file = parseWhitelistFile(
          { format: (raw as { format?: unknown }).format, manifests: [JSON.parse(mutated)] },
          'fuzz',
        )
        for (const manifest of file.manifests) verifySignedManifest(manifest, anchors)
      } catch (err) {
        if (err instanceof SyntaxError) continue
        if (!isNexusError(err))
          t.fail(`a ${(err as Error).name} escaped: ${(err as Error).message.slice(0, 200)}`)
        refused++
      }
    }
    t.ok(refused > 200, `${refused} of 300 mutated manifests refused with a typed error`)
  },
)

t.test(
  'registry events an endpoint garbles fail the read with CHAIN_UNAVAILABLE, never anything else',
  async (t) => {
    const random = seededRandom(SEED + 7)
    // The contract's own event topics, so that the follower tries to decode the garbled data under them.
    const topics: string[] = []
    new Interface(registryArtifact().abi).forEachEvent((event) => {
      topics.push(event.topicHash)
    })
    let typed = 0
    for (let i = 0; i < 60; i++) {
      const logs: Partial<Log>[] = Array.from({ length: integer(random, 1, 4) }, () => ({
        blockNumber: 5,
        address: '0x0000000000000000000000000000000000000001',
        topics: random() < 0.5 ? [pick(random, topics)] : [],
        data: `0x${Buffer.from(mutateJson(random, { a: 1 }, 2048)).toString('hex')}`,
        transactionHash: `0x${'00'.repeat(32)}`,
        index: 0,
      }))
      const provider = {
        getNetwork: async () => ({ chainId: 31337n }),
        getCode: async () => '0x60',
        getBlock: async () => ({ number: 5, hash: `0x${'11'.repeat(32)}` }),
        getLogs: async () => logs,
        call: async () => `0x${'0'.repeat(63)}1`,
        resolveName: async (name: string) => name,
      } as unknown as JsonRpcProvider
      const follower = new RegistryFollower({
        provider,
        address: '0x0000000000000000000000000000000000000001',
        pollIntervalMs: 60_000,
        logger: pino({ level: 'silent' }),
      })
      try {
        await follower.start()
      } catch (err) {
        if (!isNexusError(err))
          t.fail(`a ${(err as Error).name} escaped: ${(err as Error).message.slice(0, 200)}`)
        else if (/cannot be decoded/.test(err.message)) typed++
      } finally {
        await follower.stop()
      }
    }
    t.ok(
      typed > 30,
      `${typed} of 60 garbled registries failed the read as undecodable, the rest read as empty`,
    )
  },
)
