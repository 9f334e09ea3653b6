import { existsSync } from 'node:fs'
import t from 'tap'

/** Set by `.ci/run`: the browser test must run, and a machine without Chromium fails. */
export const BROWSER_REQUIRED = process.env.NEXUS_REQUIRE_BROWSER === '1'

/** The Chromium to drive: `NEXUS_CHROMIUM`, or Debian's. */
export function findChromium(): string | undefined {
  return [process.env.NEXUS_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
    (path): path is string => path !== undefined && existsSync(path),
  )
}

/** Runs `suite` with the Chromium found; otherwise skips it loudly, or fails when `.ci/run` requires it. */
export async function browserSuite(name: string, suite: (chromium: string) => Promise<void>): Promise<void> {
  const chromium = findChromium()
  if (chromium !== undefined) return suite(chromium)
  process.stderr.write('\n!! The browser test cannot run: no Chromium (npm test installs it as root).\n\n')
  if (BROWSER_REQUIRED)
    t.fail('the browser test is required here (NEXUS_REQUIRE_BROWSER=1) but there is no Chromium')
  else t.test(name, { skip: 'no Chromium here' }, async () => {})
}
