'use strict';
// Invalid events -> AuditqError with the exact code and message, and
// nothing sent: neither counted by the library nor stored.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');
const { Producer, AuditqError } = require(h.addon);

const cyc = { a: 1 };
cyc.self = cyc;

const cases = [
  ['BigInt in changes', { changes: { n: 10n } }, 'AUDITQ_ERR_INVALID_JSON',
    'changes: not JSON-serializable: Do not know how to serialize a BigInt'],
  ['cycle in metadata', { metadata: cyc }, 'AUDITQ_ERR_INVALID_JSON',
    /^metadata: not JSON-serializable: Converting circular structure to JSON/],
  ['array as changes', { changes: [1, 2] }, 'AUDITQ_ERR_INVALID_JSON',
    'changes: must be a plain object (it becomes a JSON object), got an array'],
  ['tenantId of 257 bytes', { tenantId: 'x'.repeat(257) }, 'AUDITQ_ERR_TOO_LARGE',
    'tenant_id: 257 bytes, longer than the limit of 256'],
  ['bad priority', { priority: 'urgent' }, 'AUDITQ_ERR_INVALID_ARG',
    'priority must be one of critical, high, normal, low'],
  ['bad actorType', { actorType: 'robot' }, 'AUDITQ_ERR_INVALID_ARG',
    "actor_type: 'robot' is not one of user, service, ai, system"],
  ['number as actorId', { actorId: 42 }, 'AUDITQ_ERR_INVALID_ARG', 'actorId must be a string'],
  ['NUL in entityId', { entityId: 'a\u0000b' }, 'AUDITQ_ERR_INVALID_UTF8', 'entity_id: NUL byte at byte 1'],
  ['unknown field', { tenantID: 'x' }, 'AUDITQ_ERR_INVALID_ARG',
    "unknown event field 'tenantID' (did you mean 'tenantId'?)"],
  ['no action', { action: undefined }, 'AUDITQ_ERR_MISSING_FIELD', 'action is required (e.g. "page.update")'],
];

function check(e, code, msg) {
  assert.ok(e instanceof AuditqError, `not an AuditqError: ${e}`);
  assert.ok(e instanceof Error);
  assert.equal(e.code, code);
  if (msg instanceof RegExp) assert.match(e.message, msg);
  else if (msg !== null) assert.equal(e.message, msg);
  else assert.ok(e.message.length > 0);
}

test('invalid events throw (send) and reject (sendAcked) with the code; nothing is sent', async () => {
  const q = new Producer({ redisUrl: h.redisUrl, flushIntervalMs: 20 });
  for (const [name, fields, code, msg] of cases) {
    const ev = { action: 'err.case', tenantId: 'err-test', ...fields };
    assert.throws(() => q.send(ev), (e) => { check(e, code, msg); return true; }, `send: ${name}`);
    await assert.rejects(q.sendAcked(ev), (e) => { check(e, code, msg); return true; }, `sendAcked: ${name}`);
  }
  const st = q.stats();
  assert.equal(st.queuedAsync, 0);
  assert.equal(st.sentSync, 0);
  // A good event after them: once it is stored, nothing else of this tenant is.
  await q.sendAcked({ action: 'err.sentinel', tenantId: 'err-test' });
  await q.close();
  await h.waitRows(20, "tenant_id = 'err-test' AND action = 'err.sentinel'", 1);
  assert.equal(h.count("tenant_id = 'err-test'"), 1);
});

test('bad options -> AUDITQ_ERR_CONFIG with the library message', () => {
  assert.throws(() => new Producer({ redisUrl: h.redisUrl, batchSize: 0 }),
    (e) => { check(e, 'AUDITQ_ERR_CONFIG', "batch_size = '0': must be an integer from 1 to 100000"); return true; });
  assert.throws(() => new Producer({ flushIntervalMS: 5 }),
    (e) => { check(e, 'AUDITQ_ERR_CONFIG', "unknown option 'flushIntervalMS' (did you mean 'flushIntervalMs'?)"); return true; });
});

test('calls after close() -> AUDITQ_ERR_CLOSED', async () => {
  const q = new Producer({ redisUrl: h.redisUrl });
  const closing = q.close();
  assert.equal(q.close(), closing);
  assert.throws(() => q.send({ action: 'a.b' }), (e) => { check(e, 'AUDITQ_ERR_CLOSED', 'send: the producer is closed (close() was called)'); return true; });
  await assert.rejects(q.sendAcked({ action: 'a.b' }), (e) => { check(e, 'AUDITQ_ERR_CLOSED', 'the producer is closed (close() was called)'); return true; });
  await closing;
});
