// The websocketpp example (validate handler) against Node's `ws`.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startServer, stopServer, fetchTicket, tryWebSocket } = require('./lib/servers');

const SERVER = process.env.WSGUARD_WEBSOCKETPP_DEMO;
const skip = SERVER && fs.existsSync(SERVER) ? false : 'the websocketpp example was not built (apt install libwebsocketpp-dev)';

describe('websocketpp example with ws', { skip, timeout: 60000 }, () => {
  let server;
  let origin;
  let url;

  before(async () => {
    server = await startServer(SERVER, ['--max-message', '1024']);
    origin = `http://127.0.0.1:${server.port}`;
    url = `ws://127.0.0.1:${server.port}/ws`;
  });

  after(async () => {
    const status = await stopServer(server);
    assert.deepEqual(status, { code: 0, signal: null }, 'the example exits cleanly on SIGTERM');
  });

  test('a valid ticket is accepted in the validate handler and the socket echoes', async () => {
    const ticket = await fetchTicket(server.port);
    const result = await tryWebSocket(url, { protocols: ['wsguard.v1', ticket], origin, send: ['hi websocketpp'] });
    assert.equal(result.opened, true, `refused with ${result.status}`);
    assert.equal(result.protocol, 'wsguard.v1');
    assert.deepEqual(result.echoes, ['hi websocketpp']);
  });

  test('a bad Origin is refused with 403 before 101', async () => {
    const ticket = await fetchTicket(server.port);
    const result = await tryWebSocket(url, { protocols: ['wsguard.v1', ticket], origin: 'http://evil.example' });
    assert.equal(result.opened, false);
    assert.equal(result.status, 403);
  });

  // websocketpp merges repeated lines into one "a, b" value: the guard sees one
  // Origin that is not a single serialized origin (origin_malformed, 403).
  test('two Origin lines, merged by websocketpp, are refused with 403', async () => {
    const ticket = await fetchTicket(server.port);
    const result = await tryWebSocket(url, { protocols: ['wsguard.v1', ticket], headers: { Origin: [origin, origin] } });
    assert.equal(result.opened, false);
    assert.equal(result.status, 403);
  });

  test('a missing or replayed ticket is refused with 401', async () => {
    const missing = await tryWebSocket(url, { protocols: ['wsguard.v1'], origin });
    assert.equal(missing.status, 401);
    const ticket = await fetchTicket(server.port);
    assert.equal((await tryWebSocket(url, { protocols: ['wsguard.v1', ticket], origin, send: ['once'] })).opened, true);
    assert.equal((await tryWebSocket(url, { protocols: ['wsguard.v1', ticket], origin })).status, 401);
  });

  test('a message over the cap closes with 1009', async () => {
    const ticket = await fetchTicket(server.port);
    const result = await tryWebSocket(url, { protocols: ['wsguard.v1', ticket], origin, send: ['z'.repeat(2048)] });
    assert.equal(result.opened, true);
    assert.equal(result.closeCode, 1009);
  });
});
