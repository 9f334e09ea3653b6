#!/usr/bin/env node
/**
 * Builds what `npm pack` ships (its `prepack` step): Node.js strips types only outside `node_modules`, so an
 * installed copy needs JavaScript. TypeScript compiles the sources to `dist/` with declarations, rewriting
 * `.ts` imports to `.js`; the files read at run time (the default whitelist, the registry contract) are
 * copied beside them, and the commands are made executable.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, cpSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const dist = join(root, 'dist')
rmSync(dist, { recursive: true, force: true })
execFileSync(
  process.execPath,
  [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')],
  {
    stdio: 'inherit',
  },
)
for (const asset of ['trust/default-whitelist.json', 'trust/contracts'])
  cpSync(join(root, asset), join(dist, asset), { recursive: true })
for (const file of readdirSync(join(dist, 'cli')))
  if (file.endsWith('.js')) chmodSync(join(dist, 'cli', file), 0o755)
process.stdout.write(`built ${dist}\n`)
