#!/usr/bin/env node
// Drives Debian's headless Chromium with playwright-core through page.html.
//
//   node browser-test.js --page URL --user-data-dir DIR [--screenshot PNG]
//                        [--chromium /usr/bin/chromium] [--ignore-cert]
//                        [--timeout MS]
//
// URL is the full page URL, e.g.
//   http://127.0.0.1:8000/page.html?ws=ws://127.0.0.1:9000/echo
// Prints ONE line of JSON on stdout:
//   {"ok": bool, "result": <window.__result of the page>, "browserVersion":
//    "...", "console": [...], "errors": [...], "screenshot": "path"|null}
// Exit status 0 if the page reported success, 1 otherwise, 2 on usage errors.
// The whole run (launch included) is bounded by --timeout (default 40 s).
'use strict';

const argv = process.argv.slice(2);
const opt = {
  page: null,
  userDataDir: null,
  screenshot: null,
  chromium: '/usr/bin/chromium',
  ignoreCert: false,
  timeout: 40000,
};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--page') opt.page = argv[++i];
  else if (a === '--user-data-dir') opt.userDataDir = argv[++i];
  else if (a === '--screenshot') opt.screenshot = argv[++i];
  else if (a === '--chromium') opt.chromium = argv[++i];
  else if (a === '--ignore-cert') opt.ignoreCert = true;
  else if (a === '--timeout') opt.timeout = Number(argv[++i]);
  else {
    process.stderr.write(`browser-test: unknown argument ${a}\n`);
    process.exit(2);
  }
}
if (!opt.page || !opt.userDataDir) {
  process.stderr.write('usage: node browser-test.js --page URL --user-data-dir DIR ' +
                       '[--screenshot PNG] [--chromium PATH] [--ignore-cert] [--timeout MS]\n');
  process.exit(2);
}

const { chromium } = require('playwright-core');

const out = {
  ok: false,
  result: null,
  browserVersion: null,
  console: [],
  errors: [],
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

// Hard stop: even if Chromium or playwright wedges, print what we have.
const hard = setTimeout(() => {
  out.errors.push(`hard timeout after ${opt.timeout} ms`);
  const c = context;
  context = null;
  if (c) c.close().catch(() => {});
  setTimeout(() => emit(1), 2000).unref();
}, opt.timeout);
hard.unref();

async function main() {
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
  ];
  if (opt.ignoreCert) args.push('--ignore-certificate-errors');
  // launchPersistentContext owns --user-data-dir (launch() refuses it in args).
  context = await chromium.launchPersistentContext(opt.userDataDir, {
    executablePath: opt.chromium,
    headless: true,
    args,
    ignoreHTTPSErrors: opt.ignoreCert,
    viewport: { width: 800, height: 600 },
    timeout: Math.min(opt.timeout, 30000),
  });
  const browser = context.browser();
  if (browser) out.browserVersion = browser.version();
  page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => {
    if (out.console.length < 200) out.console.push(`${m.type()}: ${m.text()}`.slice(0, 500));
  });
  page.on('pageerror', (e) => out.errors.push(`page error: ${e.message}`));
  await page.goto(opt.page, { timeout: 15000, waitUntil: 'load' });
  if (!out.browserVersion) {
    out.browserVersion = await page.evaluate(() => navigator.userAgent);
  }
  await page.waitForFunction(() => window.__result && window.__result.done,
                             null, { timeout: 25000, polling: 100 });
  out.result = await page.evaluate(() => window.__result);
  if (opt.screenshot) {
    await page.screenshot({ path: opt.screenshot, fullPage: true, timeout: 10000 });
    out.screenshot = opt.screenshot;
  }
  out.ok = !!(out.result && out.result.ok) && out.errors.length === 0;
}

main()
  .catch(async (e) => {
    out.errors.push(`${e.name || 'Error'}: ${e.message}`);
    // Whatever the page got to, for the failure message and the screenshot.
    if (page && context) {
      try {
        out.result = await page.evaluate(() => window.__result || null);
      } catch (e2) { /* ignore */ }
      if (opt.screenshot && !out.screenshot) {
        try {
          await page.screenshot({ path: opt.screenshot, fullPage: true, timeout: 5000 });
          out.screenshot = opt.screenshot;
        } catch (e2) { /* ignore */ }
      }
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
