// What headless Chromium actually sends on a WebSocket handshake, pinned so the
// docs stay true (docs/components.md, "Sec-Fetch-Site: an extra denial, never a
// grant"): Fetch Metadata (Sec-Fetch-*) on navigations and subresources, but none
// on the WebSocket handshake, even from http://localhost to ws://localhost. If a
// Chromium update starts sending it, this test fails: update the docs (and the
// README's Sec-Fetch-Site paragraph), then this test.
// No wsguard server here: a plain Node server on 127.0.0.1 records the headers.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');

const CHROMIUM = process.env.WSGUARD_CHROMIUM || '/usr/bin/chromium';
const skip = !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;

const fetchMetadata = (headers) =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('sec-fetch-')));

describe('Fetch Metadata from headless Chromium', { skip, timeout: 60000 }, () => {
  let browser;
  let server;
  const seen = [];  // {kind: 'http' | 'websocket', host, origin, fetch}

  before(async () => {
    server = http.createServer((req, res) => {
      seen.push({ kind: 'http', url: req.url, host: req.headers.host, fetch: fetchMetadata(req.headers) });
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(`<!doctype html><title>opening</title><script>
        const ws = new WebSocket("ws://" + location.host + "/ws");
        ws.onerror = ws.onclose = () => { document.title = "handshake sent"; };
      </script>`);
    });
    server.on('upgrade', (req, socket) => {
      seen.push({ kind: 'websocket', host: req.headers.host, origin: req.headers.origin, fetch: fetchMetadata(req.headers) });
      socket.destroy();  // the request's headers are all this test needs
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { chromium } = require('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30000,
      // localhost resolves to 127.0.0.1 only: the test never touches another address.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP localhost 127.0.0.1'],
    });
  });

  after(async () => {
    await browser?.close();
    server?.close();
  });

  for (const host of ['localhost', '127.0.0.1']) {
    test(`a page on http://${host} gets Sec-Fetch-* on its navigation but sends none on its WebSocket handshake`, async () => {
      const origin = `http://${host}:${server.address().port}`;
      const page = await browser.newPage();
      try {
        await page.goto(`${origin}/`);
        await page.waitForFunction(() => document.title === 'handshake sent', null, { timeout: 15000 });
      } finally {
        await page.close();
      }
      const navigation = seen.find((r) => r.kind === 'http' && r.url === '/' && r.host === `${host}:${server.address().port}`);
      const handshake = seen.find((r) => r.kind === 'websocket' && r.origin === origin);
      assert.ok(navigation, 'the navigation reached the server');
      assert.equal(navigation.fetch['sec-fetch-mode'], 'navigate', 'Chromium sends Fetch Metadata on navigations');
      assert.ok(handshake, 'the WebSocket handshake reached the server, with the page as Origin');
      assert.deepEqual(handshake.fetch, {},
        `Chromium ${browser.version()} sent Sec-Fetch-* on a WebSocket handshake: update docs/components.md and README.md`);
    });
  }
});
