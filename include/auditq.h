/*
 * auditq.h -- the auditq producer library (libauditq).
 *
 * An application records audit events from its request path with this API.
 * Events are encoded as msgpack (docs/PROTOCOL.md) and pushed onto Redis
 * lists, one per priority; the auditq-worker process writes them to
 * PostgreSQL.
 *
 * Threads: an `auditq` handle is thread-safe; share one per process.
 * An `auditq_event` and an `auditq_config` belong to one thread at a time.
 *
 * Errors: every call that can fail returns an auditq_rc (0 = AUDITQ_OK).
 * auditq_strerror() names the code; auditq_last_error() gives the detail of
 * the calling thread's last call (which setting, which server answer): each
 * call that returns an auditq_rc first clears the calling thread's detail,
 * so after AUDITQ_OK it is "" and a stale message from an earlier failure
 * is never reported against a later call.
 * The library never prints, never aborts, never exits.
 *
 * Minimal use:
 *
 *     auditq_config *cfg = auditq_config_new();
 *     auditq_config_set(cfg, "redis_url", "redis://127.0.0.1:6379");
 *     auditq *q = NULL;
 *     if (auditq_open(cfg, &q) != AUDITQ_OK) { ... auditq_last_error() ... }
 *     auditq_config_free(cfg);
 *
 *     auditq_event *ev = auditq_event_new("page.update");
 *     auditq_event_set(ev, AUDITQ_TENANT_ID, "acme");
 *     auditq_event_set(ev, AUDITQ_ACTOR_ID, "user-42");
 *     auditq_event_set_json(ev, AUDITQ_CHANGES, "{\"title\":[\"Old\",\"New\"]}");
 *     auditq_rc rc = auditq_send_async(q, ev, NULL);  // or auditq_send()
 *     auditq_event_free(ev);
 *     ...
 *     auditq_close(q);   // drains what is buffered
 */
#ifndef AUDITQ_H
#define AUDITQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* AUDITQ_API marks the library's API: the only symbols libauditq.so
 * exports. The library is built with -fvisibility=hidden, so everything
 * else in it (codec_*, spool_*, redis_connect, ...) stays inside the .so and
 * cannot clash with the host application's symbols of the same name. */
#ifndef AUDITQ_API
#if defined(__GNUC__) && __GNUC__ >= 4
#define AUDITQ_API __attribute__((visibility("default")))
#else
#define AUDITQ_API
#endif
#endif

#define AUDITQ_VERSION "0.1.0"
/* Wire format schema version written in every job ("v" key). */
#define AUDITQ_SCHEMA_VERSION 1
/* Size of a buffer that holds a textual UUID and its NUL. */
#define AUDITQ_ID_SIZE 37

/* Result codes. Stable: numbers are never reused or renumbered. */
typedef enum auditq_rc {
    AUDITQ_OK = 0,
    AUDITQ_ERR_INVALID_ARG = 1,  /* NULL handle, unknown field, bad value */
    AUDITQ_ERR_NOMEM = 2,        /* an allocation failed */
    AUDITQ_ERR_CONFIG = 3,       /* unknown config key or invalid value */
    AUDITQ_ERR_CONNECT = 4,      /* Redis unreachable (refused, DNS, ...) */
    AUDITQ_ERR_TIMEOUT = 5,      /* Redis did not answer within the timeout */
    AUDITQ_ERR_REDIS = 6,        /* Redis answered with an error */
    AUDITQ_ERR_AUTH = 7,         /* AUTH refused (wrong password/user, ACL) */
    AUDITQ_ERR_BUFFER_FULL = 8,  /* async buffer full (and no/expired wait) */
    AUDITQ_ERR_MISSING_FIELD = 9,/* a required field (action) is not set */
    AUDITQ_ERR_INVALID_JSON = 10,/* changes/metadata is not a JSON object */
    AUDITQ_ERR_INVALID_UTF8 = 11,/* a text field is not valid UTF-8 or has NUL */
    AUDITQ_ERR_TOO_LARGE = 12,   /* field or encoded job exceeds its limit */
    AUDITQ_ERR_CLOSED = 13,      /* the handle is closing */
    AUDITQ_ERR_PROTOCOL = 14,    /* unexpected reply from Redis */
    AUDITQ_ERR_SPOOL_FULL = 15,  /* Redis failed and the spool is at spool_max_bytes */
    AUDITQ_ERR_SPOOL = 16        /* spool unusable: locked by another handle or
                                    process, not a spool file, I/O error */
} auditq_rc;

