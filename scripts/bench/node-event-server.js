// node-event-server.js: the Node.js baseline for orchd's event fan-out and
// latency benchmarks (scripts/bench/event-fanout).  One process, as the
// TypeScript service it stands for was deployed, doing what that service's
// event path did:
//
//  - accept WebSockets on /daemon/ws (`ws`, no permessage-deflate);
//  - `auth`: parse and check the message, verify the HS256 access token
//    (when --secret is given: signature, exp, orchestrator), enforce 5
//    connections per orchestrator, answer `auth_success`;
//  - `subscribe`: check eventTypes, answer `subscribed`; `heartbeat` gets
//    `heartbeat_ack`; anything before auth gets NOT_AUTHENTICATED;
//  - subscribe to the Redis channel daemon:events with a hand-written RESP
//    reader over `net` (no npm dependency besides `ws`); on each message
//    parse the event record, find the connections it targets (all of them
//    for a record without orchestratorId, or those of orchestratorId),
//    check each one's subscription and scope, and send each the `event`
//    message.  The message is serialized once per event and the same
//    string sent to every recipient (cheaper than per-connection
//    serialization, so the baseline errs on Node's side);
//  - a connection with more than --max-buffered bytes waiting (default 1
//    MiB, orchd's max_send_queue) is closed with 1008, as orchd does.
//
//   node node-event-server.js --port PORT --redis /path/redis.sock
//                             [--secret FILE] [--host 127.0.0.1]
//
// NODE_PATH must provide `ws`.  Prints "listening PORT" once it accepts and
// Redis confirmed the subscription; exits on TERM/INT.  On exit (and on
// SIGUSR2) prints a JSON line of counters on stderr.
'use strict';

const http = require('http');
const net = require('net');
const fs = require('fs');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const opt = { port: 0, host: '127.0.0.1', path: '/daemon/ws', redis: null,
  secret: null, maxBuffered: 1 << 20 };
for (let i = 0; i < args.length; i++) {
  switch (args[i]) {
    case '--port': opt.port = Number(args[++i]); break;
    case '--host': opt.host = args[++i]; break;
    case '--path': opt.path = args[++i]; break;
    case '--redis': opt.redis = args[++i]; break;
    case '--secret':
      opt.secret = fs.readFileSync(args[++i], 'utf8').replace(/\r?\n$/, '');
      break;
    case '--max-buffered': opt.maxBuffered = Number(args[++i]); break;
    default:
      console.error(`node-event-server: unknown argument ${args[i]}`);
      process.exit(2);
  }
}
if (!opt.redis) {
  console.error('node-event-server: --redis SOCKET is required');
  process.exit(2);
}

const MAX_PER_ORCH = 5;
const HEARTBEAT_MS = 600000;
const SCOPE_FOR = { message: 'messages:read', channel: 'channels:read',
  presence: 'presence:read', vp: 'vp:status', call: 'calls:join' };

const stats = { records: 0, bad_records: 0, sends: 0, slow_closed: 0,
  auth_ok: 0, auth_failed: 0 };
const all = new Set();          // authenticated connections
const byOrch = new Map();       // orchestratorId -> Set of connections

function envelope(type, payload) {
  return JSON.stringify({ type, id: crypto.randomUUID(),
    timestamp: new Date().toISOString(), payload });
}

function sendError(ws, code, message, details) {
  const p = { code, message };
  if (details) p.details = details;
  ws.send(envelope('error', p));
}

function b64urlDecode(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

// Verify an HS256 compact JWT; returns its claims or throws.
function verifyToken(tok) {
  const parts = tok.split('.');
  if (parts.length !== 3) throw new Error('malformed token');
  const header = JSON.parse(b64urlDecode(parts[0]).toString('utf8'));
  const claims = JSON.parse(b64urlDecode(parts[1]).toString('utf8'));
  if (opt.secret !== null) {
    if (header.alg !== 'HS256') throw new Error('algorithm');
    const mac = crypto.createHmac('sha256', opt.secret)
      .update(parts[0] + '.' + parts[1]).digest();
    const sig = b64urlDecode(parts[2]);
    if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac))
      throw new Error('signature');
    if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now())
      throw new Error('expired');
  }
  if (claims.type && claims.type !== 'access') throw new Error('token type');
  return claims;
}

