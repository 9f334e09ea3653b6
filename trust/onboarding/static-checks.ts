import { readdirSync, readFileSync, statSync } from 'node:fs'
import { extname, join, relative } from 'node:path'
import type { Finding } from './findings.ts'
import type { LockedPackage, ResolvedNpm } from './npm-resolve.ts'
import type { ResolvedPypi } from './pypi-resolve.ts'

/** Secrets that should never ship in a package: each pattern names what it finds. */
const SECRETS: readonly [RegExp, string][] = [
  // A key itself (a body of base64 between the markers), not code that parses PEM and names the markers.
  [
    /-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----\s*(?:[A-Za-z0-9+/=]{40,}\s*){3,}-----END/,
    'a private key',
  ],
  [/\bAKIA[0-9A-Z]{16}\b/, 'an AWS access key id'],
  [/\bgh[pousr]_[A-Za-z0-9]{36,}\b/, 'a GitHub token'],
  [/\bxox[abprs]-[A-Za-z0-9-]{10,}\b/, 'a Slack token'],
  [/\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}\b/, 'an OpenAI or Anthropic API key'],
  [/\bAIza[0-9A-Za-z_-]{35}\b/, 'a Google API key'],
  [/\bnpm_[A-Za-z0-9]{36}\b/, 'an npm token'],
]

