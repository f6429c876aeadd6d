'use strict';
// 100,000 send() calls do not stall a timer that fires every 10 ms: the
// calls run in slices of 1,000 (as request handlers would), a 10 ms
// interval measures how late it fires, and the worst lateness is bounded.
// Namespace `nodelag`: no worker reads it, so the 100k jobs stay in Redis.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { Producer } = require(h.addon);

const N = 100000;
const SLICE = 1000;
const LAG_MS = 100 * h.scale; // a shared, loaded CI box: 8 ms measured quiet

test(`${N} send() calls keep a 10 ms timer within ${LAG_MS} ms`, async () => {
  const q = new Producer({ redisUrl: h.redisUrl, namespace: 'nodelag', bufferEvents: N, flushIntervalMs: 10 });
  const lags = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    lags.push(now - last - 10);
    last = now;
  }, 10);
  const ev = { action: 'lag.test', tenantId: 'lag', actorId: 'u-1', changes: { title: ['Old', 'New'] }, priority: 'high' };
  const t0 = performance.now();
  for (let i = 0; i < N; i += SLICE) {
    for (let j = 0; j < SLICE; j++) q.send(ev);
    await new Promise((r) => setImmediate(r));
  }
  const sendMs = performance.now() - t0;
  await q.flush(20000);
  clearInterval(timer);
  const st = q.stats();
  await q.close();
  assert.equal(st.queuedAsync, N);
  assert.equal(st.sentAsync, N);
  assert.equal(st.rejectedFull, 0);
  const len = ['critical', 'high', 'normal', 'low'].reduce((a, p) => a + Number(h.redisCli('LLEN', `{nodelag}:queue:${p}`)), 0);
  assert.equal(len, N);
  h.redisCli('DEL', '{nodelag}:queue:high');
  lags.sort((a, b) => a - b);
  const max = lags[lags.length - 1];
  const p99 = lags[Math.floor(lags.length * 0.99)];
  console.log(`# ${N} send(): ${sendMs.toFixed(0)} ms (${(sendMs * 1000 / N).toFixed(2)} us/call incl. yields), ` +
    `timer ticks ${lags.length}, lag p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
  assert.ok(lags.length >= 2, 'the timer fired');
  assert.ok(max < LAG_MS, `worst timer lag ${max.toFixed(1)} ms >= ${LAG_MS} ms`);
});
