// The Beast demo against a real browser: Debian's Chromium, headless, driven by playwright-core.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const { startServer, stopServer, fetchTicket, refusals } = require('./lib/servers');

const DEMO = process.env.WSGUARD_BEAST_DEMO;
const CHROMIUM = process.env.WSGUARD_CHROMIUM || '/usr/bin/chromium';
const skip = !DEMO ? 'WSGUARD_BEAST_DEMO is not set (the Beast demo was not built)'
  : !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;

// A page on another origin. It asks the demo for a ticket the way a page on
// an --allow-origin origin would (a credentialed fetch with the marker header,
// so the browser sends a CORS preflight first), then opens the socket with the
// ticket it was handed in ?ticket=, or else with the one it fetched.
// window.simplePost() sends what a cross-site form can: a POST without the marker.
const crossOriginPage = `<!doctype html><meta charset="utf-8"><p id="status">starting</p><script>
const params = new URLSearchParams(location.search);
const ticketUrl = "http://127.0.0.1:" + params.get("demo") + "/ticket";
window.simplePost = () => fetch(ticketUrl, { method: "POST", mode: "no-cors", credentials: "include" })
  .then((r) => r.type, (e) => "blocked: " + e.message);
window.result = (async () => {
  let minted = "";
  const fetched = await fetch(ticketUrl, { method: "POST", credentials: "include", headers: { "X-Wsguard-Ticket": "1" } })
    .then(async (r) => { if (r.ok) minted = (await r.json()).ticket; return "status " + r.status; },
          (e) => "blocked: " + e.message);
  return await new Promise((resolve) => {
    const ws = new WebSocket("ws://127.0.0.1:" + params.get("demo") + "/ws", ["wsguard.v1", params.get("ticket") || minted || "no-ticket"]);
    let opened = false;
    ws.onopen = () => { opened = true; ws.send("from elsewhere"); };
    ws.onmessage = (e) => { resolve({ fetched, opened, echo: e.data }); ws.close(); };
    ws.onclose = (e) => resolve({ fetched, opened, closeCode: e.code });
  });
})();
window.result.then((r) => { document.getElementById("status").textContent = JSON.stringify(r); });
</script>`;

function startPageServer() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(req.url.startsWith('/cross.html') ? crossOriginPage : '');
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

