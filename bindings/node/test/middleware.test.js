'use strict';
// expressAudit against a real node:http server (the (req, res, next) shape
// Express and Connect call), and AuditInterceptor with an ExecutionContext,
// CallHandler and Observable shaped like NestJS/RxJS's (not the frameworks
// themselves: they are not installed at test time). One row per request.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const h = require('./helpers');
const { Producer } = require(h.addon);
const { expressAudit, AuditInterceptor } = require(h.addon + '/middleware');

test('expressAudit: one event per request, stored with its fields', async () => {
  const q = new Producer({ redisUrl: h.redisUrl, flushIntervalMs: 10 });
  const mw = expressAudit(q, { tenantId: (req) => req.headers['x-tenant'], actorId: () => 'u-42' });
  let aborted = 0;
  const server = http.createServer((req, res) => mw(req, res, () => {
    if (req.url === '/slow') {
      res.once('close', () => { aborted++; });
      return; // never answers: the client gives up
    }
    res.statusCode = req.url === '/denied' ? 403 : 200;
    res.end('ok');
  }));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const get = (p, rid) => new Promise((resolve, reject) => {
    http.get({ port, host: '127.0.0.1', path: p, headers: { 'x-tenant': 'mw-express', 'x-request-id': rid, 'user-agent': 'ua "é"' } },
      (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
  });
  for (let i = 0; i < 20; i++) await get(`/page/${i}?x=1`, `req-mw-${i}`);
  await get('/denied', 'req-mw-denied');
  // A client that goes away before the response: recorded as an aborted failure.
  await new Promise((resolve) => {
    const r = http.get({ port, host: '127.0.0.1', path: '/slow', headers: { 'x-tenant': 'mw-express', 'x-request-id': 'req-mw-aborted' } });
    r.on('error', () => resolve());
    setTimeout(() => r.destroy(), 50);
  });
  await h.waitFor(10, () => aborted === 1 || `aborted=${aborted}`, 'the server to see the abort');
  await new Promise((r) => server.close(r));
  await q.flush(5000);
  await q.close();
  await h.waitRows(20, "tenant_id = 'mw-express'", 22);
  const rows = h.rowsJson(`SELECT action, actor_id, actor_type, outcome, source_ip, user_agent, metadata->>'method' AS method,
      metadata->>'path' AS path, (metadata->>'status')::int AS status FROM audit_events
      WHERE tenant_id = 'mw-express' AND request_id = 'req-mw-7'`);
  assert.deepEqual(rows, [{ action: 'http.request', actor_id: 'u-42', actor_type: 'user', outcome: 'success',
    source_ip: '127.0.0.1', user_agent: 'ua "é"', method: 'GET', path: '/page/7?x=1', status: 200 }]);
  assert.equal(h.psql("SELECT outcome || ' ' || (metadata->>'status') FROM audit_events WHERE request_id = 'req-mw-denied'"), 'denied 403');
  assert.equal(h.psql("SELECT outcome || ' ' || (metadata->>'aborted') || ' ' || (metadata->>'path') FROM audit_events WHERE request_id = 'req-mw-aborted'"), 'failure true /slow');
});

// Minimal RxJS-shaped Observable: constructor(subscribe), subscribe(observer).
class Observable {
  constructor(fn) { this._fn = fn; }
  subscribe(o) { this._fn(o); return { unsubscribe() {} }; }
}

function nestCall(interceptor, handlerName, status, fail) {
  const req = { method: 'POST', url: `/pages/${handlerName}`, headers: { 'x-request-id': `req-nest-${handlerName}`, 'x-tenant': 'mw-nest' }, socket: { remoteAddress: '10.0.0.9' } };
  const res = { statusCode: status };
  class PagesController {}
  const handler = { [handlerName]() {} }[handlerName];
  const context = {
    switchToHttp: () => ({ getRequest: () => req, getResponse: () => res }),
    getClass: () => PagesController, getHandler: () => handler,
  };
  const next = { handle: () => new Observable((s) => {
    if (fail) s.error(Object.assign(new Error('nope'), { getStatus: () => 404 }));
    else { s.next({ ok: true }); s.complete(); }
  }) };
  const seen = [];
  interceptor.intercept(context, next).subscribe({ next: (v) => seen.push(v), error: (e) => seen.push(e.message), complete: () => seen.push('done') });
  return seen;
}

test('AuditInterceptor: one event per handled call, success and error', async () => {
  const q = new Producer({ redisUrl: h.redisUrl, flushIntervalMs: 10 });
  const icpt = new AuditInterceptor(q, { tenantId: (req) => req.headers['x-tenant'] });
  assert.deepEqual(nestCall(icpt, 'update', 201, false), [{ ok: true }, 'done']);
  assert.deepEqual(nestCall(icpt, 'remove', 200, true), ['nope']);
  await q.close();
  await h.waitRows(20, "tenant_id = 'mw-nest'", 2);
  assert.equal(h.psql(`SELECT string_agg(action || ' ' || outcome || ' ' || source_ip || ' ' || (metadata->>'status'), ',' ORDER BY action)
      FROM audit_events WHERE tenant_id = 'mw-nest'`), 'PagesController.remove failure 10.0.0.9 404,PagesController.update success 10.0.0.9 201');
});
