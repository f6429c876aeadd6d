'use strict';
// The process exits by itself after close(): no libuv handle, no thread
// keeps it alive, and nothing is lost. Without close(), the env cleanup
// hook drains the buffer at exit.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const h = require('./helpers');

function child(src, ns) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', src], { encoding: 'utf8', timeout: 20000 * h.scale,
    env: { ...process.env, ADDON: h.addon, NS: ns } });
  return { ...r, ms: Date.now() - t0 };
}

function queued(ns) {
  return ['critical', 'high', 'normal', 'low'].reduce((a, p) => a + Number(h.redisCli('LLEN', `{${ns}}:queue:${p}`)), 0);
}

test('exits cleanly after close(), every event in Redis', () => {
  const r = child(`
    const fs = require('node:fs');
    const { Producer } = require(process.env.ADDON);
    const threads = () => fs.readdirSync('/proc/self/task').length;
    // The libuv pool starts with the first async work: start it first, so
    // the count before open is the one to return to.
    fs.promises.readFile(__filename === '[eval]' ? '/proc/self/stat' : __filename).then(() => {
      const before = threads();
      const q = new Producer({ redisUrl: process.env.AUDITQ_REDIS_URL, namespace: process.env.NS });
      for (let i = 0; i < 1000; i++) q.send({ action: 'exit.test', tenantId: 'exit' });
      const open = threads();
      q.close().then(() => {
        setImmediate(() => console.log('threads ' + (open - before) + ' while open, ' + (threads() - before) +
          ' after close; resources=' + JSON.stringify(process.getActiveResourcesInfo())));
      });
    });`, 'nodeexit1');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.signal, null);
  // libauditq's flusher thread while open (no spool: no replay thread); none after close.
  assert.equal(r.stdout, 'threads 1 while open, 0 after close; resources=[]\n');
  assert.equal(queued('nodeexit1'), 1000);
  h.redisCli('DEL', '{nodeexit1}:queue:normal');
});

test('exits without close(): the buffered events are drained at exit', () => {
  // flushIntervalMs 60 s, batchSize 1000: nothing leaves the buffer before the exit.
  const r = child(`
    const { Producer } = require(process.env.ADDON);
    const q = new Producer({ redisUrl: process.env.AUDITQ_REDIS_URL, namespace: process.env.NS, flushIntervalMs: 60000, batchSize: 1000 });
    for (let i = 0; i < 400; i++) q.send({ action: 'exit.test', tenantId: 'exit' });
    console.log('buffered=' + q.stats().buffered);`, 'nodeexit2');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'buffered=400\n');
  assert.equal(queued('nodeexit2'), 400);
  h.redisCli('DEL', '{nodeexit2}:queue:normal');
});

test('close() while sendAcked() calls are in flight: they all resolve first, then the handle closes', async () => {
  const { Producer } = require(h.addon);
  const q = new Producer({ redisUrl: h.redisUrl, namespace: 'nodeexit3' });
  const acks = [];
  for (let i = 0; i < 200; i++) acks.push(q.sendAcked({ action: 'exit.inflight', tenantId: 'exit' }));
  const closed = q.close();
  const ids = await Promise.all(acks);
  await closed;
  assert.equal(new Set(ids).size, 200);
  assert.equal(queued('nodeexit3'), 200);
  h.redisCli('DEL', '{nodeexit3}:queue:normal');
});

test('close() while sendAcked() calls wait on a paused Redis: close runs after them, nothing freed under them', async () => {
  // CLIENT PAUSE holds the 3 LPUSHes on 3 of the 4 libuv pool threads;
  // close() must not run auditq_close on the 4th while they are inside libauditq.
  const { Producer } = require(h.addon);
  const q = new Producer({ redisUrl: h.redisUrl, namespace: 'nodeexit4', timeoutMs: 5000 });
  await q.ping();
  h.redisCli('CLIENT', 'PAUSE', String(400 * h.scale), 'ALL');
  const acks = [0, 1, 2].map(() => q.sendAcked({ action: 'exit.paused', tenantId: 'exit' }));
  await h.sleep(50);
  const t0 = Date.now();
  await q.close();
  const ids = await Promise.all(acks);
  assert.equal(new Set(ids).size, 3);
  assert.ok(Date.now() - t0 >= 200 * h.scale, 'close() resolved before the paused sends');
  assert.equal(queued('nodeexit4'), 3);
  h.redisCli('DEL', '{nodeexit4}:queue:normal');
});