function onAuth(ws, st, p) {
  if (typeof p.accessToken !== 'string' || typeof p.daemonId !== 'string' ||
      typeof (p.orchestratorId || p.vpId) !== 'string') {
    sendError(ws, 'INVALID_MESSAGE', 'auth: missing field', 'payload');
    return;
  }
  const orch = p.orchestratorId || p.vpId;
  let claims;
  try {
    claims = verifyToken(p.accessToken);
    if ((claims.orchestratorId || claims.sub) !== orch)
      throw new Error('orchestrator');
    if (claims.daemonId && claims.daemonId !== p.daemonId)
      throw new Error('daemon');
  } catch (e) {
    stats.auth_failed++;
    ws.send(envelope('auth_error', { code: 'AUTH_FAILED', message: e.message }));
    ws.close(4001, 'authentication failed');
    return;
  }
  let set = byOrch.get(orch);
  if (!set) { set = new Set(); byOrch.set(orch, set); }
  if (set.size >= MAX_PER_ORCH && !set.has(st)) {
    stats.auth_failed++;
    ws.send(envelope('auth_error', { code: 'MAX_CONNECTIONS',
      message: 'too many connections' }));
    ws.close(4001, 'max connections');
    return;
  }
  st.authed = true;
  st.orch = orch;
  st.daemon = p.daemonId;
  st.scopes = new Set(Array.isArray(claims.scopes) ? claims.scopes : []);
  set.add(st);
  all.add(st);
  stats.auth_ok++;
  ws.send(envelope('auth_success', { sessionId: crypto.randomUUID(),
    scopes: [...st.scopes], serverTime: new Date().toISOString(),
    heartbeatIntervalMs: HEARTBEAT_MS, connectionId: crypto.randomUUID(),
    protocolVersion: 1 }));
}

function onSubscribe(ws, st, p) {
  const t = p.eventTypes;
  if (!Array.isArray(t) || t.length < 1 || t.length > 50 ||
      !t.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 64)) {
    sendError(ws, 'INVALID_MESSAGE', 'subscribe: eventTypes', 'eventTypes');
    return;
  }
  for (const x of t) st.types.add(x);
  ws.send(envelope('subscribed', { eventTypes: [...st.types], channelIds: [] }));
}

function subscribedTo(st, type) {
  if (st.types.has('*') || st.types.has(type)) return true;
  const dot = type.indexOf('.');
  return dot > 0 && st.types.has(type.slice(0, dot) + '.*');
}

function onClientMessage(ws, st, data) {
  let m;
  try {
    m = JSON.parse(data.toString('utf8'));
  } catch (e) {
    sendError(ws, 'INVALID_MESSAGE', 'not JSON');
    return;
  }
  if (m === null || typeof m !== 'object' || typeof m.type !== 'string') {
    sendError(ws, 'INVALID_MESSAGE', 'no type', 'type');
    return;
  }
  const p = m.payload === undefined ? {} : m.payload;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    sendError(ws, 'INVALID_MESSAGE', 'payload is not an object', 'payload');
    return;
  }
  if (m.type === 'auth') { onAuth(ws, st, p); return; }
  if (!st.authed) {
    sendError(ws, 'NOT_AUTHENTICATED', 'authenticate first');
    return;
  }
  switch (m.type) {
    case 'subscribe': onSubscribe(ws, st, p); break;
    case 'unsubscribe':
      for (const x of p.eventTypes || []) st.types.delete(x);
      ws.send(envelope('subscribed', { eventTypes: [...st.types], channelIds: [] }));
      break;
    case 'heartbeat': {
      const now = Date.now();
      ws.send(envelope('heartbeat_ack', { serverTime: new Date(now).toISOString(),
        nextHeartbeat: new Date(now + HEARTBEAT_MS).toISOString() }));
      break;
    }
    case 'ack': break;
    default: sendError(ws, 'INVALID_MESSAGE', 'unknown type', 'type');
  }
}

// ---- events from Redis ---------------------------------------------------