/** What a server's own code can do beyond answering MCP, worth a curator's look (not blocking by itself). */
const CAPABILITIES: readonly [RegExp, string, string][] = [
  [
    /\brequire\(\s*['"](?:node:)?child_process['"]\s*\)|from\s+['"](?:node:)?child_process['"]/,
    'process-spawning',
    'starts processes',
  ],
  [
    /\beval\s*\(|\bnew\s+Function\s*\(|\bvm\.run(?:InNewContext|InThisContext|InContext)\b/,
    'dynamic-code',
    'runs code it builds at run time',
  ],
  [
    /from\s+['"](?:node:)?(?:net|dgram|tls)['"]|require\(\s*['"](?:node:)?(?:net|dgram|tls)['"]\s*\)/,
    'raw-network',
    'opens raw network sockets',
  ],
]

const SCANNED = new Set([
  '.js',
  '.mjs',
  '.cjs',
  '.ts',
  '.mts',
  '.cts',
  '.json',
  '.env',
  '.pem',
  '.key',
  '.txt',
  '.yml',
  '.yaml',
  '',
])
const MAX_FILE_BYTES = 2 << 20

function* files(dir: string): Generator<string> {
  let entries: string[]
  try {
    entries = readdirSync(dir)
  } catch {
    return
  }
  for (const entry of entries) {
    const path = join(dir, entry)
    const stat = statSync(path, { throwIfNoEntry: false })
    if (stat === undefined) continue
    // A package's own nested node_modules are packages of the tree too, scanned on their own.
    if (stat.isDirectory()) {
      if (entry !== 'node_modules') yield* files(path)
    } else if (stat.isFile() && stat.size <= MAX_FILE_BYTES && SCANNED.has(extname(entry))) yield path
  }
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split('\n').length
}

/** Open-source licences recognised by the first lines of a licence file. */
const LICENCE_TEXTS: readonly [RegExp, string][] = [
  [/\bMIT License\b|Permission is hereby granted, free of charge/i, 'MIT'],
  [/\bApache License\b[\s\S]{0,40}Version 2\.0/i, 'Apache-2.0'],
  [/\bISC License\b|Permission to use, copy, modify, and\/or distribute/i, 'ISC'],
  [/\bBSD\b[\s\S]{0,200}Redistribution and use in source and binary forms/i, 'BSD'],
  [/\bMozilla Public License\b/i, 'MPL-2.0'],
  [/\bGNU (?:Affero |Lesser )?General Public License\b/i, 'GPL family'],
]

/** Secrets in one file's text: a finding each, under `subject` (the package or folder that ships it). */
function secretsIn(text: string, where: string, subject: string, label: string): Finding[] {
  const found: Finding[] = []
  for (const [pattern, what] of SECRETS) {
    const match = pattern.exec(text)
    if (match !== null)
      found.push({
        stage: 'static',
        id: `static.secret:${subject}`,
        severity: 'critical',
        title: `${label} ships ${what}`,
        evidence: `${where}:${lineOf(text, match.index)}`,
      })
  }
  return found
}

/** The capabilities one file of the server's own code shows, each reported once per server (`seen`). */
function capabilitiesIn(
  text: string,
  where: string,
  server: string,
  patterns: readonly [RegExp, string, string][],
  seen: Set<string>,
): Finding[] {
  const found: Finding[] = []
  for (const [pattern, id, what] of patterns) {
    if (seen.has(id)) continue
    const match = pattern.exec(text)
    if (match === null) continue
    seen.add(id)
    found.push({
      stage: 'static',
      id: `static.capability.${id}:${server}`,
      severity: 'info',
      title: `${server} ${what}`,
      evidence: `${where}:${lineOf(text, match.index)}: ${match[0]}`,
    })
  }
  return found
}

/** What a Python server's own code can do beyond answering MCP. */
const PYTHON_CAPABILITIES: readonly [RegExp, string, string][] = [
  [
    /\bimport subprocess\b|\bfrom subprocess import\b|\bos\.system\(|\bos\.popen\(/,
    'process-spawning',
    'starts processes',
  ],
  [/\beval\(|\bexec\(|\bcompile\(/, 'dynamic-code', 'runs code it builds at run time'],
  [/\bimport socket\b|\bfrom socket import\b/, 'raw-network', 'opens raw network sockets'],
]

/**
 * The static stage over an installed Python tree: bundled secrets anywhere in it, what the server's own
 * module can do, and the server's licence.
 */
export function pythonStaticChecks(resolved: ResolvedPypi, module: string): Finding[] {
  const findings: Finding[] = []
  const own = resolved.tree.find((d) => d.name.toLowerCase() === resolved.name.toLowerCase())
  if (own !== undefined && (own.license === undefined || own.license.trim() === ''))
    findings.push({
      stage: 'static',
      id: `static.licence:${own.name}`,
      severity: 'medium',
      title: `${own.name}==${own.version} declares no licence`,
    })
  const ownDir = join(resolved.site, module.split('.')[0]!)
  const seen = new Set<string>()
  for (const file of files(resolved.site)) {
    const text = readFileSync(file, 'utf8')
    const where = relative(resolved.site, file)
    findings.push(...secretsIn(text, where, where.split('/')[0]!, 'the tree'))
    if (file.startsWith(ownDir) && file.endsWith('.py'))
      findings.push(...capabilitiesIn(text, where, resolved.name, PYTHON_CAPABILITIES, seen))
  }
  return findings
}

/** Licences that mean no licence at all, or none a curator may assume. */
function licenceProblem(pkg: LockedPackage): string | undefined {
  const licence = pkg.license?.trim()
  if (licence === undefined || licence === '') return 'declares no licence'
  if (/^UNLICENSED$/i.test(licence)) return 'is not licensed for use by others (UNLICENSED)'
  const file = /^SEE LICEN[CS]E IN (.+)$/i.exec(licence)?.[1]
  if (file === undefined) return undefined
  // "SEE LICENSE IN LICENSE": the file says which licence, when it is a known one.
  let text = ''
  try {
    text = readFileSync(join(pkg.dir, file.trim()), 'utf8').slice(0, 4096)
  } catch {
    return `names a licence file (${file}) that is not in the package`
  }
  return LICENCE_TEXTS.some(([pattern]) => pattern.test(text))
    ? undefined
    : `has a licence of its own (${file}) that is not a known open-source licence`
}

/**
 * The static stage over the installed tree: bundled secrets in any package, what the server's own code can do
 * (process spawning, dynamic code, raw sockets), and licences.
 */
export function staticChecks(resolved: ResolvedNpm): Finding[] {
  const findings: Finding[] = []
  for (const pkg of resolved.tree) {
    const own = pkg.name === resolved.name
    const problem = licenceProblem(pkg)
    if (problem !== undefined)
      findings.push({
        stage: 'static',
        id: `static.licence:${pkg.name}`,
        severity: own ? 'medium' : 'low',
        title: `${pkg.name}@${pkg.version} ${problem}`,
      })
    const seenCapabilities = new Set<string>()
    for (const file of files(pkg.dir)) {
      const text = readFileSync(file, 'utf8')
      const where = relative(resolved.project, file)
      findings.push(...secretsIn(text, where, pkg.name, `${pkg.name}@${pkg.version}`))
      if (own) findings.push(...capabilitiesIn(text, where, pkg.name, CAPABILITIES, seenCapabilities))
    }
  }
  return findings
}
