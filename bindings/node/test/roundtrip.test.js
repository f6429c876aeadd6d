'use strict';
// 10,000 events from Node, 5,000 with send() and 5,000 with sendAcked(),
// hostile text in every text field and nested JSON in changes/metadata ->
// exactly 10,000 rows, every field byte-exact.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { Producer } = require(h.addon);

const N = 10000;

function event(i, mode) {
  const s = (f) => h.hostile(`${mode}-${f}`, i);
  const ev = {
    action: `page.update ${s('action')}`,
    tenantId: `rt-${mode}`,
    actorId: s('actor'),
    actorType: ['user', 'service', 'ai', 'system'][i % 4],
    entityType: s('etype'),
    entityId: s('eid'),
    outcome: ['success', 'failure', 'denied'][i % 3],
    sourceIp: `ip"\t\\😀${i}`,
    userAgent: s('ua'),
    requestId: `req-rt-${mode}-${i}`,
    sessionId: s('sess'),
    priority: ['critical', 'high', 'normal', 'low'][i % 4],
    changes: { title: [s('old'), s('new')], nested: { deep: [1, 2.5, true, null, { k: s('deep') }] } },
    metadata: { 'k"ey\t\\': s('meta'), emoji: '😀', list: [{ a: { b: { c: `\u0001${i}` } } }] },
  };
  // Every 500th event: a user agent at its 1,024-byte limit, and metadata
  // over the addon's 2 KiB stack buffer (its heap path), 6 KiB of emoji.
  if (i % 500 === 0) {
    ev.userAgent = 'ü'.repeat(512);
    ev.metadata.big = `${s('big')}${'😀'.repeat(1500)}`;
  }
  return ev;
}

test('10,000 events sync and async land byte-exact', async () => {
  const q = new Producer({ redisUrl: h.redisUrl, flushIntervalMs: 20 });
  const sent = new Map();
  for (let i = 0; i < N / 2; i++) {
    const ev = event(i, 'async');
    sent.set(q.send(ev), ev);
  }
  const acks = [];
  for (let i = 0; i < N / 2; i++) {
    const ev = event(i, 'sync');
    acks.push(q.sendAcked(ev).then((id) => sent.set(id, ev)));
    if (acks.length >= 64) await Promise.all(acks.splice(0));
  }
  await Promise.all(acks);
  await q.flush(10000);
  const st = q.stats();
  assert.equal(st.queuedAsync, N / 2);
  assert.equal(st.sentAsync, N / 2);
  assert.equal(st.sentSync, N / 2);
  assert.equal(st.errors, 0);
  await q.close();
  assert.equal(sent.size, N);

  await h.waitRows(60, "tenant_id LIKE 'rt-%'", N);
  const rows = h.rowsJson(`SELECT event_id, priority, tenant_id, actor_id, actor_type, action, entity_type,
      entity_id, outcome, source_ip, user_agent, request_id, session_id, changes::text AS changes,
      metadata::text AS metadata FROM audit_events WHERE tenant_id LIKE 'rt-%'`);
  assert.equal(rows.length, N);
  const cols = { tenantId: 'tenant_id', actorId: 'actor_id', actorType: 'actor_type', action: 'action',
    entityType: 'entity_type', entityId: 'entity_id', outcome: 'outcome', sourceIp: 'source_ip',
    userAgent: 'user_agent', requestId: 'request_id', sessionId: 'session_id', priority: 'priority' };
  let checked = 0;
  for (const r of rows) {
    const ev = sent.get(r.event_id);
    assert.ok(ev, `row ${r.event_id} was never sent`);
    for (const [k, c] of Object.entries(cols)) assert.equal(r[c], ev[k], `${k} of ${r.request_id}`);
    assert.deepEqual(JSON.parse(r.changes), ev.changes, `changes of ${r.request_id}`);
    assert.deepEqual(JSON.parse(r.metadata), ev.metadata, `metadata of ${r.request_id}`);
    checked++;
  }
  assert.equal(checked, N);
});