function deliver(raw) {
  let r;
  stats.records++;
  try {
    r = JSON.parse(raw);
  } catch (e) {
    stats.bad_records++;
    return;
  }
  if (r === null || typeof r !== 'object' || typeof r.id !== 'string' ||
      typeof r.type !== 'string' || r.payload === null ||
      typeof r.payload !== 'object' || Array.isArray(r.payload)) {
    stats.bad_records++;
    return;
  }
  const orch = r.orchestratorId;
  const targets = (!orch || orch === '*') ? all : byOrch.get(orch);
  if (!targets || targets.size === 0) return;
  const dot = r.type.indexOf('.');
  const scope = SCOPE_FOR[dot > 0 ? r.type.slice(0, dot) : r.type];
  let msg = null;
  for (const st of targets) {
    if (!st.authed || (r.daemonId && r.daemonId !== st.daemon)) continue;
    if (!subscribedTo(st, r.type) || (scope && !st.scopes.has(scope))) continue;
    if (msg === null) {
      msg = JSON.stringify({ type: 'event', id: crypto.randomUUID(),
        timestamp: new Date().toISOString(), payload: {
          eventId: r.id, eventType: r.type, data: r.payload,
          requiresAck: r.requiresAck === true, priority: r.priority | 0,
          occurredAt: r.timestamp || new Date().toISOString() } });
    }
    if (st.ws.bufferedAmount > opt.maxBuffered) {
      stats.slow_closed++;
      st.ws.close(1008, 'slow consumer');
      forget(st);
      continue;
    }
    st.ws.send(msg);
    stats.sends++;
  }
}

// A minimal RESP reader: arrays of bulk strings, integers, simple strings.
let rbuf = Buffer.alloc(0);
function parseValue(buf, pos) {
  if (pos >= buf.length) return null;
  const nl = buf.indexOf('\r\n', pos);
  if (nl < 0) return null;
  const kind = buf[pos];
  const line = buf.toString('latin1', pos + 1, nl);
  const after = nl + 2;
  switch (kind) {
    case 0x2b: return [line, after];                      // +
    case 0x2d: return [new Error(line), after];           // -
    case 0x3a: return [Number(line), after];              // :
    case 0x24: {                                          // $
      const n = Number(line);
      if (n < 0) return [null, after];
      if (buf.length < after + n + 2) return null;
      return [buf.subarray(after, after + n), after + n + 2];
    }
    case 0x2a: {                                          // *
      const n = Number(line);
      const out = [];
      let p = after;
      for (let i = 0; i < n; i++) {
        const v = parseValue(buf, p);
        if (v === null) return null;
        out.push(v[0]);
        p = v[1];
      }
      return [out, p];
    }
    default: throw new Error('RESP: unexpected byte ' + kind);
  }
}

let subscribed = false;
function onRedisData(chunk) {
  rbuf = rbuf.length ? Buffer.concat([rbuf, chunk]) : chunk;
  let pos = 0;
  for (;;) {
    const v = parseValue(rbuf, pos);
    if (v === null) break;
    pos = v[1];
    const m = v[0];
    if (!Array.isArray(m)) continue;
    const kind = m[0].toString('latin1');
    if (kind === 'message') {
      deliver(m[2].toString('utf8'));
    } else if (kind === 'subscribe' && !subscribed) {
      subscribed = true;
      startListening();
    }
  }
  rbuf = pos >= rbuf.length ? Buffer.alloc(0) : rbuf.subarray(pos);
}

const redis = net.createConnection(opt.redis);
redis.on('data', onRedisData);
redis.on('error', (e) => { console.error('node-event-server: redis:', e.message); process.exit(1); });
redis.on('close', () => { if (!stopping) { console.error('node-event-server: redis closed'); process.exit(1); } });
redis.write('*2\r\n$9\r\nSUBSCRIBE\r\n$13\r\ndaemon:events\r\n');

// ---- WebSocket server ----------------------------------------------------

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok"}\n');
    return;
  }
  res.writeHead(404);
  res.end();
});

const wss = new WebSocketServer({ server, path: opt.path, perMessageDeflate: false });

function forget(st) {
  if (!st.authed) return;
  st.authed = false;
  all.delete(st);
  const set = byOrch.get(st.orch);
  if (set) {
    set.delete(st);
    if (set.size === 0) byOrch.delete(st.orch);
  }
}

wss.on('connection', (ws) => {
  const st = { ws, authed: false, orch: null, daemon: null, scopes: null,
    types: new Set() };
  ws.on('message', (data, isBinary) => {
    if (isBinary) { ws.close(1003, 'binary'); return; }
    onClientMessage(ws, st, data);
  });
  ws.on('close', () => forget(st));
  ws.on('error', () => {});
});

function startListening() {
  server.listen({ port: opt.port, host: opt.host, backlog: 4096 }, () => {
    process.stdout.write(`listening ${server.address().port}\n`);
  });
}

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  process.stderr.write(JSON.stringify(stats) + '\n');
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  redis.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('SIGUSR2', () => process.stderr.write(JSON.stringify(stats) + '\n'));
