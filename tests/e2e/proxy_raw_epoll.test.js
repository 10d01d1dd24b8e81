// raw_epoll behind HAProxy with send-proxy-v2 (docs/behind-a-proxy.md): the
// PROXY v2 header names each real client, so the per-client limits and the
// refusal reports count it; only the trusted proxy may send such a header.
// Also: raw_epoll's own 400/431 refusal lines are rate limited.
'use strict';

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startServer, stopServer } = require('./lib/servers');
const { HAPROXY, startHaproxy, startBehind, stopBehind, rawEpollTicket, upgrade, statusCounts, refusalLines } = require('./lib/proxies');

const RAW_EPOLL = process.env.WSGUARD_RAW_EPOLL;
const skip = !RAW_EPOLL ? 'WSGUARD_RAW_EPOLL is not set (raw_epoll was not built)' : !HAPROXY ? 'no haproxy (apt install haproxy)' : false;

const behindHaproxy = (port) => [
  '--allow-host', `127.0.0.1:${port}`, '--allow-origin', `http://127.0.0.1:${port}`,
  '--trusted-proxy', '127.0.0.1', '--proxy-protocol',
  '--handshake-rate', '1', '--handshake-burst', '10', '--max-connections', '3'];

// Writes `bytes` on a raw connection from `localAddress` and resolves with the
// status line of the answer ('' if the server closed without one), then closes.
function rawExchange(port, localAddress, bytes) {
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect({ host: '127.0.0.1', port, localAddress }, () => socket.write(bytes));
    const timer = setTimeout(() => socket.destroy(), 5000);
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n')) socket.destroy();
    });
    socket.on('close', () => { clearTimeout(timer); resolve(answer.split('\r\n')[0]); });
    socket.on('error', () => {});
  });
}

// A PROXY v2 header (spec section 2.2) claiming TCP over IPv4 from `source`.
function proxyV2Header(source, destination = '127.0.0.1') {
  const signature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addresses = Buffer.alloc(12);
  source.split('.').forEach((octet, i) => { addresses[i] = Number(octet); });
  destination.split('.').forEach((octet, i) => { addresses[4 + i] = Number(octet); });
  addresses.writeUInt16BE(40000, 8);
  addresses.writeUInt16BE(80, 10);
  return Buffer.concat([signature, Buffer.from([0x21, 0x11, 0x00, 12]), addresses]);
}

const upgradeHead = (port, origin, ticket) => `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: ${origin}\r\n` +
  'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wsguard.v1, ${ticket}\r\n\r\n`;