describe('Beast demo in Chromium', { skip, timeout: 120000 }, () => {
  let browser;
  let demo;
  const pageServers = {};  // allowed: an origin the demo allows; foreign: one it does not
  const delta = async (before, name) => ((await refusals(demo.port))[name] ?? 0) - (before[name] ?? 0);

  before(async () => {
    const { chromium } = require('playwright-core');
    pageServers.allowed = await startPageServer();
    pageServers.foreign = await startPageServer();
    demo = await startServer(DEMO, ['--allow-origin', `http://127.0.0.1:${pageServers.allowed.address().port}`]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],  // playwright gives each launch a fresh profile
    });
  });

  after(async () => {
    await browser?.close();
    for (const server of Object.values(pageServers)) server.close();
    const status = await stopServer(demo);
    assert.deepEqual(status, { code: 0, signal: null }, 'the demo exits cleanly on SIGTERM');
  });

  // A fresh page whose console lines (Chromium logs the handshake status there) are collected.
  async function newPage(t) {
    const context = await browser.newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    page.console = [];
    page.on('console', (message) => page.console.push(message.text()));
    return page;
  }

  const crossOriginUrl = (server, ticket = '') =>
    `http://127.0.0.1:${server.address().port}/cross.html?demo=${demo.port}&ticket=${encodeURIComponent(ticket)}`;

  test('the demo page gets a ticket and its socket echoes', async (t) => {
    const page = await newPage(t);
    await page.goto(`http://127.0.0.1:${demo.port}/`);
    await page.waitForFunction(() => document.getElementById('status').textContent !== 'starting', null, { timeout: 15000 });
    assert.equal(await page.textContent('#status'), 'echo: hello from the page');
  });

  test('a page from another origin cannot open the socket: 403 before 101', async (t) => {
    const before = await refusals(demo.port);
    const page = await newPage(t);
    const ticket = await fetchTicket(demo.port);  // even a valid ticket for the demo's origin does not help
    await page.goto(crossOriginUrl(pageServers.foreign, ticket));
    const result = await page.evaluate(() => window.result);
    assert.equal(result.opened, false);
    assert.equal(result.closeCode, 1006);
    assert.match(result.fetched, /^blocked/, 'the page cannot read a ticket from POST /ticket');
    assert.ok(page.console.some((line) => /Unexpected response code: 403/.test(line)), page.console.join('\n'));
    // Refused twice: the ticket endpoint's CORS preflight, then the socket.
    assert.equal(await delta(before, 'origin_not_allowed'), 2);
  });

  test('a sandboxed iframe (Origin null) cannot open the socket', async (t) => {
    const before = await refusals(demo.port);
    const page = await newPage(t);
    await page.goto(`http://127.0.0.1:${demo.port}/`);
    const result = await page.evaluate(async () => {
      const ticket = await window.wsguardDemo.fetchTicket();
      const frame = document.createElement('iframe');
      frame.sandbox = 'allow-scripts';
      frame.srcdoc = `<script>
        const ws = new WebSocket("ws://${location.host}/ws", ["wsguard.v1", ${JSON.stringify(ticket)}]);
        let opened = false;
        ws.onopen = () => { opened = true; ws.close(); };
        ws.onclose = (e) => parent.postMessage({ origin: self.origin, opened, closeCode: e.code }, "*");
      <\/script>`;
      const answer = new Promise((resolve) => window.addEventListener('message', (e) => resolve(e.data), { once: true }));
      document.body.appendChild(frame);
      return answer;
    });
    assert.equal(result.origin, 'null');
    assert.equal(result.opened, false);
    assert.equal(result.closeCode, 1006);
    assert.equal(await delta(before, 'origin_null'), 1);
  });

  test('a ticket works once: reusing it from the same page fails', async (t) => {
    const before = await refusals(demo.port);
    const page = await newPage(t);
    await page.goto(`http://127.0.0.1:${demo.port}/`);
    const [first, second] = await page.evaluate(async () => {
      const ticket = await window.wsguardDemo.fetchTicket();
      return [await window.wsguardDemo.openSocket(ticket, 'first'), await window.wsguardDemo.openSocket(ticket, 'second')];
    });
    assert.deepEqual(first, { opened: true, protocol: 'wsguard.v1', echo: 'first' });
    assert.equal(second.opened, false);
    assert.equal(await delta(before, 'ticket_replayed'), 1);
  });

  test('a ticket fetched for one origin fails from another allowed origin', async (t) => {
    const before = await refusals(demo.port);
    const page = await newPage(t);
    await page.goto(`http://127.0.0.1:${demo.port}/`);
    const demoTicket = await page.evaluate(() => window.wsguardDemo.fetchTicket());
    await page.goto(crossOriginUrl(pageServers.allowed, demoTicket));
    const stolen = await page.evaluate(() => window.result);
    assert.equal(stolen.opened, false);
    assert.equal(stolen.fetched, 'status 200', 'the allowed page could fetch a ticket of its own');
    assert.equal(await delta(before, 'ticket_origin_mismatch'), 1);

    // Control: the same page opens the socket with a ticket issued for its own origin.
    const ownTicket = await fetchTicket(demo.port, `http://127.0.0.1:${pageServers.allowed.address().port}`);
    await page.goto(crossOriginUrl(pageServers.allowed, ownTicket));
    assert.deepEqual(await page.evaluate(() => window.result),
      { fetched: stolen.fetched, opened: true, echo: 'from elsewhere' });
  });

  test('a page on an --allow-origin origin fetches its own ticket through the CORS preflight and its socket echoes', async (t) => {
    const page = await newPage(t);
    await page.goto(`http://127.0.0.1:${demo.port}/`);  // the login: the session cookie
    await page.goto(crossOriginUrl(pageServers.allowed));
    assert.deepEqual(await page.evaluate(() => window.result),
      { fetched: 'status 200', opened: true, echo: 'from elsewhere' });
  });

  test('a simple POST to /ticket (what a form sends) mints nothing, even from an allowed origin', async (t) => {
    const page = await newPage(t);
    await page.goto(`http://127.0.0.1:${demo.port}/`);
    await page.goto(crossOriginUrl(pageServers.allowed));
    await page.evaluate(() => window.result);
    const before = await refusals(demo.port);
    assert.equal(await page.evaluate(() => window.simplePost()), 'opaque', 'the browser sent it without a preflight');
    assert.equal(await delta(before, 'mint_not_preflighted'), 1);

    const foreign = await newPage(t);
    await foreign.goto(`http://127.0.0.1:${demo.port}/`);
    await foreign.goto(crossOriginUrl(pageServers.foreign));
    await foreign.evaluate(() => window.result);
    const beforeForeign = await refusals(demo.port);
    assert.equal(await foreign.evaluate(() => window.simplePost()), 'opaque');
    assert.equal(await delta(beforeForeign, 'origin_not_allowed'), 1);
  });
});
