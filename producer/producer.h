/* producer.h -- libauditq internals shared by the producer sources. Not installed. */
#ifndef AQ_PRODUCER_H
#define AQ_PRODUCER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "auditq.h"
#include "codec.h"
#include "keys.h"
#include "redisconn.h"
#include "spool.h"

#define PRODUCER_MAX_CONNS 64

/* What a producer says about a queue key of the wrong type (its LPUSH gets
 * WRONGTYPE): redis_explain_wrongtype's effect clause. */
#define PRODUCER_WRONGTYPE_EFFECT "events of this priority are refused until then"

enum { FULL_BLOCK = 0, FULL_ERROR = 1 };
enum { SPOOL_FSYNC_ALWAYS = 0, SPOOL_FSYNC_INTERVAL = 1, SPOOL_FSYNC_NEVER = 2 };
enum { SPOOL_FULL_ERROR = 0, SPOOL_FULL_BLOCK = 1 };

struct auditq_config {
    char redis_url[512];
    char ns[AQ_NS_MAX + 1];
    int connect_timeout_ms;
    int timeout_ms;
    int sync_connections;
    int buffer_events;
    int batch_size;
    int flush_interval_ms;
    int full_policy;
    int enqueue_timeout_ms;
    int close_timeout_ms;
    int max_job_bytes;
    char spool_path[1024];     /* "" = no spool */
    int spool_fsync;           /* SPOOL_FSYNC_* */
    int spool_fsync_interval_ms;
    int64_t spool_max_bytes;
    int spool_full_policy;     /* SPOOL_FULL_* */
};

struct auditq_event {
    char *val[AUDITQ_FIELD_COUNT]; /* owned copies; NULL = unset */
    size_t len[AUDITQ_FIELD_COUNT];
    size_t cap[AUDITQ_FIELD_COUNT];
    int priority;
    int64_t occurred_at_us;        /* 0 = now at enqueue */
};

/* One encoded job waiting in the async buffer. */
typedef struct pending {
    char *data;     /* malloc'd msgpack bytes, owned by the buffer */
    uint32_t len;
    uint8_t prio;
} pending;

/* A sync connection slot: one thread uses it at a time. */
typedef struct conn_slot {
    redisContext *ctx;
    int busy;
} conn_slot;

struct auditq {
    struct auditq_config cfg;
    aq_redis_target target;
    aq_keys keys;

    /* sync pool */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    conn_slot slots[PRODUCER_MAX_CONNS];
    int64_t down_until_us;   /* after a connect timeout: fail fast until then */

    /* async buffer: a ring of pending jobs guarded by mu. Jobs the flusher is
     * sending stay counted in `count` until Redis acknowledged them, so the
     * buffer never holds more than buffer_events jobs in total. */
    pthread_mutex_t mu;
    pthread_cond_t wake_flusher;  /* batch ready, flush asked, or closing */
    pthread_cond_t space;         /* room freed, or closing */
    pthread_cond_t acked;         /* acked_seq advanced */
    pending *ring;
    size_t ring_cap, head, count;
    uint64_t queued_seq;          /* jobs ever accepted */
    uint64_t acked_seq;           /* jobs ever acknowledged (FIFO) */
    int flush_waiters;
    int closing;
    int64_t close_deadline_us;    /* monotonic; flusher gives up after it */
    int flusher_started;
    pthread_t flusher;
    redisContext *flusher_ctx;
    /* Why the flusher last failed to deliver (a refused login, NOPERM, a
     * refused connection), for auditq_flush/auditq_close to report; "" once
     * a batch got through. Guarded by mu. */
    char async_err[512];

    /* counters (auditq_get_stats) */
    atomic_uint_fast64_t st_sent_sync, st_queued_async, st_sent_async, st_rejected_full,
        st_errors, st_redis_retries;

    /* spool (spooler.c). sp is set at open and never changes; everything
     * it points to, and the fields below, are guarded by spool_mu -- except
     * that the replay thread reads records through sp's fd below the size
     * it saw under the lock (appends only extend the file). */
    spool *sp;                    /* NULL: no spool configured */
    pthread_mutex_t spool_mu;
    pthread_cond_t spool_cv;      /* records to replay, space freed, closing */
    atomic_int spool_backlog;     /* records wait: new events go to the spool (written under spool_mu) */
    int spool_closing;
    int64_t spool_deadline_us;    /* monotonic; the replay gives up after it */
    int spool_dirty;              /* appended since the last fdatasync */
    int spooler_started;
    pthread_t spooler;
    char spool_damage[1200];      /* last corruption / I/O problem (sticky) */
    char spool_replay_err[600];   /* why the replay is failing now; "" when it works */
    atomic_uint_fast64_t st_spooled, st_replayed, st_spool_rejected_full, st_spool_corrupt,
        st_spool_errors, st_replay_retries;
};

/* Empties the calling thread's last error detail. Every public call that
 * returns an auditq_rc does this first, so after a success
 * auditq_last_error() is "" (auditq.h, "Errors"). */
void producer_clear_error(void);
/* Sets the calling thread's last error detail (printf-style). */
void producer_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Validates and encodes ev into out (fresh bytes appended), filling the
 * event id (id_out may be NULL) and priority. */
/* Fills j from ev: fields point into ev (valid while ev is unchanged); a
 * new UUIDv7 unless ev has an event_id; occurred_at now unless set.
 * AUDITQ_ERR_MISSING_FIELD without an action. */
auditq_rc producer_fill_job(const auditq_event *ev, aq_job *j);
auditq_rc producer_encode(auditq *q, const auditq_event *ev, aq_buf *out, int *prio, char *id_out);
/* Maps a hiredis context error to an auditq_rc and records the detail. */
auditq_rc producer_redis_error(const redisContext *c, const char *what);

/* The calling thread's encode buffer, emptied (NULL on OOM). */
aq_buf *producer_scratch(void);

/* spooler.c -- see the DESIGN comment there. */
/* Opens the spool (if configured) and starts the replay thread. */
auditq_rc spooler_open(auditq *q);
/* Replays what it can before deadline_us (monotonic), stops the thread,
 * syncs and closes the spool. NULL-safe for a handle without a spool. */
void spooler_close(auditq *q, int64_t deadline_us);
/* Result of spooler_put beyond auditq_rc values. */
#define SPOOLER_NO_BACKLOG (-1)
/* Appends n encoded jobs to the spool, all or none. only_if_backlog: do it
 * only while unreplayed records wait (returns SPOOLER_NO_BACKLOG otherwise),
 * so the caller goes to Redis directly. wait_ms: how long to wait for space
 * at the cap. Returns AUDITQ_OK, AUDITQ_ERR_SPOOL_FULL, AUDITQ_ERR_SPOOL (with
 * the detail set) or SPOOLER_NO_BACKLOG. Counts spooled / errors itself. */
int spooler_put(auditq *q, const spool_item *items, size_t n, int only_if_backlog, int wait_ms);
/* Whether unreplayed records wait (a hint read without the lock). */
int spooler_backlog(auditq *q);
/* Parses the spool settings; 1 if key is one of them (then *rc is set). */
int spooler_config_set(auditq_config *cfg, const char *key, const char *value, auditq_rc *rc);

/* async.c */
auditq_rc async_start(auditq *q);
/* Drains (bounded by close_timeout_ms) and stops the flusher; returns
 * AUDITQ_ERR_TIMEOUT if jobs were left. Frees the buffer. */
auditq_rc async_stop(auditq *q);
#endif
