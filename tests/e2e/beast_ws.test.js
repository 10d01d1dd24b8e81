// The Beast demo against a real non-browser client: Node's `ws`.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, stopServer, request, sessionCookie, fetchTicket, refusals, tryWebSocket, TICKET_MARKER } = require('./lib/servers');

const DEMO = process.env.WSGUARD_BEAST_DEMO;
const skip = DEMO ? false : 'WSGUARD_BEAST_DEMO is not set (the Beast demo was not built)';

// Each describe starts its own server: rate limits are per address and every
// client here is 127.0.0.1, so tests that spend a budget must not share one.
function withServer(args, body) {
  return () => {
    const ctx = {};
    before(async () => {
      ctx.server = await startServer(DEMO, args);
      ctx.port = ctx.server.port;
      ctx.origin = `http://127.0.0.1:${ctx.port}`;
      ctx.url = `ws://127.0.0.1:${ctx.port}/ws`;
    });
    after(async () => {
      const status = await stopServer(ctx.server);
      assert.deepEqual(status, { code: 0, signal: null }, 'the demo exits cleanly on SIGTERM');
    });
    body(ctx);
  };
}

describe('Beast demo with ws: handshake', { skip, timeout: 60000 }, withServer([], (ctx) => {
  test('a valid ticket in the subprotocol opens an echo socket that speaks exactly wsguard.v1', async () => {
    const ticket = await fetchTicket(ctx.port);
    const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: ctx.origin, send: ['hello'] });
    assert.equal(result.opened, true, `refused with ${result.status}`);
    assert.equal(result.protocol, 'wsguard.v1');
    assert.deepEqual(result.echoes, ['hello']);
    assert.equal(result.closeCode, 1000);
  });

  test('the query-parameter ticket fallback opens an echo socket', async () => {
    const ticket = await fetchTicket(ctx.port);
    const result = await tryWebSocket(`${ctx.url}?ticket=${ticket}`, { origin: ctx.origin, send: ['by query'] });
    assert.equal(result.opened, true, `refused with ${result.status}`);
    assert.equal(result.protocol, '', 'no subprotocol was offered, none is chosen');
    assert.deepEqual(result.echoes, ['by query']);
  });

  test('a forged Origin is refused with 403 before 101', async () => {
    const ticket = await fetchTicket(ctx.port);
    const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: 'http://evil.example' });
    assert.equal(result.opened, false);
    assert.equal(result.status, 403);
  });

  test('a missing Origin is refused with 403 by default', async () => {
    const ticket = await fetchTicket(ctx.port);
    const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket] });
    assert.equal(result.opened, false);
    assert.equal(result.status, 403);
    assert.ok((await refusals(ctx.port)).origin_missing >= 1);
  });

  test('two Origin lines are refused with 400 security_header_repeated, even with the same value', async () => {
    const ticket = await fetchTicket(ctx.port);
    for (const second of ['http://evil.example', ctx.origin]) {
      const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], headers: { Origin: [ctx.origin, second] } });
      assert.equal(result.opened, false);
      assert.equal(result.status, 400);
    }
    assert.equal((await refusals(ctx.port)).security_header_repeated, 2);
    // Refused before the ticket was read: it still opens a socket.
    const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: ctx.origin });
    assert.equal(result.opened, true, `refused with ${result.status}`);
  });

  test('a Host outside the allowlist is refused (DNS rebinding)', async () => {
    const ticket = await fetchTicket(ctx.port);
    const result = await tryWebSocket(ctx.url, {
      protocols: ['wsguard.v1', ticket], origin: ctx.origin, headers: { Host: `rebound.example:${ctx.port}` },
    });
    assert.equal(result.opened, false);
    assert.equal(result.status, 403);
    assert.ok((await refusals(ctx.port)).host_not_allowed >= 1);
  });

  // SYNTHETIC header: Node's `ws` sets Sec-Fetch-Site only because this test
  // asks it to. No browser was seen sending it on a WebSocket handshake here
  // (headless Chromium 156 sent no Sec-Fetch-* at all, even from http://localhost
  // to ws://localhost: browser_fetch_metadata.test.js), so this proves the
  // server's refusal path, not that a browser triggers it. See
  // docs/components.md, "Sec-Fetch-Site: an extra denial, never a grant".
  test('a synthetic Sec-Fetch-Site: cross-site (set by this test, not a browser) is refused with 403', async () => {
    const ticket = await fetchTicket(ctx.port);
    const result = await tryWebSocket(ctx.url, {
      protocols: ['wsguard.v1', ticket], origin: ctx.origin, headers: { 'Sec-Fetch-Site': 'cross-site' },
    });
    assert.equal(result.opened, false);
    assert.equal(result.status, 403);
  });

  test('no ticket is refused with 401', async () => {
    const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1'], origin: ctx.origin });
    assert.equal(result.opened, false);
    assert.equal(result.status, 401);
  });

  test('a ticket works once: the replay is refused with 401', async () => {
    const ticket = await fetchTicket(ctx.port);
    const first = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: ctx.origin, send: ['once'] });
    assert.equal(first.opened, true);
    const replay = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: ctx.origin });
    assert.equal(replay.opened, false);
    assert.equal(replay.status, 401);
    assert.ok((await refusals(ctx.port)).ticket_replayed >= 1);
  });

  test('a ticket issued for one allowed origin fails from another allowed origin', async () => {
    const ticket = await fetchTicket(ctx.port, `http://127.0.0.1:${ctx.port}`);
    const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: `http://localhost:${ctx.port}` });
    assert.equal(result.opened, false);
    assert.equal(result.status, 401);
    assert.ok((await refusals(ctx.port)).ticket_origin_mismatch >= 1);
  });

  test('POST /ticket needs the marker header, an allowed Origin and the session cookie', async () => {
    const cookie = await sessionCookie(ctx.port);
    const post = async (headers) => (await request(ctx.port, 'POST', '/ticket', headers)).status;
    assert.equal(await post({ Cookie: cookie, Origin: ctx.origin }), 403, 'a simple POST (what a form sends) is refused');
    assert.equal(await post({ Origin: ctx.origin, ...TICKET_MARKER }), 401);
    assert.equal(await post({ Cookie: 'wsguard_demo_session=guess', Origin: ctx.origin, ...TICKET_MARKER }), 401);
    assert.equal(await post({ Cookie: cookie, Origin: 'http://evil.example', ...TICKET_MARKER }), 403);
    assert.equal(await post({ Cookie: cookie, ...TICKET_MARKER }), 403);
    assert.equal(await post({ Cookie: cookie, Origin: ctx.origin, 'Sec-Fetch-Site': 'cross-site', ...TICKET_MARKER }), 403);
    assert.equal((await request(ctx.port, 'GET', '/ticket', { Cookie: cookie, Origin: ctx.origin })).status, 405);
    const answer = await request(ctx.port, 'POST', '/ticket', { Cookie: cookie, Origin: ctx.origin, ...TICKET_MARKER });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers['access-control-allow-origin'], ctx.origin);
    assert.equal(answer.headers['access-control-allow-credentials'], 'true');
    assert.equal(answer.headers.vary, 'Origin');
    const counts = await refusals(ctx.port);
    assert.ok(counts.mint_not_preflighted >= 1 && counts.mint_subject_missing >= 2 && counts.origin_not_allowed >= 1);
  });

  test('OPTIONS /ticket answers the CORS preflight for an allowed origin only', async () => {
    const preflight = (origin, method = 'POST') => request(ctx.port, 'OPTIONS', '/ticket', {
      Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'x-wsguard-ticket' });
    const allowed = await preflight(`http://localhost:${ctx.port}`);
    assert.equal(allowed.status, 204);
    for (const [name, value] of Object.entries({
      'access-control-allow-origin': `http://localhost:${ctx.port}`, 'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'POST', 'access-control-allow-headers': 'X-Wsguard-Ticket',
      'access-control-max-age': '600', vary: 'Origin' })) assert.equal(allowed.headers[name], value, name);
    const foreign = await preflight('http://evil.example');
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
    assert.equal((await preflight(ctx.origin, 'DELETE')).status, 405);
  });
}));

