// Real proxies in front of the example servers: Debian's nginx and HAProxy,
// each started on a free 127.0.0.1 port with a configuration written into a
// fresh temporary directory, and stopped by PID. Clients are told apart by the
// loopback address they bind (127.0.0.2, 127.0.0.3, ...: all of 127/8 is
// loopback on Linux), so each one is a distinct real client to the proxy.
//
// The nginx and HAProxy sections below are the ones docs/behind-a-proxy.md
// shows; only the process settings around them (pid, logs, temp paths,
// foreground) are test-only.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const WebSocket = require('ws');
const { startServer, stopServer, request, TICKET_MARKER } = require('./servers');

const READY_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 5000;
const ATTEMPTS = 3;  // a free port can be taken between probing and binding it

// Debian installs both in /usr/sbin, which a user's PATH may lack (run.js searches the same places).
const findProgram = (name) => ['/usr/sbin', '/usr/bin', ...(process.env.PATH || '').split(':')]
  .map((dir) => path.join(dir, name)).find((candidate) => fs.existsSync(candidate));
const NGINX = process.env.WSGUARD_NGINX || findProgram('nginx');
const HAPROXY = process.env.WSGUARD_HAPROXY || findProgram('haproxy');

// A port that was free a moment ago on 127.0.0.1.
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// Resolves once 127.0.0.1:port accepts a connection; rejects when the process
// exits first or after READY_TIMEOUT_MS.
async function waitForPort(port, proc) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exited) throw new Error(`${proc.name} exited (${proc.exited.code ?? proc.exited.signal}) before listening\n${proc.log}`);
    const open = await new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => { socket.destroy(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${proc.name} did not listen on ${port} within ${READY_TIMEOUT_MS} ms\n${proc.log}`);
}

function spawnLogged(name, exe, args) {
  const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = { name, child, log: '', exited: null };
  child.stdout.on('data', (chunk) => { proc.log += chunk; });
  child.stderr.on('data', (chunk) => { proc.log += chunk; });
  child.on('error', (error) => { proc.log += `spawn: ${error.message}\n`; proc.exited = { code: null, signal: 'spawn-error' }; });
  child.on('exit', (code, signal) => { proc.exited = { code, signal }; });
  return proc;
}

// SIGTERM to the PID we started, SIGKILL if it has not exited in time.
function stopProcess(proc) {
  if (!proc || proc.exited) return Promise.resolve(proc?.exited ?? null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    proc.child.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
    proc.child.kill('SIGTERM');
  });
}

// Starts a proxy whose configuration lives in `dir` and resolves once it
// listens on `port`; on failure stops it, removes `dir` and rejects.
async function startProxyProcess(name, exe, args, dir, port) {
  const proc = spawnLogged(name, exe, args);
  proc.dir = dir;
  proc.port = port;
  try {
    await waitForPort(port, proc);
  } catch (error) {
    await stopProcess(proc);
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return proc;
}

// The nginx server block in front of the demo: WebSocket upgrade passed on,
// Host kept with its port, the client appended to X-Forwarded-For, and any
// Forwarded header a client sent dropped (nginx does not maintain it, and the
// demo would read it before X-Forwarded-For).
// dropClientForwarded false leaves that line out: the control that shows why it is there.
function nginxServerBlock({ port, upstreamPort, host = '$http_host', dropClientForwarded = true }) {
  return `
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream wsguard_demo {
        server 127.0.0.1:${upstreamPort};
    }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://wsguard_demo;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host ${host};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
${dropClientForwarded ? '            proxy_set_header Forwarded "";\n' : ''}            proxy_read_timeout 1h;
        }
    }`;
}

async function startNginx({ port, upstreamPort, host, dropClientForwarded }) {
  if (!NGINX) throw new Error('no nginx: apt install nginx-light');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-nginx-'));
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, `# test-only: one foreground process, every path inside ${dir}
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
${nginxServerBlock({ port, upstreamPort, host, dropClientForwarded })}
}
`);
  return startProxyProcess('nginx', NGINX, ['-p', dir, '-c', conf, '-e', 'stderr'], dir, port);
}

// HAProxy in front of a server. mode 'tcp' (raw_epoll): every connection to
// the backend opens with a PROXY v2 header that names the client
// (send-proxy-v2). mode 'http' (the Beast demo): HAProxy appends its own
// X-Forwarded-For line and deletes any Forwarded header a client sent.
function haproxySections({ port, upstreamPort, mode = 'tcp' }) {
  if (mode === 'http') {
    return `
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend websocket_in
    bind 127.0.0.1:${port}
    option forwardfor
    http-request del-header Forwarded
    default_backend wsguard_demo

backend wsguard_demo
    server app1 127.0.0.1:${upstreamPort}`;
  }
  return `
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend websocket_in
    bind 127.0.0.1:${port}
    default_backend wsguard_raw_epoll

