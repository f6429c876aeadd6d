'use strict';
// bench.js -- the Node numbers of BENCHMARKS.md ("Node.js"), run by
// scripts/bench-node.sh against a private Redis:
//
//   node bench.js auditq N    N send() calls, each timed (hrtime around the
//                             call), then flush(): per-call p50/p99/max and
//                             events/s (first call to flush resolved)
//   node bench.js bullmq N    N BullMQ Queue.add() with up to 1,000 in
//                             flight (BULLMQ_DIR: where bullmq is installed)
//   node bench.js acked N     N sendAcked() with up to 64 in flight
//
// One JSON line on stdout. REDIS_URL: the server. The event is the same in
// all modes: the README's page.update with changes and metadata.
const path = require('node:path');

const [mode, nArg] = process.argv.slice(2);
const N = Number(nArg || 200000);
const redisUrl = process.env.REDIS_URL;
const ev = { action: 'page.update', tenantId: 'acme', actorId: 'u-42', actorType: 'user',
  entityType: 'page', entityId: 'p-7', outcome: 'success', requestId: 'req-1',
  changes: { title: ['Old', 'New'] }, metadata: { ip_country: 'DE', plan: 'pro' }, priority: 'normal' };

function quantiles(ns) {
  ns.sort((a, b) => a - b);
  const q = (p) => ns[Math.min(ns.length - 1, Math.floor(ns.length * p))] / 1000;
  return { p50_us: q(0.5), p99_us: q(0.99), max_us: ns[ns.length - 1] / 1000 };
}

// The cost of the timing itself: two hrtime calls around nothing.
function timerRef(n) {
  const ns = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    ns[i] = Number(process.hrtime.bigint() - t0);
  }
  return quantiles(Array.from(ns));
}

async function auditq() {
  const { Producer } = require(path.join(__dirname, '..'));
  const q = new Producer({ redisUrl, namespace: 'benchnode', bufferEvents: N, flushIntervalMs: 10 });
  const ns = new Float64Array(N);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const a = process.hrtime.bigint();
    q.send(ev);
    ns[i] = Number(process.hrtime.bigint() - a);
  }
  const tSend = process.hrtime.bigint();
  await q.flush(120000);
  const t1 = process.hrtime.bigint();
  const st = q.stats();
  await q.close();
  return { mode: 'auditq send()', events: N, sent_async: st.sentAsync, ...quantiles(Array.from(ns)),
    calls_per_s: Math.round(N / (Number(tSend - t0) / 1e9)),
    events_per_s: Math.round(N / (Number(t1 - t0) / 1e9)), timer_ref: timerRef(100000) };
}

async function acked() {
  const { Producer } = require(path.join(__dirname, '..'));
  const q = new Producer({ redisUrl, namespace: 'benchnode' });
  const t0 = process.hrtime.bigint();
  let inflight = [];
  for (let i = 0; i < N; i++) {
    inflight.push(q.sendAcked(ev));
    if (inflight.length >= 64) { await Promise.all(inflight); inflight = []; }
  }
  await Promise.all(inflight);
  const t1 = process.hrtime.bigint();
  await q.close();
  return { mode: 'auditq sendAcked() x64 in flight', events: N, events_per_s: Math.round(N / (Number(t1 - t0) / 1e9)) };
}

async function bullmq() {
  const { Queue } = require(path.join(process.env.BULLMQ_DIR, 'node_modules', 'bullmq'));
  const u = new URL(redisUrl);
  const queue = new Queue('benchnode', { connection: { host: u.hostname, port: Number(u.port) } });
  await queue.waitUntilReady();
  const t0 = process.hrtime.bigint();
  let inflight = [];
  for (let i = 0; i < N; i++) {
    inflight.push(queue.add('page.update', ev));
    if (inflight.length >= 1000) { await Promise.all(inflight); inflight = []; }
  }
  await Promise.all(inflight);
  const t1 = process.hrtime.bigint();
  const counts = await queue.getJobCounts('waiting');
  await queue.close();
  return { mode: 'bullmq Queue.add() x1000 in flight', events: N, waiting: counts.waiting,
    events_per_s: Math.round(N / (Number(t1 - t0) / 1e9)) };
}

({ auditq, acked, bullmq }[mode] || (() => { throw new Error(`mode: auditq | acked | bullmq, not ${mode}`); }))()
  .then((r) => console.log(JSON.stringify({ node: process.version, ...r })))
  .catch((e) => { console.error(e); process.exit(1); });
