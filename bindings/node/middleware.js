'use strict';
// Request auditing for Node web stacks, one event per request, sent with
// Producer.send() (async path: never waits on Redis).
//
//   expressAudit(producer, opts)   Express/Connect middleware (req, res, next);
//                                  works with node:http handlers too.
//   AuditInterceptor               NestJS interceptor (app.useGlobalInterceptors(
//                                  new AuditInterceptor(producer))); no import of
//                                  rxjs or @nestjs: it builds its Observable with
//                                  the constructor of the one the handler returns.
//
// An aborted request (client gone before the response finished) is recorded
// with outcome failure and metadata.aborted = true.
//
// opts (both): action (default 'http.request'), tenantId(req), actorId(req),
// metadata(req, res) -> extra metadata, onError(err) (a send that failed:
// default logs one logfmt line on stderr; auditing never fails the request).

function outcomeOf(status) {
  if (status === 401 || status === 403) return 'denied';
  return status >= 400 ? 'failure' : 'success';
}

function defaultOnError(err) {
  process.stderr.write(`level=error msg="audit event not sent" code=${err.code} error=${JSON.stringify(err.message)}\n`);
}

function header(req, name) {
  const v = req.headers ? req.headers[name] : undefined;
  return Array.isArray(v) ? v[0] : v;
}

function requestEvent(req, status, ms, opts, res) {
  const ev = {
    action: opts.action || 'http.request',
    outcome: outcomeOf(status),
    sourceIp: (req.socket && req.socket.remoteAddress) || undefined,
    userAgent: header(req, 'user-agent'),
    requestId: header(req, 'x-request-id'),
    metadata: { method: req.method, path: req.originalUrl || req.url, status, durationMs: ms },
  };
  if (opts.tenantId) ev.tenantId = opts.tenantId(req);
  if (opts.actorId) {
    ev.actorId = opts.actorId(req);
    if (ev.actorId) ev.actorType = 'user';
  }
  if (opts.metadata) Object.assign(ev.metadata, opts.metadata(req, res));
  return ev;
}

function expressAudit(producer, opts = {}) {
  const onError = opts.onError || defaultOnError;
  return function auditq(req, res, next) {
    const t0 = process.hrtime.bigint();
    // 'close' fires once per response, after 'finish' or when the client
    // went away first: an aborted request is recorded too (aborted: true).
    res.once('close', () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      try {
        const ev = requestEvent(req, res.statusCode, ms, opts, res);
        if (!res.writableFinished) {
          ev.outcome = 'failure';
          ev.metadata.aborted = true;
        }
        producer.send(ev);
      } catch (e) {
        onError(e);
      }
    });
    next();
  };
}

class AuditInterceptor {
  constructor(producer, opts = {}) {
    this.producer = producer;
    this.opts = opts;
    this.onError = opts.onError || defaultOnError;
  }

  intercept(context, next) {
    const http = context.switchToHttp();
    const req = http.getRequest();
    const res = http.getResponse();
    const t0 = process.hrtime.bigint();
    const record = (status) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const opts = { action: `${context.getClass().name}.${context.getHandler().name}`, ...this.opts };
      try {
        this.producer.send(requestEvent(req, status, ms, opts, res));
      } catch (e) {
        this.onError(e);
      }
    };
    const source = next.handle();
    const Observable = source.constructor;
    return new Observable((subscriber) => source.subscribe({
      next: (v) => subscriber.next(v),
      error: (err) => {
        record((err && typeof err.getStatus === 'function') ? err.getStatus() : 500);
        subscriber.error(err);
      },
      complete: () => {
        record(res && res.statusCode ? res.statusCode : 200);
        subscriber.complete();
      },
    }));
  }
}

module.exports = { expressAudit, AuditInterceptor, outcomeOf };
