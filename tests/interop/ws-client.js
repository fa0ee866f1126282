#!/usr/bin/env node
// Interop client: the `ws` package (8.x) against a WebSocket echo endpoint.
//
//   node ws-client.js URL [--deflate] [--ca CERT.pem] [--timeout MS]
//
// Sends text and binary messages (small, 64 KiB, 1 MiB - 1 byte), checks that
// every echo comes back unchanged and with the same type, then pings (waits
// for the pong) and closes with 1000.  Prints ONE line of JSON on stdout:
//
//   {"ok": bool, "extensions": "<Sec-WebSocket-Extensions response header>",
//    "negotiated": "<ws.extensions>", "messages": [{name, type, size, ok,
//    error?}], "pong": bool, "pongData": "...", "closeCode": N,
//    "closeReason": "...", "errors": [...]}
//
// Exit status 0 if everything checked out, 1 otherwise, 2 on usage errors.
// Everything is bounded by --timeout (default 20 s): the script never hangs.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const WebSocket = require('ws');

function usage(msg) {
  if (msg) process.stderr.write(`ws-client: ${msg}\n`);
  process.stderr.write('usage: node ws-client.js URL [--deflate] [--ca CERT] [--timeout MS]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
let url = null;
let deflate = false;
let ca = null;
let timeoutMs = 20000;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--deflate') deflate = true;
  else if (a === '--ca') ca = argv[++i];
  else if (a === '--timeout') timeoutMs = Number(argv[++i]);
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else if (url === null) url = a;
  else usage('more than one URL');
}
if (!url) usage('no URL');
if (!(timeoutMs > 0)) usage('bad --timeout');

// Deterministic pseudo-random payloads (the same on every run).
function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}
function textOf(size, seed) {
  // ASCII words: compressible but not trivially so.
  const next = prng(seed);
  const alphabet = 'abcdefghijklmnopqrstuvwxyz     ,.0123456789';
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = alphabet.charCodeAt(next() % alphabet.length);
  return out.toString('latin1');
}
function binOf(size, seed) {
  const next = prng(seed);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = next() & 0xff;
  return out;
}

const KIB = 1024;
const MIB = 1024 * 1024;
const cases = [
  { name: 'text-small', type: 'text', data: 'h\u00e9llo \u2713 \ud83d\ude80 orchd' },
  { name: 'text-64k', type: 'text', data: textOf(64 * KIB, 1) },
  { name: 'text-1m-1', type: 'text', data: textOf(MIB - 1, 2) },
  { name: 'binary-small', type: 'binary', data: Buffer.from([0, 1, 2, 0xfe, 0xff]) },
  { name: 'binary-64k', type: 'binary', data: binOf(64 * KIB, 3) },
  { name: 'binary-1m-1', type: 'binary', data: binOf(MIB - 1, 4) },
  // Compressible binary: exercises the deflate path with a real ratio.
  { name: 'binary-zeros-256k', type: 'binary', data: Buffer.alloc(256 * KIB) },
  { name: 'text-empty', type: 'text', data: '' },
  { name: 'binary-empty', type: 'binary', data: Buffer.alloc(0) },
];

const result = {
  ok: false,
  url,
  deflate,
  extensions: null,
  negotiated: null,
  messages: [],
  pong: false,
  pongData: null,
  closeCode: null,
  closeReason: null,
  errors: [],
};

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  result.ok = result.errors.length === 0 &&
    result.messages.length === cases.length &&
    result.messages.every((m) => m.ok) &&
    result.pong && result.closeCode === 1000;
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(result.ok ? 0 : 1));
}

const timer = setTimeout(() => {
  result.errors.push(`timed out after ${timeoutMs} ms (messages done: ${result.messages.length})`);
  try { ws.terminate(); } catch (e) { /* ignore */ }
  finish();
}, timeoutMs);

const options = {
  perMessageDeflate: deflate ? { threshold: 0 } : false,
  maxPayload: 4 * MIB,
  handshakeTimeout: Math.min(timeoutMs, 10000),
};
if (ca) {
  options.ca = fs.readFileSync(ca);
  // The certificate is for localhost and IP 127.0.0.1; verify it for real.
  options.rejectUnauthorized = true;
}

const ws = new WebSocket(url, options);
ws.binaryType = 'nodebuffer';

ws.on('upgrade', (res) => {
  result.extensions = res.headers['sec-websocket-extensions'] || '';
});
ws.on('error', (err) => {
  result.errors.push(`error: ${err && err.message ? err.message : String(err)}`);
  finish();
});
ws.on('unexpected-response', (req, res) => {
  result.errors.push(`unexpected response: HTTP ${res.statusCode}`);
  finish();
});

let idx = 0;
function sendNext() {
  if (idx >= cases.length) {
    doPing();
    return;
  }
  const c = cases[idx];
  ws.send(c.data, { binary: c.type === 'binary' }, (err) => {
    if (err) result.errors.push(`send ${c.name}: ${err.message}`);
  });
}

function check(c, data, isBinary) {
  const entry = { name: c.name, type: c.type, size: Buffer.byteLength(c.data), ok: false };
  const gotType = isBinary ? 'binary' : 'text';
  if (gotType !== c.type) {
    entry.error = `echo came back as ${gotType}`;
  } else if (c.type === 'text') {
    const s = data.toString('utf8');
    entry.ok = s === c.data;
    if (!entry.ok) entry.error = `text differs (got ${Buffer.byteLength(s)} bytes)`;
  } else {
    entry.ok = Buffer.compare(data, c.data) === 0;
    if (!entry.ok) entry.error = `binary differs (got ${data.length} bytes)`;
  }
  if (entry.ok) {
    entry.sha256 = crypto.createHash('sha256').update(data).digest('hex').slice(0, 16);
  }
  result.messages.push(entry);
}

let pingPayload = Buffer.from('orchd-ping-' + Date.now());
let state = 'messages';

function doPing() {
  state = 'ping';
  ws.ping(pingPayload);
}

ws.on('open', () => {
  result.negotiated = String(ws.extensions || '');
  sendNext();
});

ws.on('message', (data, isBinary) => {
  if (state !== 'messages' || idx >= cases.length) {
    result.errors.push(`unexpected message (${isBinary ? 'binary' : 'text'}, ${data.length} bytes)`);
    return;
  }
  check(cases[idx], data, isBinary);
  idx++;
  sendNext();
});

ws.on('pong', (data) => {
  if (state !== 'ping') {
    // Unsolicited pongs are allowed (RFC 6455 5.5.3); just note them.
    return;
  }
  result.pong = Buffer.compare(data, pingPayload) === 0;
  result.pongData = data.toString('utf8');
  if (!result.pong) result.errors.push(`pong payload differs: ${JSON.stringify(result.pongData)}`);
  state = 'closing';
  ws.close(1000, 'bye');
});

ws.on('close', (code, reason) => {
  result.closeCode = code;
  result.closeReason = reason.toString('utf8');
  if (state !== 'closing') result.errors.push(`closed early in state ${state} (code ${code})`);
  finish();
});
