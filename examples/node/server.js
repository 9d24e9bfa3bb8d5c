// A small node:http service (no npm packages) that allocates on every
// request and in the background, so V8's scavenger runs many times a second
// and its mark-compact now and then (run: node server.js [port]
// [--pause-every S] [--no-churn]). pausewatch shows each collection's pause
// and collector. --pause-every makes long pauses on purpose: a full
// collection over a large live heap.
'use strict';
const http = require('node:http');

const args = process.argv.slice(2);
const port = Number(args[0]) || 8083;

function churn() {
  const keep = [];
  setInterval(() => {
    const batch = [];
    for (let i = 0; i < 5000; i++) batch.push({ i, s: 'x' + i });
    keep.push(batch);
    if (keep.length > 200) keep.splice(0, 100);
  }, 1);
}

function pauser(everySeconds) {
  // The collector is reachable without --expose-gc: the flag is set at
  // run time and the gc function taken from a fresh context.
  require('node:v8').setFlagsFromString('--expose-gc');
  const gc = require('node:vm').runInNewContext('gc');
  // Many live objects: a full collection must mark them all.
  const ballast = Array.from({ length: 300_000 }, (_, i) => ({ i }));
  setInterval(() => {
    const t0 = process.hrtime.bigint();
    gc();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`deliberate pause: ${ms.toFixed(1)} ms (${ballast.length} live objects)`);
  }, everySeconds * 1000);
}

const i = args.indexOf('--pause-every');
if (i >= 0) pauser(Number(args[i + 1]));
if (!args.includes('--no-churn')) churn();

http.createServer((req, res) => {
  const objs = [];
  for (let k = 0; k < 2000; k++) objs.push({ k });
  const body = `ok ${objs.length}\n`;
  res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}).listen(port, '127.0.0.1', () => {
  console.log(`example service on http://127.0.0.1:${port}/`);
});
