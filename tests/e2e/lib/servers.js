// Starts and stops the example servers, and the small HTTP helpers the tests
// talk to them with. Everything stays on 127.0.0.1 with ephemeral ports.
'use strict';

const { spawn } = require('node:child_process');
const http = require('node:http');
const readline = require('node:readline');
const WebSocket = require('ws');

const START_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;

// Spawns `exe --port 0 ...args` and resolves once it prints "listening <port>".
function startServer(exe, args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(exe, ['--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const server = { child, port: 0, log: '', exited: null };
    child.stderr.on('data', (chunk) => { server.log += chunk; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${exe} did not print "listening <port>" within ${START_TIMEOUT_MS} ms\n${server.log}`));
    }, START_TIMEOUT_MS);
    child.on('error', (error) => { clearTimeout(timer); reject(error); });
    child.on('exit', (code, signal) => {
      server.exited = { code, signal };
      clearTimeout(timer);
      if (!server.port) reject(new Error(`${exe} exited (${code ?? signal}) before listening\n${server.log}`));
    });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening (\d+)$/.exec(line);
      if (match && !server.port) {
        server.port = Number(match[1]);
        clearTimeout(timer);
        resolve(server);
      }
    });
  });
}

// SIGTERM, then SIGKILL if it does not exit in time. Resolves with the exit status.
function stopServer(server) {
  if (!server) return Promise.resolve(null);
  if (server.exited) return Promise.resolve(server.exited);
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    server.child.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
    server.child.kill('SIGTERM');
  });
}

// A plain HTTP request (from `localAddress`, a loopback address, when given);
// resolves with { status, headers, body }.
function request(port, method, path, headers = {}, localAddress = undefined) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, localAddress, timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

// The demo's login stand-in: GET / sets the session cookie.
async function sessionCookie(port) {
  const page = await request(port, 'GET', '/');
  const setCookie = page.headers['set-cookie'];
  if (!setCookie) throw new Error('GET / did not set a session cookie');
  return setCookie[0].split(';')[0];
}

// The header a page sends with POST /ticket (mint_guard refuses the request without it).
const TICKET_MARKER = { 'X-Wsguard-Ticket': '1' };

// POST /ticket as a logged-in caller on `origin`; resolves with the ticket.
async function fetchTicket(port, origin = `http://127.0.0.1:${port}`, cookie = null) {
  const answer = await request(port, 'POST', '/ticket',
    { Cookie: cookie ?? await sessionCookie(port), Origin: origin, ...TICKET_MARKER });
  if (answer.status !== 200) throw new Error(`POST /ticket answered ${answer.status}: ${answer.body}`);
  return JSON.parse(answer.body).ticket;
}

// Refusal counters from GET /metrics, e.g. { origin_null: 1 }.
async function refusals(port) {
  const answer = await request(port, 'GET', '/metrics');
  const counts = {};
  for (const match of answer.body.matchAll(/^wsguard_refusals\{reason="([a-z_]+)"\} (\d+)$/gm)) counts[match[1]] = Number(match[2]);
  return counts;
}

// Opens a socket with `ws`; resolves with what happened, never rejects:
// { opened, protocol, status, headers, closeCode, echoes }.
function tryWebSocket(url, { protocols = [], origin, headers, send = [], timeoutMs = 5000, keepOpen = false } = {}) {
  return new Promise((resolve) => {
    const outcome = { opened: false, protocol: '', status: 0, headers: {}, closeCode: 0, echoes: [], error: null, socket: null };
    const ws = new WebSocket(url, protocols, { origin, headers, handshakeTimeout: timeoutMs, maxPayload: 1 << 24 });
    const finish = () => { clearTimeout(timer); resolve(outcome); };
    const timer = setTimeout(() => { outcome.error = 'timeout'; ws.terminate(); finish(); }, timeoutMs);
    ws.on('unexpected-response', (req, res) => {
      outcome.status = res.statusCode;
      outcome.headers = res.headers;
      res.resume();
      req.destroy();
      finish();
    });
    ws.on('open', () => {
      outcome.opened = true;
      outcome.protocol = ws.protocol;
      outcome.socket = ws;
      for (const message of send) ws.send(message);
      if (send.length === 0 && keepOpen) finish();
    });
    ws.on('message', (data) => {
      outcome.echoes.push(data.toString());
      if (!keepOpen && outcome.echoes.length === send.length) ws.close(1000);
    });
    ws.on('close', (code) => { outcome.closeCode = code; finish(); });
    ws.on('error', (error) => { outcome.error = outcome.error ?? error.message; });
  });
}

module.exports = { startServer, stopServer, request, sessionCookie, fetchTicket, refusals, tryWebSocket, TICKET_MARKER };
