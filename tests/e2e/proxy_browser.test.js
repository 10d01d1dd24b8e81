// The demo page served through nginx in headless Chromium: with the documented
// Host setting (proxy_set_header Host $http_host) and the demo's --allow-host
// its socket opens; with the common "$host" recipe (the port dropped) it is
// refused 403 host_not_allowed, the page showing only "closed: 1006".
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { refusals } = require('./lib/servers');
const { NGINX, startNginx, startBehind, stopBehind } = require('./lib/proxies');

const DEMO = process.env.WSGUARD_BEAST_DEMO;
const CHROMIUM = process.env.WSGUARD_CHROMIUM || '/usr/bin/chromium';
const skip = !DEMO ? 'WSGUARD_BEAST_DEMO is not set (the Beast demo was not built)'
  : !NGINX ? 'no nginx (apt install nginx-light)' : !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;

const demoArgs = (port) => [
  '--allow-host', `127.0.0.1:${port}`, '--allow-origin', `http://127.0.0.1:${port}`, '--trusted-proxy', '127.0.0.1'];

describe('the demo page through nginx in Chromium', { skip, timeout: 120000 }, () => {
  let browser;
  const sites = {};  // documented: Host $http_host; portless: Host $host

  before(async () => {
    const { chromium } = require('playwright-core');
    sites.documented = await startBehind(DEMO, demoArgs, (ports) => startNginx({ ...ports, host: '$http_host' }));
    sites.portless = await startBehind(DEMO, demoArgs, (ports) => startNginx({ ...ports, host: '$host' }));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    for (const site of Object.values(sites)) {
      const status = await stopBehind(site);
      assert.deepEqual(status, { code: 0, signal: null }, 'the demo exits cleanly on SIGTERM');
    }
  });

  async function pageStatus(t, site) {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    await page.goto(`${site.origin}/`);
    await page.waitForFunction(() => document.getElementById('status').textContent !== 'starting', null, { timeout: 15000 });
    return page.textContent('#status');
  }

  test('with proxy_set_header Host $http_host the page opens its socket and gets the echo', async (t) => {
    assert.equal(await pageStatus(t, sites.documented), 'echo: hello from the page');
    assert.equal((await refusals(sites.documented.server.port)).host_not_allowed, undefined);
  });

  test('with proxy_set_header Host $host the socket is refused: host_not_allowed', async (t) => {
    assert.equal(await pageStatus(t, sites.portless), 'closed: 1006');
    assert.equal((await refusals(sites.portless.server.port)).host_not_allowed, 1);
  });
});
