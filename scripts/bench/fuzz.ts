import { textOf } from '../../test/support/clients.ts'
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
} from '../../test/support/fuzz-boundaries.ts'
import { seededRandom } from '../../test/support/seeded-random.ts'
import { waitFor } from '../../test/support/wait.ts'
import { round } from './stats.ts'

const INPUTS = Number(process.env.BENCH_FUZZ_INPUTS ?? 2_000)
const SEED = Number(process.env.FUZZ_SEED ?? 1919)

export async function benchFuzz() {
  const { gateway, nodes, canary, attacker, stop } = await startFuzzNetwork()
  const serverProcesses = () =>
    nodes.reduce((sum, node) => sum + node.runtime.status().reduce((n, s) => n + (s.pids?.length ?? 0), 0), 0)
  globalThis.gc?.()
  const baseline = {
    serverProcesses: serverProcesses(),
    gatewaySessions: gateway.sessions.size,
    heapMiB: process.memoryUsage().heapUsed / 2 ** 20,
  }
  let canaryFailures = 0
  const rounds: (FuzzTally & { seconds: number; canaryOk: boolean })[] = []
  const round_ = async (run: () => Promise<FuzzTally>) => {
    const started = performance.now()
    const tally = await run()
    let canaryOk = true
    try {
      canaryOk = /simple text/i.test(
        textOf(await canary.client.callTool({ name: 'test_simple_text', arguments: {} })),
      )
    } catch {
      canaryOk = false
    }
    if (!canaryOk) canaryFailures++
    rounds.push({
      ...tally,
      unexpected: tally.unexpected.slice(0, 5),
      seconds: round((performance.now() - started) / 1000, 1),
      canaryOk,
    })
    process.stderr.write(
      `bench: fuzz ${tally.boundary}: ${tally.inputs} inputs, ${tally.unexpected.length} unexpected\n`,
    )
  }
  try {
    await round_(() => fuzzStreamableHttp(gateway, 'conformance', seededRandom(SEED), INPUTS))
    await round_(() => fuzzLegacySse(gateway, 'conformance', seededRandom(SEED + 1), INPUTS))
    await round_(() => fuzzNodeStreams(attacker, nodes[1]!, 'conformance', seededRandom(SEED + 2), INPUTS))
    const hostile = await startHostileNode(attacker, seededRandom(SEED + 3))
    await hostile.announce()
    await gateway.view.waitForServer('hostile', 10_000)
    await round_(() => fuzzHostileNode(gateway, seededRandom(SEED + 4), Math.ceil(INPUTS / 10)))
    await round_(() =>
      fuzzGossipAndDht(
        attacker,
        [gateway.peer.peerId.toString(), ...nodes.map((n) => n.peerId)],
        seededRandom(SEED + 5),
        INPUTS,
      ),
    )
    const handlerFailures = await inputFailures(gateway, nodes)
    // What the attacker opened ends by itself (deleted, timed out); measured once the sessions are back.
    const settled = await waitFor(
      () => gateway.sessions.size <= baseline.gatewaySessions,
      gateway,
      'session-closed',
      30_000,
    )
      .then(() =>
        Promise.all(nodes.map((n) => waitFor(() => n.sessions.size <= 1, n, 'session-closed', 30_000))),
      )
      .then(
        () => true,
        () => false,
      )
    globalThis.gc?.()
    return {
      seed: SEED,
      rounds,
      // The peers share this process: one that crashed would have ended the run, so a report means none did.
      peersAlive: [gateway.peer, ...nodes.map((n) => n.peer)].every((p) => p.status === 'started'),
      settled,
      handlerFailures,
      canaryFailures,
      before: { ...baseline, heapMiB: round(baseline.heapMiB, 1) },
      after: {
        serverProcesses: serverProcesses(),
        gatewaySessions: gateway.sessions.size,
        heapMiB: round(process.memoryUsage().heapUsed / 2 ** 20, 1),
      },
    }
  } finally {
    await stop()
  }
}
