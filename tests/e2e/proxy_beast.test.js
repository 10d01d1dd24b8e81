// The Beast demo behind Debian's nginx, and behind HAProxy in HTTP mode
// (docs/behind-a-proxy.md): per-client limits count each real client, not the
// proxy; a client cannot choose its bucket with its own X-Forwarded-For or
// Forwarded; refusal reports name it. Clients bind 127.0.0.2, 127.0.0.3, ...;
// the proxy reaches the demo from 127.0.0.1.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { refusals } = require('./lib/servers');
const { NGINX, HAPROXY, startNginx, startHaproxy, startBehind, stopBehind, demoTicket, upgrade, statusCounts, refusalLines } = require('./lib/proxies');

const DEMO = process.env.WSGUARD_BEAST_DEMO;
const skip = !DEMO ? 'WSGUARD_BEAST_DEMO is not set (the Beast demo was not built)' : !NGINX ? 'no nginx (apt install nginx-light)' : false;

// The demo as the docs configure it behind a proxy on `port`: the Host and Origin
// clients reach the proxy by, and the proxy (127.0.0.1) as the one trusted proxy.
const behindProxy = (port, extra = []) => [
  '--allow-host', `127.0.0.1:${port}`, '--allow-origin', `http://127.0.0.1:${port}`, '--trusted-proxy', '127.0.0.1', ...extra];

// `count` upgrade attempts without a ticket, all at once, from one client:
// those the rate limit lets through answer 401 (no ticket), the rest 429.
const flood = (ctx, localAddress, count, headers = () => ({})) => Promise.all(
  Array.from({ length: count }, (_, i) => upgrade(ctx.url, { localAddress, origin: ctx.origin, headers: headers(i) })));

// `count` upgrades with a fresh ticket each, one after another.
async function connectWithTickets(ctx, localAddress, count, options = {}) {
  const outcomes = [];
  for (let i = 0; i < count; i++) {
    const ticket = await demoTicket(ctx.port, ctx.origin, localAddress);
    outcomes.push(await upgrade(ctx.url, { localAddress, origin: ctx.origin, ticket, ...options }));
  }
  return outcomes;
}

function withDemoBehindNginx(extraArgs, body, { host, dropClientForwarded, trusted = true } = {}) {
  return () => {
    const ctx = {};
    before(async () => {
      const args = (port) => trusted ? behindProxy(port, extraArgs)
        : ['--allow-host', `127.0.0.1:${port}`, '--allow-origin', `http://127.0.0.1:${port}`, ...extraArgs];
      Object.assign(ctx, await startBehind(DEMO, args, (ports) => startNginx({ ...ports, host, dropClientForwarded })));
    });
    after(async () => {
      const status = await stopBehind(ctx);
      assert.deepEqual(status, { code: 0, signal: null }, 'the demo exits cleanly on SIGTERM');
    });
    body(ctx);
  };
}

describe('Beast demo behind nginx: the handshake rate counts each real client', { skip, timeout: 60000 },
  withDemoBehindNginx(['--handshake-rate', '1', '--handshake-burst', '10'], (ctx) => {
    test('one client flooding gets 429 with Retry-After while another client still connects', async () => {
      const attempts = await flood(ctx, '127.0.0.2', 40);
      const flooder = statusCounts(attempts);
      console.log(`flooder 127.0.0.2 behind nginx: ${JSON.stringify(flooder)}`);
      for (const { status, retryAfter } of attempts) {
        if (status === 429) assert.match(retryAfter, /^[1-9][0-9]*$/, 'Retry-After is a whole number of seconds');
      }
      assert.equal(flooder[101] ?? 0, 0, 'no ticket, no socket');
      assert.ok((flooder[429] ?? 0) >= 25, `only ${flooder[429] ?? 0} of 40 were rate limited`);
      assert.ok((flooder[401] ?? 0) >= 10 && (flooder[401] ?? 0) <= 15, `${flooder[401]} passed the rate limit (burst 10, 1/s)`);

      const neighbour = statusCounts(await connectWithTickets(ctx, '127.0.0.3', 5));
      console.log(`neighbour 127.0.0.3 behind nginx: ${JSON.stringify(neighbour)}`);
      assert.deepEqual(neighbour, { 101: 5 }, 'the other client is not limited by the flood');
    });

    test('the refusal reports name the real client, never the proxy', async () => {
      const lines = refusalLines(ctx.server);
      const limited = lines.filter((line) => line.startsWith('refused rate_limited '));
      assert.ok(limited.length >= 10, lines.join('\n'));
      for (const line of limited) assert.match(line, / address=127\.0\.0\.2$/);
      assert.ok(!lines.some((line) => / address=127\.0\.0\.1$/.test(line)), lines.join('\n'));
    });

    test('a refusal decided before the rate limit (a forged Origin) also names the real client', async () => {
      const from = ctx.server.log.length;
      const forged = await upgrade(ctx.url, { localAddress: '127.0.0.6', origin: 'http://evil.example' });
      assert.equal(forged.status, 403);
      await new Promise((resolve) => setTimeout(resolve, 100));  // stderr reaches us a moment later
      assert.deepEqual(refusalLines(ctx.server, from),
        ['refused origin_not_allowed route=/ws origin=http://evil.example address=127.0.0.6']);
    });
  }));

