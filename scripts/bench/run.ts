#!/usr/bin/env node
/**
 * `npm run bench`: prints one JSON document on stdout with the results of each suite (`BENCH_SUITES`, default
 * all, in this order):
 * - `allocation`: allocator time for 10–1,000 nodes × 50–500 servers, churn when a node leaves or joins
 * - `throughput`: tools/call through gateway + node against the same server reached directly (`throughput.ts`)
 * - `latency`: one session's call latency on every path, interleaved round by round (`latency.ts`)
 * - `sessions`: 1,000 concurrent sessions held through one gateway, errors and memory (`sessions.ts`)
 * - `soak`: 10 minutes of calls while a node is killed, hung or partitioned every 20 s (`soak.ts`)
 * - `idle`: a node's and a gateway's CPU with nothing to do, as a share of one core (`idle.ts`)
 * - `shared`: memory per session on a stdio server shared (1,000 sessions) and one process per session (`shared.ts`)
 * - `overload`: bursts of 64, 256 and 1,000 new sessions on a stdio server: served, told to retry, p99 open (`overload.ts`)
 * - `failover`: node killed or hung → next successful call, over 20 trials each (`failover.ts`)
 * - `convergence`: announcement propagation in a 50-peer network, every peer in this process (`convergence.ts`)
 * - `gossip`: announcement delivery in 50- and 100-peer networks over TCP, peers in 4 processes (`gossip-scale.ts`)
 * - `slow-client`: memory a stalled client costs the gateway while its server floods it (`slow-client.ts`)
 * - `fuzz`: thousands of seeded hostile inputs at every trust boundary, with a canary session (`fuzz.ts`)
 * - `kubernetes`: 100 servers applied to a real kube-apiserver, steady-state API requests, watch recovery
 *   after API server restarts (`kubernetes.ts`)
 * - `sandbox`: server start-up and per-call latency and CPU, sandboxed and not (`sandbox.ts`)
 * - `onboarding`: the pipeline on the four reference servers from the public registry (`onboarding.ts`)
 */
import { cpus } from 'node:os'
import { runAllocationBench } from './allocation.ts'
import { benchConvergence } from './convergence.ts'
import { benchFailover } from './failover.ts'
import { benchFuzz } from './fuzz.ts'
import { benchGossip } from './gossip-scale.ts'
import { benchIdle } from './idle.ts'
import { benchKubernetes } from './kubernetes.ts'
import { benchLatency } from './latency.ts'
import { benchOnboarding } from './onboarding.ts'
import { benchOverload } from './overload.ts'
import { benchSandbox } from './sandbox.ts'
import { benchSessions } from './sessions.ts'
import { benchShared } from './shared.ts'
import { benchSlowClient } from './slow-client.ts'
import { benchSoak } from './soak.ts'
import { benchThroughput } from './throughput.ts'

const SUITES = {
  allocation: runAllocationBench,
  throughput: benchThroughput,
  latency: benchLatency,
  sessions: benchSessions,
  shared: benchShared,
  overload: benchOverload,
  idle: benchIdle,
  soak: benchSoak,
  failover: benchFailover,
  convergence: benchConvergence,
  gossip: benchGossip,
  'slow-client': benchSlowClient,
  fuzz: benchFuzz,
  kubernetes: benchKubernetes,
  sandbox: benchSandbox,
  onboarding: benchOnboarding,
} as const
type Suite = keyof typeof SUITES

const chosen = (process.env.BENCH_SUITES ?? Object.keys(SUITES).join(',')).split(',') as Suite[]
for (const suite of chosen)
  if (!(suite in SUITES))
    throw new Error(`unknown suite ${suite}: choose from ${Object.keys(SUITES).join(', ')}`)

process.env.NEXUS_LOG_LEVEL ??= 'silent'
const results: Partial<Record<Suite, unknown>> = {}
for (const suite of chosen) {
  const started = performance.now()
  process.stderr.write(`bench: ${suite}…\n`)
  results[suite] = await SUITES[suite]()
  process.stderr.write(`bench: ${suite} done in ${Math.round((performance.now() - started) / 1000)} s\n`)
}
process.stdout.write(`${JSON.stringify({ node: process.version, cpus: cpus().length, results }, null, 2)}\n`)