describe('raw_epoll behind HAProxy send-proxy-v2: limits count each real client', { skip, timeout: 60000 }, () => {
  const ctx = {};
  before(async () => { Object.assign(ctx, await startBehind(RAW_EPOLL, behindHaproxy, startHaproxy)); });
  after(async () => {
    const status = await stopBehind(ctx);
    assert.deepEqual(status, { code: 0, signal: null }, 'raw_epoll exits cleanly on SIGTERM');
  });

  const connect = async (localAddress, count, options = {}) => {
    const outcomes = [];
    for (let i = 0; i < count; i++) {
      const ticket = await rawEpollTicket(ctx.port, ctx.origin, localAddress);
      outcomes.push(await upgrade(ctx.url, { localAddress, origin: ctx.origin, ticket, ...options }));
    }
    return outcomes;
  };

  test('one client flooding gets 429 while another client still connects', async () => {
    const from = ctx.server.log.length;
    const flooder = statusCounts(await Promise.all(Array.from({ length: 40 }, () =>
      upgrade(ctx.url, { localAddress: '127.0.0.2', origin: ctx.origin }))));
    console.log(`flooder 127.0.0.2 behind haproxy: ${JSON.stringify(flooder)}`);
    assert.equal(flooder[101] ?? 0, 0);
    assert.ok((flooder[429] ?? 0) >= 25, `only ${flooder[429] ?? 0} of 40 were rate limited`);

    const neighbour = statusCounts(await connect('127.0.0.3', 5));
    console.log(`neighbour 127.0.0.3 behind haproxy: ${JSON.stringify(neighbour)}`);
    assert.deepEqual(neighbour, { 101: 5 });

    const lines = refusalLines(ctx.server, from);
    assert.ok(lines.length >= 10, lines.join('\n'));
    for (const line of lines) assert.match(line, / address=127\.0\.0\.2$/, 'the report names the PROXY source');
  });

  test('the connection cap counts each real client', async () => {
    const held = [];
    try {
      const first = await connect('127.0.0.4', 4, { keepOpen: true });
      const second = await connect('127.0.0.5', 3, { keepOpen: true });
      held.push(...first.concat(second).map((o) => o.socket).filter(Boolean));
      console.log(`connection cap 3 behind haproxy: 127.0.0.4 ${JSON.stringify(statusCounts(first))}, ` +
        `127.0.0.5 ${JSON.stringify(statusCounts(second))}`);
      assert.deepEqual(first.map((o) => o.status), [101, 101, 101, 429]);
      assert.deepEqual(second.map((o) => o.status), [101, 101, 101]);
    } finally {
      for (const socket of held) socket.terminate();
    }
  });

  test('a direct client that opens with a PROXY header is refused', async () => {
    const from = ctx.server.log.length;
    const ticket = await rawEpollTicket(ctx.server.port, `http://127.0.0.1:${ctx.server.port}`, '127.0.0.6');
    const head = upgradeHead(ctx.server.port, `http://127.0.0.1:${ctx.server.port}`, ticket);
    const answer = await rawExchange(ctx.server.port, '127.0.0.6', Buffer.concat([proxyV2Header('127.0.0.3'), Buffer.from(head)]));
    assert.equal(answer, 'HTTP/1.1 400 Bad Request');
    assert.deepEqual(refusalLines(ctx.server, from), ['refused proxy_header_from_untrusted_peer http=400 peer=127.0.0.6']);
  });

  test('a direct client without a PROXY header is served as itself', async () => {
    const origin = `http://127.0.0.1:${ctx.server.port}`;
    const ticket = await rawEpollTicket(ctx.server.port, origin, '127.0.0.7');
    const answer = await rawExchange(ctx.server.port, '127.0.0.7', upgradeHead(ctx.server.port, origin, ticket));
    assert.equal(answer, 'HTTP/1.1 101 Switching Protocols');
  });

  test('the trusted proxy address without a PROXY header is refused', async () => {
    const answer = await rawExchange(ctx.server.port, '127.0.0.1', 'GET /ws HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(answer, 'HTTP/1.1 400 Bad Request');
    assert.match(ctx.server.log, /refused proxy_header_missing http=400 peer=127\.0\.0\.1/);
  });
});

describe("raw_epoll's own refusals are rate limited in its log", { skip, timeout: 60000 }, () => {
  test('300 malformed requests write at most the burst plus the rate, and the rest is counted', async () => {
    const server = await startServer(RAW_EPOLL);
    const started = Date.now();
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 30 }, () => rawExchange(server.port, '127.0.0.8', 'NOT HTTP\r\n\r\n')));
    }
    const seconds = (Date.now() - started) / 1000;
    const status = await stopServer(server);
    assert.deepEqual(status, { code: 0, signal: null });
    const written = refusalLines(server).length;
    const suppressed = /refusal log: (\d+) lines suppressed in all/.exec(server.log);
    console.log(`raw_epoll log: 300 malformed requests in ${seconds.toFixed(1)} s, ${written} lines written, ` +
      `${suppressed ? suppressed[1] : 0} suppressed`);
    assert.ok(written <= 50 + Math.ceil(20 * seconds) + 1, `${written} lines in ${seconds} s`);
    assert.ok(suppressed, server.log.slice(-500));
    assert.equal(written + Number(suppressed[1]), 300, 'every refusal is either written or counted');
  });
});

// The configurations in docs/behind-a-proxy.md are the ones these tests run.
describe('docs/behind-a-proxy.md shows the configurations the tests run', () => {
  const fs = require('node:fs');
  const path = require('node:path');
  const { nginxServerBlock, haproxySections } = require('./lib/proxies');
  const doc = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'behind-a-proxy.md'), 'utf8');
  const block = (language, nth = 0) => [...doc.matchAll(new RegExp('```' + language + '\\n([\\s\\S]*?)```', 'g'))][nth]?.[1] ?? '';
  const dedent = (text) => {
    const lines = text.split('\n').filter((line) => line.trim() !== '');
    const indent = Math.min(...lines.map((line) => line.length - line.trimStart().length));
    return lines.map((line) => line.slice(indent)).join('\n');
  };
  const ports = { port: 8000, upstreamPort: 8080 };

  test('the nginx block', () => assert.equal(dedent(block('nginx')), dedent(nginxServerBlock(ports))));
  test('the HAProxy blocks', () => {
    assert.equal(dedent(block('haproxy', 0)), dedent(haproxySections(ports)));
    assert.equal(dedent(block('haproxy', 1)), dedent(haproxySections({ ...ports, mode: 'http' })));
  });
});
