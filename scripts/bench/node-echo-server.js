// node-echo-server.js: the Node.js `ws` echo server orchd's benchmarks
// compare against.  One process, as the TypeScript service it stands for
// is deployed.
//
//   node node-echo-server.js --port PORT [--host 127.0.0.1] [--path /echo]
//                            [--pmd]
//
// NODE_PATH (or a node_modules next to it) must provide `ws`.  --pmd enables
// permessage-deflate with both no_context_takeover parameters, the same
// defaults as orchd; without it, `ws`'s own server default (off) applies.
// Prints "listening PORT" on stdout once it accepts; exits on TERM/INT.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const opt = { port: 0, host: '127.0.0.1', path: '/echo', pmd: false };
for (let i = 0; i < args.length; i++) {
  switch (args[i]) {
    case '--port': opt.port = Number(args[++i]); break;
    case '--host': opt.host = args[++i]; break;
    case '--path': opt.path = args[++i]; break;
    case '--pmd': opt.pmd = true; break;
    default:
      console.error(`node-echo-server: unknown argument ${args[i]}`);
      process.exit(2);
  }
}

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"status":"ok"}\n');
    return;
  }
  res.writeHead(404);
  res.end();
});

const wss = new WebSocketServer({
  server,
  path: opt.path,
  perMessageDeflate: opt.pmd
    ? { serverNoContextTakeover: true, clientNoContextTakeover: true }
    : false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});

server.listen({ port: opt.port, host: opt.host, backlog: 4096 }, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function stop() {
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
