// Type declarations of the auditq Node.js binding (index.js).

/** Options of a Producer: libauditq's settings (include/auditq.h) in camelCase. */
export interface ProducerOptions {
  /** redis://[user[:password]@]host[:port][/db] or unix:///path (default redis://127.0.0.1:6379) */
  redisUrl?: string;
  /** key prefix inside the {hash tag} (default "auditq") */
  namespace?: string;
  connectTimeoutMs?: number;
  /** Redis command timeout (default 1000) */
  timeoutMs?: number;
  /** connections shared by sendAcked() (default 4) */
  syncConnections?: number;
  /** async buffer capacity in events (default 100000) */
  bufferEvents?: number;
  /** async: events per pipelined push (default 500) */
  batchSize?: number;
  /** async: longest time an event waits in the buffer (default 100) */
  flushIntervalMs?: number;
  /** full async buffer: 'error' (the binding's default: send() throws
   *  AUDITQ_ERR_BUFFER_FULL at once, the event loop never waits) or 'block'
   *  (send() waits up to enqueueTimeoutMs on the loop thread) */
  fullPolicy?: 'error' | 'block';
  enqueueTimeoutMs?: number;
  /** close(): longest drain (default 5000) */
  closeTimeoutMs?: number;
  maxJobBytes?: number;
  /** file events go to while Redis fails; one per process (default: none) */
  spoolPath?: string;
  spoolFsync?: 'always' | 'interval' | 'never';
  spoolFsyncIntervalMs?: number;
  spoolMaxBytes?: number;
  spoolFullPolicy?: 'error' | 'block';
}

export type Priority = 'critical' | 'high' | 'normal' | 'low';
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** One audit event. Text fields are UTF-8 strings within the limits of
 *  docs/PROTOCOL.md; changes/metadata become JSON objects. */
export interface AuditEvent {
  action: string;
  tenantId?: string;
  actorId?: string;
  actorType?: 'user' | 'service' | 'ai' | 'system';
  entityType?: string;
  entityId?: string;
  outcome?: 'success' | 'failure' | 'denied';
  sourceIp?: string;
  userAgent?: string;
  requestId?: string;
  sessionId?: string;
  changes?: { [key: string]: JsonValue };
  metadata?: { [key: string]: JsonValue };
  priority?: Priority;
  /** UUID; generated (UUIDv7) when unset */
  eventId?: string;
  /** a Date or microseconds since the epoch; now when unset */
  occurredAt?: Date | number | bigint;
}

/** libauditq's counters (auditq_stats). */
export interface ProducerStats {
  sentSync: number;
  queuedAsync: number;
  sentAsync: number;
  rejectedFull: number;
  errors: number;
  redisRetries: number;
  buffered: number;
  spooled: number;
  replayed: number;
  spoolRejectedFull: number;
  spoolCorruptRecords: number;
  spoolErrors: number;
  replayRetries: number;
  spoolRecords: number;
  spoolBytes: number;
}

export type AuditqErrorCode =
  | 'AUDITQ_ERR_INVALID_ARG' | 'AUDITQ_ERR_NOMEM' | 'AUDITQ_ERR_CONFIG' | 'AUDITQ_ERR_CONNECT'
  | 'AUDITQ_ERR_TIMEOUT' | 'AUDITQ_ERR_REDIS' | 'AUDITQ_ERR_AUTH' | 'AUDITQ_ERR_BUFFER_FULL'
  | 'AUDITQ_ERR_MISSING_FIELD' | 'AUDITQ_ERR_INVALID_JSON' | 'AUDITQ_ERR_INVALID_UTF8'
  | 'AUDITQ_ERR_TOO_LARGE' | 'AUDITQ_ERR_CLOSED' | 'AUDITQ_ERR_PROTOCOL'
  | 'AUDITQ_ERR_SPOOL_FULL' | 'AUDITQ_ERR_SPOOL';

/** Every error of the binding: `code` names the auditq_rc, `rc` is its
 *  number, `message` the library's auditq_last_error() text. */
export class AuditqError extends Error {
  readonly code: AuditqErrorCode;
  readonly rc: number;
  constructor(message: string, code: AuditqErrorCode, rc: number);
}

export class Producer {
  /** Opens a libauditq handle; does not contact Redis. Throws AuditqError
   *  (AUDITQ_ERR_CONFIG for an unknown option or a bad value). */
  constructor(options?: ProducerOptions);
  /** Async path: buffers the event and returns its event_id at once;
   *  never blocks the event loop. Throws AuditqError. */
  send(event: AuditEvent): string;
  /** Resolves with the event_id once Redis (or the spool) has it; runs on
   *  the libuv thread pool. Rejects with AuditqError, nothing sent. */
  sendAcked(event: AuditEvent): Promise<string>;
  /** Resolves once every event send() buffered before the call is
   *  acknowledged (default timeout 5000 ms: AUDITQ_ERR_TIMEOUT). */
  flush(timeoutMs?: number): Promise<void>;
  /** PING round trip to Redis. */
  ping(): Promise<void>;
  /** Drains and frees the handle; later calls fail with AUDITQ_ERR_CLOSED.
   *  Idempotent. Rejects with AUDITQ_ERR_TIMEOUT if events were lost. */
  close(): Promise<void>;
  stats(): ProducerStats;
  /** The spool's last damage and replay status; '' when all is well. */
  spoolProblem(): string;
}

export const version: string;
/** auditq_strerror(): the static name of a result code number. */
export function strerror(rc: number): string;