typedef enum auditq_priority {
    AUDITQ_PRIORITY_CRITICAL = 0,
    AUDITQ_PRIORITY_HIGH = 1,
    AUDITQ_PRIORITY_NORMAL = 2,  /* the default */
    AUDITQ_PRIORITY_LOW = 3
} auditq_priority;

/* Text fields of an event. Limits are in docs/PROTOCOL.md. */
typedef enum auditq_field {
    AUDITQ_EVENT_ID = 0,     /* UUID text; generated (UUIDv7) when unset */
    AUDITQ_TENANT_ID = 1,
    AUDITQ_ACTOR_ID = 2,
    AUDITQ_ACTOR_TYPE = 3,   /* user | service | ai | system */
    AUDITQ_ACTION = 4,       /* required, e.g. "page.update" */
    AUDITQ_ENTITY_TYPE = 5,
    AUDITQ_ENTITY_ID = 6,
    AUDITQ_OUTCOME = 7,      /* success | failure | denied */
    AUDITQ_SOURCE_IP = 8,
    AUDITQ_USER_AGENT = 9,
    AUDITQ_REQUEST_ID = 10,
    AUDITQ_SESSION_ID = 11,
    AUDITQ_CHANGES = 12,     /* JSON object text; use auditq_event_set_json */
    AUDITQ_METADATA = 13,    /* JSON object text; use auditq_event_set_json */
    AUDITQ_FIELD_COUNT = 14
} auditq_field;

typedef struct auditq auditq;
typedef struct auditq_config auditq_config;
typedef struct auditq_event auditq_event;

/* Counters of one handle since it was opened (auditq_get_stats). */
typedef struct auditq_stats {
    uint64_t sent_sync;        /* acknowledged by Redis through auditq_send */
    uint64_t queued_async;     /* accepted into the async buffer */
    uint64_t sent_async;       /* async events acknowledged by Redis */
    uint64_t rejected_full;    /* async calls refused: buffer full */
    uint64_t errors;           /* calls that returned an error */
    uint64_t redis_retries;    /* async batches retried after a Redis failure */
    uint64_t buffered;         /* events in the async buffer right now */
    /* The spool (spool_path set; see "Spool" below). */
    uint64_t spooled;          /* events written to the spool instead of Redis */
    uint64_t replayed;         /* spooled events since pushed to Redis by the replay */
    uint64_t spool_rejected_full;   /* events the spool refused at spool_max_bytes */
    uint64_t spool_corrupt_records; /* torn or corrupt spool regions skipped, never replayed */
    uint64_t spool_errors;     /* spool write/fsync failures */
    uint64_t replay_retries;   /* replay chunks retried after a Redis failure */
    uint64_t spool_records;    /* records waiting in the spool right now */
    uint64_t spool_bytes;      /* spool file size right now (what spool_max_bytes caps) */
} auditq_stats;

/* ---- errors -------------------------------------------------------------- */

/* Static name of a result code; never NULL. */
AUDITQ_API const char *auditq_strerror(auditq_rc rc);
/* Detail of the calling thread's last call that returns an auditq_rc: the
 * reason when it failed, "" when it succeeded (a successful call clears an
 * earlier failure's detail). Static per thread; valid until that thread's
 * next auditq call. Never NULL. */
AUDITQ_API const char *auditq_last_error(void);

/* ---- configuration ------------------------------------------------------- */

