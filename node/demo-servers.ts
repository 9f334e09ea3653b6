import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import type { ServerConfigInput } from './config.ts'

export interface DemoServersOptions {
  /** The folder the filesystem server may touch; a fresh temporary one by default. */
  filesystemRoot?: string
  /** Where the memory server keeps its knowledge graph; a fresh temporary file by default. */
  memoryFile?: string
  warmPool?: number
}

/**
 * The four reference servers from npm that the demo network and the end-to-end tests host. They are whitelisted
 * by the embedded whitelist (`trust/default-whitelist.json`): their signed manifests say how they run; this
 * adds only the operator's part (where the memory server keeps its file, which folder the filesystem server
 * may touch).
 */
export function demoServers(options: DemoServersOptions = {}): ServerConfigInput[] {
  const scratch = mkdtempSync(join(tmpdir(), 'nexus-demo-'))
  const warmPool = options.warmPool ?? 1
  const memoryFile = options.memoryFile ?? join(scratch, 'memory.jsonl')
  const filesystemRoot = options.filesystemRoot ?? scratch
  // Each server sees only its own folder in its sandbox, read-write.
  return [
    { id: 'everything', warmPool },
    {
      id: 'memory',
      env: { MEMORY_FILE_PATH: memoryFile },
      binds: [{ path: dirname(memoryFile), mode: 'rw' }],
      warmPool,
    },
    { id: 'filesystem', args: [filesystemRoot], binds: [{ path: filesystemRoot, mode: 'rw' }], warmPool },
    { id: 'sequential-thinking', warmPool },
  ]
}

/** How each reference server's manifest is made: `npm run whitelist:default` signs them. */
export const DEMO_MANIFESTS = [
  { spec: '@modelcontextprotocol/server-everything', args: ['stdio'] },
  { spec: '@modelcontextprotocol/server-memory', env: ['MEMORY_FILE_PATH'] },
  { spec: '@modelcontextprotocol/server-filesystem', operatorArgs: true },
  { spec: '@modelcontextprotocol/server-sequential-thinking' },
] as const
