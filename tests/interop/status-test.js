#!/usr/bin/env node
// Drives orchd's status page (GET /status) in Debian's headless Chromium.
//
//   node status-test.js --page URL --user-data-dir DIR [--screenshot PNG]
//                       [--chromium /usr/bin/chromium] [--timeout MS]
//
// A conversation with the test on stdin/stdout, one JSON object a line:
//   1. Once the page shows its first sample from /stats, prints
//        {"phase": "ready", "shown": {<what the page displays>}}
//   2. Reads one line from stdin: {"authenticated": N, "workers": W,
//      "received": E} (what the test has made true meanwhile; "received"
//      optional), waits until the page shows at least N authenticated
//      connections, W worker rows and E events received, takes the
//      screenshot and prints
//        {"phase": "done", "ok": bool, "shown": {...}, "samples": n,
//         "errors": [...], "console": [...], "screenshot": path|null}
// Exit status 0 if the page caught up, 1 otherwise, 2 on usage errors.
// The whole run is bounded by --timeout (default 60 s).
'use strict';

const readline = require('readline');

const argv = process.argv.slice(2);
const opt = {
  page: null,
  userDataDir: null,
  screenshot: null,
  chromium: '/usr/bin/chromium',
  timeout: 60000,
};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--page') opt.page = argv[++i];
  else if (a === '--user-data-dir') opt.userDataDir = argv[++i];
  else if (a === '--screenshot') opt.screenshot = argv[++i];
  else if (a === '--chromium') opt.chromium = argv[++i];
  else if (a === '--timeout') opt.timeout = Number(argv[++i]);
  else {
    process.stderr.write(`status-test: unknown argument ${a}\n`);
    process.exit(2);
  }
}
if (!opt.page || !opt.userDataDir) {
  process.stderr.write('usage: node status-test.js --page URL --user-data-dir DIR ' +
                       '[--screenshot PNG] [--chromium PATH] [--timeout MS]\n');
  process.exit(2);
}

const { chromium } = require('playwright-core');

const out = {
  phase: 'done',
  ok: false,
  shown: null,
  samples: 0,
  errors: [],
  console: [],
  screenshot: null,
};
let context = null;
let page = null;
let printed = false;

function emit(code) {
  if (printed) return;
  printed = true;
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(code));
}

const hard = setTimeout(() => {
  out.errors.push(`hard timeout after ${opt.timeout} ms`);
  const c = context;
  context = null;
  if (c) c.close().catch(() => {});
  setTimeout(() => emit(1), 2000).unref();
}, opt.timeout);
hard.unref();

// What the page displays, read from its DOM (not from its data).
function readShown() {
  const t = (id) => (document.getElementById(id) || {}).textContent || '';
  const n = (id) => {
    const v = parseInt(t(id).replace(/[^0-9]/g, ''), 10);
    return Number.isFinite(v) ? v : null;
  };
  return {
    open: n('conn-open'),
    authenticated: n('conn-auth'),
    orchestrators: n('conn-orchs'),
    max: n('conn-max'),
    delivered: n('tot-delivered'),
    received: n('tot-received'),
    redis: t('relay-redis'),
    database: t('db-state'),
    live: t('live'),
    workerRows: document.querySelectorAll('#workers-body tr').length,
    orchestratorRows: document.querySelectorAll('#orchs-body tr').length,
    workerPids: Array.from(document.querySelectorAll('#workers-body tr'))
      .map((tr) => tr.children[1].textContent),
  };
}

function nextLine(rl) {
  return new Promise((resolve, reject) => {
    rl.once('line', resolve);
    rl.once('close', () => reject(new Error('stdin closed')));
  });
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin });
  context = await chromium.launchPersistentContext(opt.userDataDir, {
    executablePath: opt.chromium,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-dev-shm-usage',
    ],
    viewport: { width: 1280, height: 900 },
    timeout: Math.min(opt.timeout, 30000),
  });
  page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => {
    if (out.console.length < 200) out.console.push(`${m.type()}: ${m.text()}`.slice(0, 500));
  });
  page.on('pageerror', (e) => out.errors.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // Anything but /stats would be an external asset: there must be none.
    out.errors.push(`request failed: ${r.url()}`);
  });
  const foreign = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    const base = new URL(opt.page);
    if (u.origin !== base.origin) foreign.push(r.url());
  });
  await page.goto(opt.page, { timeout: 15000, waitUntil: 'load' });
  await page.waitForFunction(() => window.__orchdStatus && window.__orchdStatus.samples >= 1,
                             null, { timeout: 15000, polling: 100 });
  process.stdout.write(JSON.stringify({ phase: 'ready', shown: await page.evaluate(readShown) }) + '\n');

  const want = JSON.parse(await nextLine(rl));
  rl.close();
  try {
    await page.waitForFunction((w) => {
      const n = (id) => parseInt((document.getElementById(id).textContent || '')
        .replace(/[^0-9]/g, ''), 10);
      return n('conn-auth') >= w.authenticated &&
        (w.received === undefined || n('tot-received') >= w.received) &&
        document.querySelectorAll('#workers-body tr').length >= w.workers;
    }, want, { timeout: 20000, polling: 200 });
    out.ok = true;
  } catch (e) {
    out.errors.push(`the page did not catch up: ${e.message}`);
  }
  out.shown = await page.evaluate(readShown);
  out.samples = await page.evaluate(() => window.__orchdStatus.samples);
  if (foreign.length) {
    out.ok = false;
    out.errors.push(`requests to other origins: ${foreign.join(' ')}`);
  }
  if (opt.screenshot) {
    await page.screenshot({ path: opt.screenshot, fullPage: true, timeout: 10000 });
    out.screenshot = opt.screenshot;
  }
  if (out.errors.length) out.ok = false;
}

main()
  .catch(async (e) => {
    out.errors.push(`${e.name || 'Error'}: ${e.message}`);
    if (page && context && opt.screenshot && !out.screenshot) {
      try {
        out.shown = await page.evaluate(readShown);
        await page.screenshot({ path: opt.screenshot, fullPage: true, timeout: 5000 });
        out.screenshot = opt.screenshot;
      } catch (e2) { /* ignore */ }
    }
  })
  .then(async () => {
    const c = context;
    context = null;
    if (c) {
      try { await c.close(); } catch (e) { out.errors.push(`close: ${e.message}`); }
    }
    emit(out.ok ? 0 : 1);
  });
