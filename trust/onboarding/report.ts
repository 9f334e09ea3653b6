import { SEVERITIES } from './findings.ts'
import type { OnboardingReport } from './onboard.ts'
import type { UpgradeDiff, UpgradeReport } from './upgrade.ts'

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

const list = (items: string[]) => items.join(', ') || 'none'

/** An upgrade's diff against the signed previous version. */
function renderUpgrade(diff: UpgradeDiff): string[] {
  const tools =
    diff.tools === 'unpinned'
      ? ['- Tools: the previous manifest pinned none, so nothing to compare']
      : [
          `- Tools added: ${list(diff.tools.added)}`,
          `- Tools removed: ${list(diff.tools.removed)}`,
          `- Tools changed: ${list(diff.tools.changed)}`,
        ]
  return [
    `## Upgrade from ${diff.from.version}`,
    '',
    `Against the signed ${diff.from.version} (manifest ${diff.from.manifestHash.slice(0, 18)}…):`,
    '',
    ...tools,
    `- Dependencies added: ${list(diff.dependencies.added)}`,
    `- Dependencies removed: ${list(diff.dependencies.removed)}`,
    `- Dependencies changed: ${list(diff.dependencies.changed.map((c) => `${c.name} ${c.from} → ${c.to}`))}`,
    `- Findings introduced: ${list(diff.findings.introduced.map((f) => `\`${f.id}\` (${f.severity})`))}`,
    `- Findings resolved: ${list(diff.findings.resolved.map((f) => `\`${f.id}\``))}`,
    '',
  ]
}

/** The report as a curator reads it: verdict first, then what blocks, every finding, the server as it ran. */
function renderImage(image: OnboardingReport['image']): string[] {
  if (image === undefined) return []
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
  return [
    '## Image',
    '',
    `\`${image.reference}\` (tag \`${image.tag}\`), ${mib(image.bytes)} compressed, runs as uid 65532.`,
    '',
    '| layer | files | compressed | digest |',
    '| --- | ---: | ---: | --- |',
    ...image.layers.map((l) => `| ${l.name} | ${l.files} | ${mib(l.bytes)} | \`${l.digest}\` |`),
    '',
  ]
}

export function renderReport(report: OnboardingReport | UpgradeReport): string {
  const { manifest, dynamic } = report
  const lines = [
    `# Onboarding report: ${report.spec}`,
    '',
    `**Verdict: ${report.verdict.toUpperCase()}** — ${report.findings.length} finding(s); the policy blocks at ` +
      `\`${report.policy.block}\` and above${report.policy.allow.length > 0 ? `, waiving ${report.policy.allow.join(', ')}` : ''}.`,
    '',
  ]
  if (report.blocking.length > 0) {
    lines.push('## What blocks it', '')
    for (const f of report.blocking) lines.push(`- **${f.severity}** \`${f.id}\`: ${f.title}`)
    lines.push('')
  }
  if ('upgrade' in report) lines.push(...renderUpgrade(report.upgrade))
  lines.push('## Stages', '', '| stage | time |', '| --- | ---: |')
  for (const s of report.stages) lines.push(`| ${s.stage} | ${s.ms} ms |`)
  lines.push('', '## Findings', '')
  if (report.findings.length === 0) lines.push('None.')
  else {
    lines.push('| severity | stage | id | finding | evidence |', '| --- | --- | --- | --- | --- |')
    const bySeverity = [...report.findings].sort(
      (a, b) => SEVERITIES.indexOf(b.severity) - SEVERITIES.indexOf(a.severity),
    )
    for (const f of bySeverity)
      lines.push(
        `| ${f.severity} | ${f.stage} | \`${f.id}\` | ${cell(f.title)} | ${cell(f.evidence ?? '')} |`,
      )
  }
  lines.push(
    '',
    '## The server as it ran',
    '',
    `- Sandbox: ${dynamic.sandbox}`,
    `- Server: ${dynamic.serverInfo === undefined ? 'unknown' : `${String(dynamic.serverInfo.name)} ${String(dynamic.serverInfo.version ?? '')}`}, protocol ${dynamic.protocolVersion ?? 'none'}`,
    `- Start-up: ${dynamic.startupMs ?? '—'} ms; peak memory ${dynamic.peakMemoryMiB ?? '—'} MiB (the manifest reserves ${manifest.resources.memoryMiB} MiB)`,
    `- ${dynamic.tools.length} tool(s), ${dynamic.resources.length} resource(s), ${dynamic.prompts.length} prompt(s); read-only tools called: ${dynamic.calls.map((c) => `${c.tool} (${c.outcome})`).join(', ') || 'none'}`,
    '',
    '### Tools, pinned',
    '',
    '| tool | read-only | digest |',
    '| --- | --- | --- |',
    ...dynamic.tools.map(
      (t) => `| ${t.name} | ${t.readOnly ? 'yes' : 'no'} | \`${t.digest.slice(0, 23)}…\` |`,
    ),
    '',
    '## Permissions',
    '',
    `- Environment variables: ${report.permissions.env.join(', ') || 'none'}`,
    `- Network egress: ${report.permissions.egress === true ? 'anywhere' : report.permissions.egress === false ? 'none' : report.permissions.egress.join(', ')}`,
    `- Operator arguments: ${report.permissions.operatorArgs ? 'allowed' : 'not allowed'}`,
    `- Binds: ${manifest.binds?.map((b) => `${b.purpose} (${b.mode})`).join(', ') ?? 'left to the operator'}`,
    '',
    '## Dependencies',
    '',
    `${report.dependencies.packages} package(s), locked with their integrity; lockfile sha256 \`${report.dependencies.lockfileSha256}\`.`,
    `Install scripts: ${report.dependencies.installScripts.join(', ') || 'none'}.`,
    '',
    ...renderImage(report.image),
    '## Manifest to sign',
    '',
    '```json',
    JSON.stringify(manifest, null, 2),
    '```',
    '',
  )
  return lines.join('\n')
}
