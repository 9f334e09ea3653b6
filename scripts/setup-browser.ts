#!/usr/bin/env node
import { findChromium } from '../test/support/browser.ts'
/**
 * Part of the test set-up (`npm test` runs it first): the network page is tested in a real browser, Debian's
 * Chromium driven by playwright-core. Without it this installs `chromium` when it can (root, apt-get);
 * otherwise it says how. It never fails the command that ran it: the page test says itself that it cannot run.
 */
import { aptInstall, canAptInstall } from './apt-install.ts'

if (findChromium() === undefined && process.platform === 'linux') {
  if (canAptInstall()) aptInstall(['chromium'], 'testing the network page in a browser')
  if (findChromium() === undefined)
    process.stderr.write(
      'setup: no Chromium: the network page test will not run.\n' +
        '       Install it (Debian/Ubuntu: sudo apt-get install chromium).\n',
    )
}