describe('Beast demo with ws: connection flood', { skip, timeout: 60000 }, withServer(['--handshake-rate', '2', '--handshake-burst', '10'], (ctx) => {
  test('a flood of 50 upgrade attempts gets 429 with Retry-After', async () => {
    const attempts = await Promise.all(Array.from({ length: 50 }, () =>
      tryWebSocket(ctx.url, { protocols: ['wsguard.v1'], origin: ctx.origin })));
    const limited = attempts.filter((a) => a.status === 429);
    assert.equal(attempts.filter((a) => a.opened).length, 0);
    assert.ok(limited.length >= 30, `only ${limited.length} of 50 were rate limited`);
    for (const attempt of limited) {
      assert.match(attempt.headers['retry-after'] ?? '', /^[1-9][0-9]*$/, 'Retry-After is a whole number of seconds');
    }
    assert.ok((await refusals(ctx.port)).rate_limited >= 30);
  });
}));

describe('Beast demo with ws: connection cap', { skip, timeout: 60000 }, withServer(['--max-connections', '3'], (ctx) => {
  test('the fourth open socket from one address gets 429, and a closed one frees its slot', async () => {
    const open = [];
    try {
      for (let i = 0; i < 3; i++) {
        const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', await fetchTicket(ctx.port)], origin: ctx.origin, keepOpen: true });
        assert.equal(result.opened, true, `socket ${i} refused with ${result.status}`);
        open.push(result.socket);
      }
      const fourth = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', await fetchTicket(ctx.port)], origin: ctx.origin });
      assert.equal(fourth.status, 429);
      assert.ok((await refusals(ctx.port)).too_many_connections >= 1);

      await new Promise((resolve) => { open[0].once('close', resolve); open.shift().close(1000); });
      let reopened = null;
      for (let attempt = 0; attempt < 20 && !reopened?.opened; attempt++) {  // the server sees the close shortly after
        reopened = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', await fetchTicket(ctx.port)], origin: ctx.origin, send: ['back'] });
        if (!reopened.opened) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(reopened.opened, true);
    } finally {
      for (const socket of open) socket.terminate();
    }
  });
}));

describe('Beast demo with ws: after the upgrade', { skip, timeout: 60000 },
  withServer(['--max-message', '4096', '--message-rate', '5', '--message-burst', '10'], (ctx) => {
    test('a message over the cap closes the socket with 1009', async () => {
      const ticket = await fetchTicket(ctx.port);
      const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: ctx.origin, send: ['x'.repeat(4096), 'y'.repeat(4097)] });
      assert.equal(result.opened, true);
      assert.deepEqual(result.echoes, ['x'.repeat(4096)], 'a message exactly at the cap is echoed');
      assert.equal(result.closeCode, 1009);
    });

    test('a burst of messages over the per-connection rate closes the socket with 1008', async () => {
      const ticket = await fetchTicket(ctx.port);
      const burst = Array.from({ length: 100 }, (_, i) => `m${i}`);
      const result = await tryWebSocket(ctx.url, { protocols: ['wsguard.v1', ticket], origin: ctx.origin, send: burst });
      assert.equal(result.opened, true);
      assert.equal(result.closeCode, 1008);
      assert.ok(result.echoes.length >= 10 && result.echoes.length < 100, `${result.echoes.length} echoes`);
      assert.deepEqual(result.echoes, burst.slice(0, result.echoes.length), 'echoes arrive in order until the limit');
      assert.ok((await refusals(ctx.port)).message_rate_limited >= 1);
    });
  }));

describe('Beast demo with ws: shutdown', { skip, timeout: 60000 }, () => {
  test('SIGTERM with a socket open exits cleanly', async () => {
    const server = await startServer(DEMO);
    let open = null;
    try {
      const origin = `http://127.0.0.1:${server.port}`;
      open = await tryWebSocket(`ws://127.0.0.1:${server.port}/ws`, { protocols: ['wsguard.v1', await fetchTicket(server.port)], origin, keepOpen: true });
      assert.equal(open.opened, true);
    } finally {
      const status = await stopServer(server);
      open?.socket?.terminate();
      assert.deepEqual(status, { code: 0, signal: null });
    }
  });
});
