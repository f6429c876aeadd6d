'use strict';
// Redis stopped mid-run with a spool: every acknowledged event (sendAcked
// resolved, or send() followed by a resolved flush()) is stored once Redis
// is back, exactly once.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('./helpers');
const { Producer } = require(h.addon);

test('Redis down mid-run: every acknowledged event lands after it returns', async () => {
  const q = new Producer({ redisUrl: h.redisUrl, spoolPath: path.join(h.tmp, 'node.spool'),
    flushIntervalMs: 20, connectTimeoutMs: 200, timeoutMs: 500 });
  const acked = new Set();
  let i = 0;
  async function phase(n) {
    const batch = [];
    for (let k = 0; k < n; k++, i++) {
      const ev = { action: 'outage.test', tenantId: 'outage', requestId: `req-outage-${i}`, metadata: { i } };
      if (i % 2) batch.push(q.sendAcked(ev).then((id) => acked.add(id)));
      else acked.add(q.send(ev));
      if (batch.length >= 16) await Promise.all(batch.splice(0));
    }
    await Promise.all(batch);
    await q.flush(10000); // the send() ones are acknowledged from here on
  }
  await phase(500);
  await h.redisCtl('stop');
  await phase(500);
  const st = q.stats();
  assert.ok(st.spooled > 0, `events spooled while Redis was down (spooled=${st.spooled})`);
  await h.redisCtl('start');
  await phase(500);
  await h.waitFor(30, () => q.stats().spoolRecords === 0 || `spoolRecords=${q.stats().spoolRecords}`, 'the replay');
  await q.close();
  assert.equal(acked.size, 1500);
  await h.waitRows(60, "tenant_id = 'outage'", 1500);
  const ids = new Set(h.psql("SELECT event_id FROM audit_events WHERE tenant_id = 'outage'").split('\n'));
  for (const id of acked) assert.ok(ids.has(id), `acknowledged ${id} not stored`);
});