/* New config with defaults. Caller frees with auditq_config_free. NULL on OOM. */
AUDITQ_API auditq_config *auditq_config_new(void);
/* Sets one setting by name from text, validated now. Keys:
 *   redis_url          redis://[user[:password]@]host[:port][/db] or
 *                      unix:///path/to/redis.sock   (default redis://127.0.0.1:6379)
 *   redis_sentinels    Redis Sentinel: "host:port, host:port, ..."; when
 *                      set, every connect asks these for the master (and
 *                      checks ROLE), and redis_url gives only credentials,
 *                      database and TLS (default "": redis_url's server)
 *   redis_master_name  the name the sentinels monitor the master under
 *                      (needed with redis_sentinels)
 *   redis_sentinel_user, redis_sentinel_password  the login the sentinels
 *                      want (requirepass or an ACL user; default "": none)
 *   redis_min_replicas 0..16  an acknowledged send is on the master and on
 *                      this many replicas: WAIT (timeout_ms / 2) after each
 *                      auditq_send and each async batch; fewer is an
 *                      AUDITQ_ERR_REDIS naming the cause (sync; spooled
 *                      with a spool) or a re-push / spool (async), never
 *                      an OK (default 0: no WAIT)
 *   namespace          key prefix inside the {hash tag}   (default "auditq")
 *   redis_shards       1..256  shards the queues are spread over; must
 *                      match the workers' (default 1; docs/SCALING.md)
 *   redis_shard_urls   comma-separated Redis URLs holding the shards,
 *                      shard i on entry i mod N (default "": redis_url)
 *   redis_cluster      on | off  Redis Cluster: redis_url and
 *                      redis_shard_urls are seed nodes (default off)
 *   redis_shard_by     spread | tenant  which shard an event goes to:
 *                      round robin (sync: per event; async: per batch),
 *                      or by tenant_id so one tenant's events share a
 *                      shard and are fetched in send order (default spread)
 *   connect_timeout_ms 1..60000    (default 500)
 *   timeout_ms         1..60000    Redis command timeout (default 1000)
 *   sync_connections   1..64       connections shared by auditq_send (default 4)
 *   buffer_events      1..10000000 async buffer capacity in events (default 100000)
 *   batch_size         1..100000   async: events per pipelined push (default 500)
 *   flush_interval_ms  1..60000    async: max time an event waits (default 100)
 *   full_policy        block | error   async buffer full: wait (up to
 *                      enqueue_timeout_ms) or fail at once (default block)
 *   enqueue_timeout_ms 0..60000    async: longest wait for space (default 50)
 *   close_timeout_ms   0..600000   auditq_close: longest drain (default 5000)
 *   max_job_bytes      1024..16777216 encoded job cap (default 65536)
 *   spool_path         file to spool events to while Redis fails; empty = no
 *                      spool (the default). One file per producer process.
 *   spool_fsync        always | interval | never   when spooled bytes reach
 *                      the disk: before the call returns / every
 *                      spool_fsync_interval_ms / when the OS writes them
 *                      (default always)
 *   spool_fsync_interval_ms 1..60000  (default 1000)
 *   spool_max_bytes    4096..2^50  spool file cap in bytes (default 1073741824)
 *   spool_full_policy  error | block   at the cap: fail at once with
 *                      AUDITQ_ERR_SPOOL_FULL, or wait up to timeout_ms for the
 *                      replay to free the spool first (default error)
 *   protect_fields     PATH:ACTION rules applied before an event leaves the
 *                      process, e.g. "source_ip:hmac, metadata.email:hmac,
 *                      changes.password:redact, changes.*.token:drop";
 *                      ACTION hmac ("hmac-sha256:<hex>"), redact
 *                      ("[redacted]") or drop (default "": none;
 *                      docs/SECURITY.md section 8)
 *   protect_key_file   the HMAC key of hmac rules: >= 32 bytes, not
 *                      accessible to other users; auditq_open refuses a
 *                      missing, short or world-accessible file (default "")
 * Returns AUDITQ_ERR_CONFIG with auditq_last_error() naming key and fix; an
 * unknown key names the closest one ("unknown setting 'batchsize' (did you
 * mean 'batch_size'?)"). */
AUDITQ_API auditq_rc auditq_config_set(auditq_config *cfg, const char *key, const char *value);
/* NULL-safe. */
AUDITQ_API void auditq_config_free(auditq_config *cfg);

/* ---- handle -------------------------------------------------------------- */