backend wsguard_raw_epoll
    server app1 127.0.0.1:${upstreamPort} send-proxy-v2`;
}

async function startHaproxy({ port, upstreamPort, mode }) {
  if (!HAPROXY) throw new Error('no haproxy: apt install haproxy');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsguard-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, `# test-only: foreground (-db), one thread, no log
global
    nbthread 1
${haproxySections({ port, upstreamPort, mode })}
`);
  return startProxyProcess('haproxy', HAPROXY, ['-f', cfg, '-db'], dir, port);
}

async function stopProxy(proc) {
  const status = await stopProcess(proc);
  if (proc?.dir) fs.rmSync(proc.dir, { recursive: true, force: true });
  return status;
}

// A server (`exe`) behind a proxy (`startProxy`). The server's flags depend on
// the proxy's port (its Host and Origin), so the proxy port is chosen first;
// if another process takes it before the proxy binds, both start again.
async function startBehind(exe, serverArgs, startProxy) {
  let lastError = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freePort();
    const server = await startServer(exe, serverArgs(port));
    try {
      const proxy = await startProxy({ port, upstreamPort: server.port });
      return { server, proxy, port, origin: `http://127.0.0.1:${port}`, url: `ws://127.0.0.1:${port}/ws` };
    } catch (error) {
      lastError = error;
      await stopServer(server);
    }
  }
  throw lastError;
}

async function stopBehind(pair) {
  if (!pair) return null;
  await stopProxy(pair.proxy);
  return stopServer(pair.server);
}

// The Beast demo's ticket, fetched through the proxy by the client at `localAddress`.
async function demoTicket(port, origin, localAddress) {
  const page = await request(port, 'GET', '/', {}, localAddress);
  const cookie = (page.headers['set-cookie'] ?? [''])[0].split(';')[0];
  const answer = await request(port, 'POST', '/ticket', { Cookie: cookie, Origin: origin, ...TICKET_MARKER }, localAddress);
  if (answer.status !== 200) throw new Error(`POST /ticket answered ${answer.status}: ${answer.body}`);
  return JSON.parse(answer.body).ticket;
}

// raw_epoll's ticket (its login stand-in is a bearer session token).
async function rawEpollTicket(port, origin, localAddress) {
  const answer = await request(port, 'POST', '/ticket',
    { Authorization: 'Bearer demo-session', Origin: origin, 'Content-Length': '0', ...TICKET_MARKER }, localAddress);
  if (answer.status !== 200) throw new Error(`POST /ticket answered ${answer.status}: ${answer.body}`);
  return JSON.parse(answer.body).ticket;
}

// One upgrade attempt from `localAddress`; resolves with { status, opened,
// socket, retryAfter } and never rejects. status is 101 when it opened.
function upgrade(url, { localAddress, origin, ticket, headers = {}, keepOpen = false, timeoutMs = 5000 } = {}) {
  return new Promise((resolve) => {
    const outcome = { status: 0, opened: false, socket: null, retryAfter: '', error: null };
    const protocols = ticket ? ['wsguard.v1', ticket] : ['wsguard.v1'];
    const ws = new WebSocket(url, protocols, { origin, headers, localAddress, handshakeTimeout: timeoutMs });
    const timer = setTimeout(() => { outcome.error = 'timeout'; ws.terminate(); resolve(outcome); }, timeoutMs + 1000);
    const finish = () => { clearTimeout(timer); resolve(outcome); };
    ws.on('unexpected-response', (req, res) => {
      outcome.status = res.statusCode;
      outcome.retryAfter = res.headers['retry-after'] ?? '';
      res.resume();
      req.destroy();
      finish();
    });
    ws.on('open', () => {
      outcome.status = 101;
      outcome.opened = true;
      if (keepOpen) {
        outcome.socket = ws;
        return finish();
      }
      ws.on('message', () => ws.close(1000));
      ws.send('ping');
    });
    ws.on('close', finish);
    ws.on('error', (error) => { outcome.error = outcome.error ?? error.message; finish(); });
  });
}

// { 101: n, 401: n, 429: n, ... } for a list of outcomes.
function statusCounts(outcomes) {
  const counts = {};
  for (const { status } of outcomes) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

// The demo's refusal lines ("refused <reason> ... address=<client>") logged since `from`.
function refusalLines(server, from = 0) {
  return server.log.slice(from).split('\n').filter((line) => line.startsWith('refused '));
}

module.exports = {
  NGINX, HAPROXY, freePort, startNginx, startHaproxy, stopProxy, startBehind, stopBehind,
  demoTicket, rawEpollTicket, upgrade, statusCounts, refusalLines, nginxServerBlock, haproxySections,
};
