import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ServerConfigInput } from './config.ts'

export interface DemoServersOptions {
  /** The folder the filesystem server may touch; a fresh temporary one by default. */
  filesystemRoot?: string
  /** Where the memory server keeps its knowledge graph; a fresh temporary file by default. */
  memoryFile?: string
  warmPool?: number
}

/** The four reference servers from npm that the demo network and the end-to-end tests host. */
export function demoServers(options: DemoServersOptions = {}): ServerConfigInput[] {
  const scratch = mkdtempSync(join(tmpdir(), 'nexus-demo-'))
  const warmPool = options.warmPool ?? 1
  return [
    {
      id: 'everything',
      transport: 'stdio',
      package: '@modelcontextprotocol/server-everything',
      args: ['stdio'],
      warmPool,
    },
    {
      id: 'memory',
      transport: 'stdio',
      package: '@modelcontextprotocol/server-memory',
      env: { MEMORY_FILE_PATH: options.memoryFile ?? join(scratch, 'memory.jsonl') },
      warmPool,
    },
    {
      id: 'filesystem',
      transport: 'stdio',
      package: '@modelcontextprotocol/server-filesystem',
      args: [options.filesystemRoot ?? scratch],
      warmPool,
    },
    {
      id: 'sequential-thinking',
      transport: 'stdio',
      package: '@modelcontextprotocol/server-sequential-thinking',
      warmPool,
    },
  ]
}
