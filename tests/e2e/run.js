// Entry point for `meson test`: runs the end-to-end tests with Node's test
// runner, or exits 77 (meson's SKIP) with the reason when a dependency is
// missing. Set WSGUARD_E2E_REQUIRED=1 (CI) to make a missing dependency fail.
//   node run.js ws        the `ws` client tests (Beast and websocketpp servers)
//   node run.js browser   the headless Chromium tests (Beast demo)
//   node run.js admission attacker vs victim on two loopback addresses (Beast demo, raw_epoll,
//                         websocketpp; uWebSockets and Crow when built from their sources)
//   node run.js proxies   behind real nginx and HAProxy (Beast demo, raw_epoll, Chromium)
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const groups = {
  ws: { files: ['beast_ws.test.js', 'websocketpp_ws.test.js'], packages: ['ws'] },
  browser: { files: ['beast_browser.test.js', 'browser_fetch_metadata.test.js'], packages: ['ws', 'playwright-core'], chromium: true },
  admission: { files: ['admission.test.js'], packages: ['ws'] },
  proxies: {
    files: ['proxy_beast.test.js', 'proxy_raw_epoll.test.js', 'proxy_browser.test.js'],
    packages: ['ws', 'playwright-core'], chromium: true, programs: ['nginx', 'haproxy'], rawEpoll: true,
  },
};
const group = groups[process.argv[2]];
if (!group) {
  console.error(`usage: node run.js ${Object.keys(groups).join('|')}`);
  process.exit(2);
}

function unavailable(why) {
  // CI must run these, never skip them: CI=true (as CI runs .ci/run) makes a missing dependency fail.
  const required = process.env.WSGUARD_E2E_REQUIRED === '1' || process.env.CI === 'true';
  console.log(`${required ? 'FAIL' : 'SKIP'}: ${why}`);
  process.exit(required ? 1 : 77);
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 18) unavailable(`Node ${process.versions.node} is too old for node --test (need 18+)`);
for (const name of group.packages) {
  if (!fs.existsSync(path.join(__dirname, 'node_modules', name, 'package.json')))
    unavailable(`node package '${name}' is missing: run \`npm ci\` in ${__dirname} (.ci/setup does)`);
}
const chromium = process.env.WSGUARD_CHROMIUM || '/usr/bin/chromium';
if (group.chromium && !fs.existsSync(chromium)) unavailable(`no Chromium at ${chromium}: apt install chromium`);
if (!process.env.WSGUARD_BEAST_DEMO || !fs.existsSync(process.env.WSGUARD_BEAST_DEMO))
  unavailable(`the Beast demo was not built (${process.env.WSGUARD_BEAST_DEMO || 'WSGUARD_BEAST_DEMO unset'})`);
if (group.rawEpoll && !(process.env.WSGUARD_RAW_EPOLL && fs.existsSync(process.env.WSGUARD_RAW_EPOLL)))
  unavailable(`raw_epoll was not built (${process.env.WSGUARD_RAW_EPOLL || 'WSGUARD_RAW_EPOLL unset'})`);
for (const program of group.programs ?? []) {  // Debian installs them in /usr/sbin, which a user's PATH may lack
  const found = ['/usr/sbin', '/usr/bin', ...(process.env.PATH || '').split(':')].some((dir) => fs.existsSync(path.join(dir, program)));
  if (!found) unavailable(`no ${program}: apt install ${program === 'nginx' ? 'nginx-light' : program} (.ci/setup does)`);
}

// One file at a time keeps Chromium and the flood tests from competing for the
// CPU. Node 18.19+ and 20.10+ take --test-concurrency; older ones get one run per file.
const concurrencyFlag = major > 20 || (major === 20 && minor >= 10) || (major === 18 && minor >= 19);
const runs = concurrencyFlag ? [['--test-concurrency=1', ...group.files]] : group.files.map((file) => [file]);
let status = 0;
for (const files of runs) {
  const run = spawnSync(process.execPath, ['--test', ...files], { cwd: __dirname, stdio: 'inherit', timeout: 240000 });
  if (run.error) console.error(run.error.message);
  if (run.status !== 0) status = 1;
}
process.exit(status);