describe('Beast demo behind nginx: a client cannot choose its bucket', { skip, timeout: 60000 },
  withDemoBehindNginx(['--handshake-rate', '1', '--handshake-burst', '10'], (ctx) => {
    test('X-Forwarded-For and Forwarded sent by the client are not believed', async () => {
      const from = ctx.server.log.length;
      // A fresh forged address on every attempt: if any were believed, each
      // attempt would get a bucket of its own and none would be limited.
      const spoofer = statusCounts(await flood(ctx, '127.0.0.4', 40, (i) => ({
        'X-Forwarded-For': i % 2 ? `1.2.3.${i}` : '127.0.0.5', Forwarded: `for=198.51.100.${i}`,
      })));
      console.log(`spoofer 127.0.0.4 (own X-Forwarded-For/Forwarded) behind nginx: ${JSON.stringify(spoofer)}`);
      assert.ok((spoofer[429] ?? 0) >= 25, `only ${spoofer[429] ?? 0} of 40 were rate limited`);

      const lines = refusalLines(ctx.server, from);
      assert.ok(lines.length >= 10);
      for (const line of lines) assert.match(line, / address=127\.0\.0\.4$/, 'keyed by the real address');
    });

    test('the client whose address was forged is unaffected', async () => {
      const victim = statusCounts(await connectWithTickets(ctx, '127.0.0.5', 5));
      console.log(`victim 127.0.0.5 behind nginx: ${JSON.stringify(victim)}`);
      assert.deepEqual(victim, { 101: 5 });
    });

    test('a client connecting to the demo directly cannot forge its address either', async () => {
      const from = ctx.server.log.length;
      const direct = `ws://127.0.0.1:${ctx.server.port}/ws`;
      const forged = await upgrade(direct, {
        localAddress: '127.0.0.7', origin: 'http://evil.example', headers: { 'X-Forwarded-For': '192.0.2.1' },
      });
      assert.equal(forged.status, 403);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(refusalLines(ctx.server, from).map((line) => line.split(' address=')[1]), ['127.0.0.7']);
    });
  }));

describe('Beast demo behind nginx: the connection cap counts each real client', { skip, timeout: 60000 },
  withDemoBehindNginx(['--max-connections', '3'], (ctx) => {
    test('a fourth socket from one client gets 429 while another client opens three', async () => {
      const held = [];
      try {
        const first = await connectWithTickets(ctx, '127.0.0.2', 4, { keepOpen: true });
        held.push(...first.map((o) => o.socket).filter(Boolean));
        const second = await connectWithTickets(ctx, '127.0.0.3', 3, { keepOpen: true });
        held.push(...second.map((o) => o.socket).filter(Boolean));
        console.log(`connection cap 3 behind nginx: 127.0.0.2 ${JSON.stringify(statusCounts(first))}, ` +
          `127.0.0.3 ${JSON.stringify(statusCounts(second))}`);
        assert.deepEqual(first.map((o) => o.status), [101, 101, 101, 429]);
        assert.deepEqual(second.map((o) => o.status), [101, 101, 101]);
        assert.equal((await refusals(ctx.server.port)).too_many_connections, 1);
      } finally {
        for (const socket of held) socket.terminate();
      }
    });
  }));

