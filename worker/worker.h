/* worker.h -- the state the parts of auditq-worker share.
 *
 * One `worker` per process, owned by main.c (the launcher). The modules
 * that main.c sets up each keep their own state and receive this for the
 * settings, the identity, the shutdown flags and the per-thread metrics:
 *   writer.c    the writer threads: fetch -> decode -> write -> settle
 *   upkeep.c    the main loop's timers: heartbeat, recovery, promotion,
 *               queue sample, partition upkeep, summary line
 *   retainer.c  the retention thread, started by a timer
 *   status.c    the HTTP endpoint's answers (/metrics, /healthz, /readyz)
 *   seal.c      the integrity sequencer thread
 * Threads: fields marked "main" are read and written by the main thread
 * only; cfg is written by the main thread under cfg_mu and read by other
 * threads only as a copy taken under cfg_mu (see the SIGHUP part of the
 * DESIGN comment in main.c).
 */
#ifndef AQ_WORKER_H
#define AQ_WORKER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "keyhealth.h"
#include "keys.h"
#include "metrics.h"
#include "redisconn.h"
#include "shards.h"

typedef struct seal seal;
typedef struct selfevents selfevents;

typedef struct worker {
    /* configuration */
    aq_config cfg;                     /* live settings: main thread writes under cfg_mu */
    aq_config boot_cfg;                /* as started; never written again (pgw reads it) */
    pthread_mutex_t cfg_mu;
    atomic_uint cfg_gen;               /* bumped on each applied reload */
    aq_keys keys;                      /* shard 0's (self-events go there) */
    aq_redis_target rt;                /* redis_url as parsed (messages name its user) */
    aq_shards shards;                  /* every shard's keys and server (common/shards.h) */

    /* identity */
    char id[160];
    char host[128];
    int pid;
    int64_t started_ms;
    int64_t started_us;
    int nthreads;
    metrics_thread *mt;                /* nthreads entries: writer i writes mt[i], main sums */

    /* shutdown */
    atomic_int stopping;
    atomic_int_fast64_t stop_deadline_us; /* monotonic */
    atomic_int running;                /* writer threads still running */
    pthread_mutex_t mu;
    pthread_cond_t cv;                 /* wakes sleeping threads at shutdown */

    keyhealth kh;                      /* Redis keys of the wrong type (every thread reports) */

    /* main thread only */
    uint64_t reloads_ok, reloads_failed;
    char pg_role[64];                  /* the role database_url logs in as (start check) */
    seal *seal;                        /* sequencer (worker/seal.c); NULL: sealing off */
    selfevents *se;                    /* self-audit events (worker/selfevents.c): set before the
                                          writers start, freed after they were joined; writers
                                          call only selfevents_commit on it */
} worker;

/* " shard=N" for a log line about shard sh, or "" when there is one shard
 * (the lines of an unsharded worker stay as they were). SHARD_KV gives
 * it a buffer that lives for the statement. */
const char *worker_shard_kv(const worker *w, int sh, char *buf, size_t n);
#define SHARD_KV(w, sh) worker_shard_kv((w), (sh), (char[24]){0}, 24)

/* Milliseconds left until the shutdown deadline (negative once past). */
int64_t worker_deadline_left_ms(worker *w);

/* Sleeps ms, or less when shutdown begins (unless ignore_stop). */
void worker_sleep(worker *w, int64_t ms, int ignore_stop);

/* While stopping, true once the drain deadline has passed. */
int worker_out_of_time(worker *w);

/* Sleep for a retry during shutdown: never past the deadline. */
void worker_retry_sleep(worker *w, int64_t ms);

/* err as logged: an ACL refusal (NOPERM, NOAUTH, WRONGPASS) is replaced by
 * a message naming our Redis user, what was refused and the fix (written
 * into buf, which is returned); any other error is returned as is. */
const char *worker_redis_why(const worker *w, const char *what, const char *err, char *buf, size_t n);
#endif
