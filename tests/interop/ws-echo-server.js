#!/usr/bin/env node
// Reference echo server built on the `ws` package, for comparison with
// orchd's ws_echo_path endpoint: if a client script fails against orchd but
// passes against this server, the bug is on orchd's side.
//
//   node ws-echo-server.js [--port N] [--path /echo] [--cert C --key K]
//                          [--no-deflate] [--lifetime MS]
//
// Prints one line of JSON {"port": N} on stdout once it listens.  Echoes every
// data message unchanged (text as text, binary as binary).  Exits by itself
// after --lifetime ms (default 60000) so a forgotten server cannot linger.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const WebSocket = require('ws');

const argv = process.argv.slice(2);
let port = 0;
let path = '/echo';
let cert = null;
let key = null;
let deflate = true;
let lifetime = 60000;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--port') port = Number(argv[++i]);
  else if (a === '--path') path = argv[++i];
  else if (a === '--cert') cert = argv[++i];
  else if (a === '--key') key = argv[++i];
  else if (a === '--no-deflate') deflate = false;
  else if (a === '--lifetime') lifetime = Number(argv[++i]);
  else {
    process.stderr.write(`ws-echo-server: unknown argument ${a}\n`);
    process.exit(2);
  }
}

const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) })
  : http.createServer();
server.on('request', (req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});

const wss = new WebSocket.Server({
  server,
  path,
  maxPayload: 4 * 1024 * 1024,
  perMessageDeflate: deflate
    ? { threshold: 64, serverNoContextTakeover: true, clientNoContextTakeover: true }
    : false,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

const stop = () => {
  for (const c of wss.clients) c.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
setTimeout(stop, lifetime).unref();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