// The controls: what the issue found before the settings above. Without them
// the tests above would fail for the reasons these show.
describe('Beast demo behind nginx without --trusted-proxy: every client is the proxy', { skip, timeout: 60000 },
  withDemoBehindNginx(['--handshake-rate', '1', '--handshake-burst', '10'], (ctx) => {
    test("one client's flood gets the other client 429", async () => {
      await flood(ctx, '127.0.0.2', 20);
      const neighbour = statusCounts(await connectWithTickets(ctx, '127.0.0.3', 2));
      console.log(`neighbour 127.0.0.3 behind nginx, no --trusted-proxy: ${JSON.stringify(neighbour)}`);
      // The flood emptied the proxy's one bucket; it refills at 1/s, so at least the first attempt is refused.
      assert.ok((neighbour[429] ?? 0) >= 1, JSON.stringify(neighbour));
      assert.ok(refusalLines(ctx.server).every((line) => line.endsWith(' address=127.0.0.1')));
    });
  }, { trusted: false }));

describe('Beast demo behind nginx that passes on a client\'s Forwarded header', { skip, timeout: 60000 },
  withDemoBehindNginx(['--handshake-rate', '1', '--handshake-burst', '10'], (ctx) => {
    test('the client chooses its bucket: why the documented config deletes Forwarded', async () => {
      // Forwarded wins over X-Forwarded-For, and nginx does not maintain it:
      // without 'proxy_set_header Forwarded ""' the client's own arrives from a trusted peer.
      const spoofer = statusCounts(await flood(ctx, '127.0.0.4', 40, (i) => ({ Forwarded: `for=198.51.100.${i}` })));
      console.log(`spoofer 127.0.0.4 (own Forwarded) behind nginx that keeps it: ${JSON.stringify(spoofer)}`);
      assert.deepEqual(spoofer, { 401: 40 }, 'a fresh forged address per attempt: never rate limited');
    });
  }, { dropClientForwarded: false }));

describe('Beast demo behind nginx with "proxy_set_header Host $host" (the port dropped)', { skip, timeout: 60000 },
  withDemoBehindNginx([], (ctx) => {
    test('every upgrade is refused 403 host_not_allowed', async () => {
      const outcome = await connectWithTickets(ctx, '127.0.0.2', 1);
      assert.equal(outcome[0].status, 403);
      assert.equal((await refusals(ctx.server.port)).host_not_allowed, 1);
    });
  }, { host: '$host' }));

describe('Beast demo behind nginx with "proxy_set_header Host $host:$server_port"', { skip, timeout: 60000 },
  withDemoBehindNginx([], (ctx) => {
    test('the upgrade opens: the Host keeps the port', async () => {
      assert.deepEqual(statusCounts(await connectWithTickets(ctx, '127.0.0.2', 1)), { 101: 1 });
    });
  }, { host: '$host:$server_port' }));

describe('Beast demo behind HAProxy in HTTP mode (option forwardfor)', { skip: skip || (!HAPROXY && 'no haproxy'), timeout: 60000 }, () => {
  const ctx = {};
  before(async () => {
    const args = (port) => behindProxy(port, ['--handshake-rate', '1', '--handshake-burst', '10']);
    Object.assign(ctx, await startBehind(DEMO, args, (ports) => startHaproxy({ ...ports, mode: 'http' })));
  });
  after(async () => {
    const status = await stopBehind(ctx);
    assert.deepEqual(status, { code: 0, signal: null }, 'the demo exits cleanly on SIGTERM');
  });

  test('a spoofing flooder gets 429 under its real address while another client connects', async () => {
    // HAProxy adds its X-Forwarded-For as a line of its own after the client's:
    // the demo joins the lines in arrival order, so HAProxy's entry is the rightmost.
    const spoofer = statusCounts(await flood(ctx, '127.0.0.2', 40, (i) => ({
      'X-Forwarded-For': `1.2.3.${i}`, Forwarded: `for=198.51.100.${i}`,
    })));
    console.log(`spoofer 127.0.0.2 behind haproxy (http): ${JSON.stringify(spoofer)}`);
    assert.ok((spoofer[429] ?? 0) >= 25, `only ${spoofer[429] ?? 0} of 40 were rate limited`);
    const neighbour = statusCounts(await connectWithTickets(ctx, '127.0.0.3', 5));
    console.log(`neighbour 127.0.0.3 behind haproxy (http): ${JSON.stringify(neighbour)}`);
    assert.deepEqual(neighbour, { 101: 5 });
    const lines = refusalLines(ctx.server);
    assert.ok(lines.length >= 10);
    for (const line of lines) assert.match(line, / address=127\.0\.0\.2$/);
  });
});