/* Opens a handle: copies cfg (the caller keeps ownership of cfg) and starts
 * the async flusher thread (and, with spool_path, opens and locks the spool
 * and starts its replay thread). It does not contact Redis (call auditq_ping to
 * check it at start-up): a Redis that is down at open is not an error; sends
 * fail (or buffer) until it is back.
 * On success *out owns a handle the caller releases with auditq_close. */
AUDITQ_API auditq_rc auditq_open(const auditq_config *cfg, auditq **out);
/* Drains the async buffer (up to close_timeout_ms), stops the flusher and
 * frees the handle. NULL-safe (returns AUDITQ_OK). Returns AUDITQ_ERR_TIMEOUT
 * if events were still buffered when the timeout ran out: they are lost, and
 * the return says so -- call auditq_flush first to keep control. With a
 * spool, buffered events Redis cannot take go to the spool instead, and
 * spooled events not yet replayed stay there (see "spool" below): neither
 * is a loss, and close returns AUDITQ_OK. */
AUDITQ_API auditq_rc auditq_close(auditq *q);
/* fork(): a child process inherits a copy of every open handle, but not
 * its threads (the flusher, the spool's replay thread), and shares its
 * sockets and spool file with the parent. The child must not use or close
 * that copy: auditq_close would wait for threads that are not there, and a
 * send would write into the parent's Redis connections. In the child, call
 * auditq_abandon(q) on each inherited handle (before any other auditq call
 * on it), then auditq_open a new one if the child sends events. It closes
 * the child's copies of the handle's descriptors -- sockets and the spool
 * (the parent keeps the spool's lock; the child no longer holds it when the
 * parent exits) -- and frees the copy without taking its locks, which a
 * parent thread may have held at the fork. Events buffered in the parent
 * stay the parent's to deliver; the child sends none of them. What the
 * parent's threads held privately at the fork (their batch buffers, about
 * 16 KiB a handle) cannot be found from the child and stays allocated in
 * it. The spool
 * file stays locked by the parent: give the child's new handle another
 * spool_path. Only for a child of fork(); in any other process the handle
 * must be released with auditq_close. NULL-safe (returns AUDITQ_OK).
 * Async-signal-unsafe (it frees memory): call it from the child after
 * fork() returns, e.g. a pthread_atfork child handler or Python's
 * os.register_at_fork(after_in_child=...), not between fork and exec of a
 * vfork. */
AUDITQ_API auditq_rc auditq_abandon(auditq *q);
/* Round trip to Redis (PING). */
AUDITQ_API auditq_rc auditq_ping(auditq *q);

/* ---- events -------------------------------------------------------------- */

/* New event with `action` set (may be NULL, then set it before sending) and
 * priority normal. Caller frees with auditq_event_free. NULL on OOM. */
AUDITQ_API auditq_event *auditq_event_new(const char *action);
/* NULL-safe. */
AUDITQ_API void auditq_event_free(auditq_event *ev);
/* Clears all fields so the event can be reused. */
AUDITQ_API void auditq_event_reset(auditq_event *ev);
/* Copies `value` (NUL-terminated UTF-8) into the field; NULL clears it.
 * Checked now: UTF-8, length, enum values for actor_type/outcome, UUID form
 * for event_id. JSON fields must go through auditq_event_set_json. */
AUDITQ_API auditq_rc auditq_event_set(auditq_event *ev, auditq_field f, const char *value);
/* Same with an explicit length (value need not be NUL-terminated; it must
 * not contain NUL bytes). */
AUDITQ_API auditq_rc auditq_event_setn(auditq_event *ev, auditq_field f, const char *value, size_t len);
/* Copies JSON text into AUDITQ_CHANGES or AUDITQ_METADATA after checking it
 * is one valid JSON object (RFC 8259). */
AUDITQ_API auditq_rc auditq_event_set_json(auditq_event *ev, auditq_field f, const char *json);
AUDITQ_API auditq_rc auditq_event_set_priority(auditq_event *ev, auditq_priority p);
/* Overrides occurred_at (microseconds since the Unix epoch), e.g. for
 * backfills; 0 means "now, at enqueue" (the default). */
AUDITQ_API auditq_rc auditq_event_set_time(auditq_event *ev, int64_t occurred_at_us);

/* ---- sending ------------------------------------------------------------- */

