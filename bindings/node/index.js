'use strict';
// auditq for Node.js: a thin binding over libauditq (src/auditq_node.c).
// See README.md ("Node.js") and index.d.ts for the API.
const path = require('node:path');

const native = require(process.env.AUDITQ_NODE_ADDON || path.join(__dirname, 'build', 'auditq.node'));

/** Every error the binding raises: `code` is the libauditq enum name
 *  (AUDITQ_ERR_INVALID_JSON, ...), `rc` its number, `message` the library's
 *  auditq_last_error() text (or the binding's, for argument checks). */
class AuditqError extends Error {
  constructor(message, code, rc) {
    super(message);
    this.name = 'AuditqError';
    this.code = code;
    this.rc = rc;
  }
}
native.setErrorClass(AuditqError);

const RC = {
  AUDITQ_ERR_INVALID_ARG: 1, AUDITQ_ERR_NOMEM: 2, AUDITQ_ERR_CONFIG: 3, AUDITQ_ERR_CONNECT: 4,
  AUDITQ_ERR_TIMEOUT: 5, AUDITQ_ERR_REDIS: 6, AUDITQ_ERR_AUTH: 7, AUDITQ_ERR_BUFFER_FULL: 8,
  AUDITQ_ERR_MISSING_FIELD: 9, AUDITQ_ERR_INVALID_JSON: 10, AUDITQ_ERR_INVALID_UTF8: 11,
  AUDITQ_ERR_TOO_LARGE: 12, AUDITQ_ERR_CLOSED: 13, AUDITQ_ERR_PROTOCOL: 14,
  AUDITQ_ERR_SPOOL_FULL: 15, AUDITQ_ERR_SPOOL: 16,
};

function fail(code, message) {
  return new AuditqError(message, code, RC[code]);
}

// Producer options (camelCase) -> libauditq settings (auditq.h, auditq_config_set).
const SETTINGS = {
  redisUrl: 'redis_url', namespace: 'namespace', connectTimeoutMs: 'connect_timeout_ms',
  timeoutMs: 'timeout_ms', syncConnections: 'sync_connections', bufferEvents: 'buffer_events',
  batchSize: 'batch_size', flushIntervalMs: 'flush_interval_ms', fullPolicy: 'full_policy',
  enqueueTimeoutMs: 'enqueue_timeout_ms', closeTimeoutMs: 'close_timeout_ms',
  maxJobBytes: 'max_job_bytes', spoolPath: 'spool_path', spoolFsync: 'spool_fsync',
  spoolFsyncIntervalMs: 'spool_fsync_interval_ms', spoolMaxBytes: 'spool_max_bytes',
  spoolFullPolicy: 'spool_full_policy',
};

// Event keys, in the order the addon takes them (auditq_field order).
const FIELDS = ['eventId', 'tenantId', 'actorId', 'actorType', 'action', 'entityType', 'entityId',
  'outcome', 'sourceIp', 'userAgent', 'requestId', 'sessionId'];
const KNOWN = new Set([...FIELDS, 'changes', 'metadata', 'priority', 'occurredAt']);

function closest(name, names) {
  let best = null;
  let bestD = 3;
  for (const n of names) {
    const a = name.toLowerCase();
    const b = n.toLowerCase();
    const d = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = d[0];
      d[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const t = d[j];
        d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
        prev = t;
      }
    }
    if (d[b.length] < bestD) { bestD = d[b.length]; best = n; }
  }
  return best ? ` (did you mean '${best}'?)` : '';
}

function toJson(name, v) {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) {
    throw fail('AUDITQ_ERR_INVALID_JSON', `${name}: must be a plain object (it becomes a JSON object), got ${Array.isArray(v) ? 'an array' : typeof v}`);
  }
  try {
    return JSON.stringify(v);
  } catch (e) {
    // BigInt, a cycle, a throwing toJSON: nothing is sent.
    throw fail('AUDITQ_ERR_INVALID_JSON', `${name}: not JSON-serializable: ${e.message}`);
  }
}

function occurredUs(v) {
  if (v === undefined || v === null) return undefined;
  if (v instanceof Date) {
    const ms = v.getTime();
    if (Number.isNaN(ms)) throw fail('AUDITQ_ERR_INVALID_ARG', 'occurredAt: invalid Date');
    return ms * 1000;
  }
  if (typeof v === 'bigint') return Number(v);
  return v; // microseconds; the addon checks it
}

// The addon's positional arguments for one event (after the handle).
function args(h, ev) {
  if (ev === null || typeof ev !== 'object') {
    throw fail('AUDITQ_ERR_INVALID_ARG', 'the event must be an object with at least { action }');
  }
  for (const k in ev) {
    if (!KNOWN.has(k)) throw fail('AUDITQ_ERR_INVALID_ARG', `unknown event field '${k}'${closest(k, KNOWN)}`);
  }
  return [h, ev.eventId, ev.tenantId, ev.actorId, ev.actorType, ev.action, ev.entityType, ev.entityId,
    ev.outcome, ev.sourceIp, ev.userAgent, ev.requestId, ev.sessionId,
    toJson('changes', ev.changes), toJson('metadata', ev.metadata), ev.priority, occurredUs(ev.occurredAt)];
}

class Producer {
  /** @param {import('./index').ProducerOptions} [options] */
  constructor(options = {}) {
    const pairs = [];
    let fullPolicy = false;
    for (const [k, v] of Object.entries(options)) {
      const key = SETTINGS[k];
      if (!key) {
        throw fail('AUDITQ_ERR_CONFIG', `unknown option '${k}'${closest(k, Object.keys(SETTINGS))}`);
      }
      if (v === undefined || v === null) continue;
      if (k === 'fullPolicy') fullPolicy = true;
      pairs.push([key, String(v)]);
    }
    // send() must never park the event loop: a full buffer fails at once
    // (AUDITQ_ERR_BUFFER_FULL) unless the caller asks for `block`.
    if (!fullPolicy) pairs.push(['full_policy', 'error']);
    this._h = native.open(pairs);
    this._closing = null;
  }

  /** Async path: buffers the event and returns its event_id; a libauditq
   *  thread pushes it to Redis. Never waits (throws AuditqError). */
  send(ev) {
    const a = args(this._h, ev);
    return native.send(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
      a[12], a[13], a[14], a[15], a[16]);
  }

  /** Resolves with the event_id once Redis (or, with a spool, the spool)
   *  has the event; runs on the libuv thread pool. */
  sendAcked(ev) {
    let a;
    try {
      a = args(this._h, ev);
    } catch (e) {
      return Promise.reject(e);
    }
    return native.sendAcked(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
      a[12], a[13], a[14], a[15], a[16]);
  }

  /** Resolves once every event send() buffered before the call is
   *  acknowledged; rejects with AUDITQ_ERR_TIMEOUT after timeoutMs. */
  flush(timeoutMs = 5000) {
    return native.flush(this._h, timeoutMs);
  }

  /** PING round trip to Redis. */
  ping() {
    return native.ping(this._h);
  }

  /** Drains the buffer (up to closeTimeoutMs), stops libauditq's threads
   *  and frees the handle. Idempotent: later calls return the same Promise. */
  close() {
    if (!this._closing) this._closing = native.close(this._h);
    return this._closing;
  }

  /** The library's counters (auditq_stats) in camelCase. */
  stats() {
    return native.stats(this._h);
  }

  /** What no call returned: the spool's last damage, replay status; '' when well. */
  spoolProblem() {
    return native.spoolProblem(this._h);
  }
}

module.exports = { Producer, AuditqError, version: native.version, strerror: native.strerror };