/* Sync: encodes and LPUSHes the event; returns once Redis acknowledged it.
 * Bounded wait: for a free pool connection (up to timeout_ms), a connect
 * (connect_timeout_ms, plus timeout_ms for AUTH/SELECT on a new connection)
 * and the LPUSH (timeout_ms). The event stays owned by the caller. If id_out
 * is not NULL it receives the event_id (AUDITQ_ID_SIZE bytes). A timeout
 * means "unknown": to retry and have the event stored once, the retry must
 * carry the same event_id AND occurred_at -- set AUDITQ_EVENT_ID (from
 * id_out) and auditq_event_set_time() before the FIRST attempt, since rows
 * are unique on (event_id, occurred_at). */
AUDITQ_API auditq_rc auditq_send(auditq *q, const auditq_event *ev, char *id_out);
/* Async: encodes the event into the bounded buffer and returns; a background
 * thread pipelines it to Redis. With full_policy=block a full buffer waits up
 * to enqueue_timeout_ms, then AUDITQ_ERR_BUFFER_FULL; with error it fails at
 * once. Events are never dropped silently. */
AUDITQ_API auditq_rc auditq_send_async(auditq *q, const auditq_event *ev, char *id_out);
/* Waits until every event buffered before the call is acknowledged by Redis,
 * at most timeout_ms (AUDITQ_ERR_TIMEOUT otherwise). */
AUDITQ_API auditq_rc auditq_flush(auditq *q, int timeout_ms);
/* Copies the handle's counters. */
AUDITQ_API auditq_rc auditq_get_stats(auditq *q, auditq_stats *out);

/* ---- spool --------------------------------------------------------------
 *
 * With spool_path set, an event Redis cannot take (connection refused or
 * lost, timeout) is appended to a local file instead, and the call returns
 * AUDITQ_OK: the event is acknowledged by the spool (durably on disk before
 * the return with spool_fsync=always). A background thread probes Redis and
 * pushes the spooled events to their queues in file order, in chunks of
 * batch_size, keeping its position in spool_path.pos; once the spool is
 * empty it is cut back and sends go straight to Redis again. While records
 * wait, new events go to the spool too, so one thread's events reach Redis
 * in the order it sent them (except at the cap, where an event tries Redis
 * directly before spool_full_policy applies).
 *
 * - auditq_send: spools on AUDITQ_ERR_CONNECT / AUDITQ_ERR_TIMEOUT (an auth
 *   or command error is still returned). A timed-out LPUSH may also have
 *   reached Redis: both copies carry the same event_id and occurred_at, and
 *   the worker stores such a pair once.
 * - auditq_send_async: a batch the flusher cannot push (after one retry on
 *   a fresh connection) is spooled, so the buffer frees up. auditq_flush
 *   counts a spooled event as acknowledged.
 * - At spool_max_bytes: sync calls return AUDITQ_ERR_SPOOL_FULL (counted in
 *   spool_rejected_full and errors); async batches stay in the buffer,
 *   which then fills up (full_policy). Never dropped silently.
 * - auditq_open fails with AUDITQ_ERR_SPOOL when spool_path is locked by
 *   another handle or process, is not a spool file, or holds unreplayed
 *   events of another namespace. Events a previous process left there are
 *   replayed by this one; a torn last record (crash mid-write) is cut off
 *   and counted in spool_corrupt_records.
 * - auditq_close tries to replay what is left within close_timeout_ms,
 *   stopping early if Redis does not answer; the rest stays on disk for the
 *   next auditq_open or `auditqctl spool replay FILE`.
 * The format is in docs/PROTOCOL.md ("Producer spool file"). */

/* Copies into buf (NUL-terminated, truncated to len) what no call returned:
 * the last damage the spool met (a torn tail cut off at open, a corrupt
 * record the replay skipped, with its offset; a write or fsync error),
 * followed by "; replay waiting for Redis: <why>" while the replay is
 * failing. Empty when all is well. The library never prints: log this when
 * spool_corrupt_records, spool_errors or replay_retries grows. */
AUDITQ_API auditq_rc auditq_spool_problem(auditq *q, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* AUDITQ_H */
