/* auditq-worker -- moves audit jobs from Redis into PostgreSQL.
 *
 * DESIGN
 *
 * Threads. The main thread runs a libev loop that owns signals, timers and
 * the HTTP endpoint: heartbeat, recovery of dead workers, promotion of due
 * retries, partition upkeep, a 1 s sample of the queue numbers from Redis
 * (for /metrics, /readyz and the summary line), the periodic summary line,
 * SIGHUP reload, and shutdown. With retention_interval_s > 0 a retention
 * thread (common/retention.c, its own PostgreSQL connection) runs the
 * retention policy at start and then every interval; shutdown does not wait
 * for it (each of its steps is one transaction). With seal_key_file set, a
 * sequencer thread (worker/seal.c, its own PostgreSQL connection) appends
 * committed evidence to the Merkle tree and signs checkpoints. N writer threads (default: one per core)
 * each own one Redis and one PostgreSQL connection; no connection is ever
 * shared between threads. The main thread has its own Redis connection.
 *
 * A writer thread loops:  fetch -> decode -> write -> settle.
 *   fetch   a Lua script moves up to batch_size jobs from the highest-
 *           priority non-empty queue into this thread's in-flight list and
 *           records the source queue and a fencing token in the worker hash.
 *   decode  jobs that are not valid msgpack jobs become dead letters now,
 *           with the reason. Then each job's occurred_at is judged against
 *           this worker's clock, read once per batch (clockskew.h): beyond
 *           clock_skew_future_ms ahead or backfill_max_age_ms behind it is
 *           flagged (clock_flag) or, with clock_skew_policy = dead_letter,
 *           dead-lettered with occurred_at, our time and the bound.
 *   write   one transaction per batch, ON CONFLICT DO NOTHING on
 *           (event_id, occurred_at). Transient errors (PostgreSQL down,
 *           too many connections, deadlock, ...) are retried forever with
 *           capped exponential backoff, nothing is dead-lettered because the
 *           database was away -- but a thread does not sit on work another
 *           worker could do: after pg_release_after_ms of failed writes it
 *           gives the batch back (see "cannot write" below). Data errors are
 *           isolated by savepoint probes inside the batch's transaction
 *           (write_method=insert: by bisection into smaller transactions;
 *           see pgw.c): every good row commits; each bad row is
 *           scheduled for a delayed retry, and dead-lettered with its
 *           SQLSTATE after max_attempts.
 *   settle  a Lua script adds retries and dead letters, bumps the stats and
 *           deletes the in-flight list, atomically, only if the fencing
 *           token is still ours.
 * An idle thread (every queue empty) probes its PostgreSQL once a second
 * (can this role INSERT into audit_events?), so "PostgreSQL is down" -- or
 * a revoked privilege -- shows in /readyz and /metrics without waiting for
 * traffic.
 *
 * Failure windows and what closes each:
 *   crash before/while fetching: the script is atomic -- jobs are either
 *     still in their queue or in our in-flight list.
 *   crash with jobs in flight (before or after the commit): our heartbeat
 *     stops; after heartbeat_timeout_ms any worker's recovery timer pushes
 *     the in-flight jobs back to the front of their queues. If they had
 *     been committed, the re-write is a no-op (ON CONFLICT DO NOTHING):
 *     stored once.
 *   a job that kills every worker that takes it: each recovery counts it
 *     (by SHA-1 of its bytes); past max_recoveries it is dead-lettered.
 *   worker presumed dead while alive (long pause, partition): its batch
 *     was recovered and will be written again (idempotent); its settle
 *     finds the fencing token gone and adds no retries/dead letters, so
 *     nothing is dead-lettered or retried twice.
 *   Redis down during settle: the commit is done; we retry settle until
 *     Redis answers (or shutdown gives up, leaving the batch in flight for
 *     recovery -> idempotent re-write).
 *   connection reset or stalled in the middle of a COMMIT: the outcome is
 *     unknown, so it is a transient error like any other -- the batch is
 *     written again (a no-op if it had committed), never dead-lettered.
 *   a fetch or settle whose Redis answer was lost: a fetch left its jobs in
 *     our in-flight list, and the next fetch hands that same list back; a
 *     settle may have run, and its retry then finds the token gone (fenced:
 *     nothing added twice).
 *   a thread that cannot write (its PostgreSQL down or stalled, its login
 *     refused after a password change, a privilege revoked) while its
 *     heartbeat says it is alive, so nobody recovers its batch: after
 *     pg_release_after_ms of failed writes (pgw_hold_next) the release
 *     script moves the batch back to the FRONT of its queue, in fetch
 *     order, fenced like settle; the thread then parks -- fetches nothing,
 *     holds nothing -- and probes once a second until its PostgreSQL can
 *     take writes again. A thread in backoff whose connection is down also
 *     probes once a second and retries at once when the database answers,
 *     so a long backoff never holds a batch past the end of an outage; one
 *     probe per thread per second at most, so a database that is down is
 *     not stormed. Refusals no retry can fix (login, database, privilege,
 *     table) are fatal at start, before anything registers (exit 1).
 *   SIGTERM/SIGINT: threads stop fetching, finish and settle the batch in
 *     hand, and exit; a thread whose write fails gives its batch back at
 *     once instead of waiting out the deadline; a batch that cannot be
 *     finished within shutdown_timeout_ms (Redis away too) is released
 *     back to its queue before exit.
 *
 * Bounded waits: no thread waits on a silent server without a limit, so a
 * stalled network turns into an error, a reconnect and a retry.
 *   Redis: each command waits at most redis_timeout_ms (socket send and
 *     receive timeouts), a connect redis_connect_timeout_ms.
 *   PostgreSQL (worker/pgw.c): a connect waits at most pg_connect_timeout_s;
 *     every send and every result at most pg_timeout_ms without progress
 *     (poll on a non-blocking connection; statement_timeout_ms, which must
 *     be shorter, bounds the server's own work and says why).
 *   So a writer thread is out of touch for at most max(redis_timeout_ms,
 *   pg_timeout_ms, pg_connect_timeout_s) per call, then backs off. The main
 *   loop's Redis calls are bounded the same way; its hourly partition upkeep
 *   gives up after heartbeat_timeout_ms / 2 (connect and query each), so it
 *   cannot make this worker look dead. The retention thread's statements
 *   are bounded by PostgreSQL's timeouts only; shutdown does not wait for it.
 *
 * Observability. Writer threads count into their own metrics_thread with
 * relaxed atomics (worker/metrics.h); the main thread sums them for
 * /metrics, the heartbeat and the summary. The HTTP server (worker/http.h)
 * runs on the main loop with non-blocking sockets and bounded everything;
 * it never touches Redis or PostgreSQL itself: a scrape renders numbers
 * already in memory.
 *
 * SIGHUP reload. The main thread rebuilds the configuration exactly as at
 * start (defaults, -c FILE, AUDITQ_* environment, --set flags, in that
 * order) and, if it parses and validates, copies the settings marked
 * reloadable in the config table into w->cfg under cfg_mu and bumps
 * cfg_gen; anything else that changed is logged as needing a restart.
 * A writer thread copies w->cfg into its own snapshot (t->cfg) under cfg_mu
 * when cfg_gen moved, at the top of each loop -- so a batch runs start to
 * end under one consistent set of settings, and no thread ever reads
 * w->cfg unlocked. The PostgreSQL writers hold boot_cfg, a copy taken at
 * start that never changes (they use only non-reloadable settings).
 */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "clock.h"
#include "clockskew.h"
#include "codec.h"
#include "config.h"
#include "http.h"
#include "keyhealth.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "pgw.h"
#include "queue.h"
#include "redisconn.h"
#include "retention.h"
#include "sample.h"
#include "seal.h"
#include "uuid7.h"

#define MAX_SETS 128
#define PG_CHECK_MS 1000          /* idle thread's PostgreSQL ping interval */
#define SAMPLE_INTERVAL_S 1.0     /* queue numbers from Redis */
#define READY_SAMPLE_MAX_MS 5000  /* /readyz: last good Redis sample at most this old */
#define MAIN_REDIS_RETRY_MS 1000  /* main connection: reconnect at most this often */

typedef struct worker worker;

typedef struct wthread {
    worker *w;
    int idx;
    pthread_t tid;
    redisContext *rc;
    pgw *pg;
    uint64_t rng;
    uint64_t seq;
    aq_config cfg;            /* this thread's snapshot of the live settings */
    unsigned cfg_gen;         /* w->cfg_gen it was taken at */
    metrics_thread *m;        /* &w->mt[idx]: written here, read by main */
    int64_t pg_check_us;      /* monotonic time of the last idle ping */
    int pg_known;             /* -1 never checked, 0 down (logged), 1 up */
    pgw_fault pg_fault_logged; /* the cause last logged while down */
    int parked;               /* gave its batch back: fetches nothing until a probe passes */
    int64_t parked_us;        /* monotonic: when it parked */
    int64_t probe_us;         /* monotonic: the last probe while parked */
    /* per-batch scratch, grown as needed */
    aq_job *jobs;
    size_t *jobitem;          /* jobs[i] came from items[jobitem[i]] */
    pgw_row_result *res;
    aq_buf *dead;
    queue_retry *retries;
    aq_buf *retrybufs;
    size_t cap;
    int abandoned;            /* left a batch in flight at shutdown */
    pgw_stats pgst;
} wthread;

struct worker {
    /* configuration */
    aq_config cfg;                     /* live settings: main thread writes under cfg_mu */
    aq_config boot_cfg;                /* as started; never written again (pgw reads it) */
    pthread_mutex_t cfg_mu;
    atomic_uint cfg_gen;               /* bumped on each applied reload */
    char cfg_path[512];
    char *sets[MAX_SETS];              /* --set KEY=VALUE, in command-line order */
    const char *set_origin[MAX_SETS];  /* the option as typed ("--set", "-b"), for errors */
    int nsets;
    aq_keys keys;
    aq_redis_target rt;

    /* identity */
    char id[160];
    char host[128];
    int pid;
    int64_t started_ms;
    int64_t started_us;
    int nthreads;
    wthread *th;
    metrics_thread *mt;                /* nthreads entries */

    /* shutdown */
    atomic_int stopping;
    atomic_int_fast64_t stop_deadline_us; /* monotonic */
    atomic_int running;                /* writer threads still running */
    atomic_uint_fast64_t committed_batches;
    pthread_mutex_t mu;
    pthread_cond_t cv;                 /* wakes sleeping threads at shutdown */

    /* main thread only */
    redisContext *rc;                  /* main thread's own connection */
    int64_t rc_retry_us;               /* monotonic: no reconnect before this */
    int rc_down_logged;
    uint64_t recovered;
    uint64_t reloads_ok, reloads_failed;
    char pg_role[64];                  /* the role database_url logs in as (start check) */
    metrics_queue_sample sample;       /* last successful Redis sample */
    int sample_have;                   /* sample holds data */
    int sample_ok;                     /* the most recent attempt succeeded */
    int64_t sample_us;                 /* wall clock of the last success */
    char sample_err[256];
    keyhealth kh;                      /* Redis keys of the wrong type (writers report too) */
    uint64_t last_processed;
    int64_t last_summary_us;
    http_server *http;
    seal *seal;                        /* sequencer (worker/seal.c); NULL: sealing off */

    struct ev_loop *loop;
    ev_signal sig_term, sig_int, sig_hup;
    ev_timer t_heartbeat, t_recover, t_promote, t_maint, t_summary, t_sample, t_stop;

    /* retention_interval_s > 0: `auditqctl retention run` on a timer, in a
     * thread of its own with its own PostgreSQL connection (an export of a
     * big month takes minutes; the loop must not wait for it). */
    ev_timer t_retention;              /* 1 s tick: is a run due? */
    pthread_t ret_tid;
    int ret_joinable;                  /* ret_tid was started and not joined */
    atomic_int ret_running;
    int64_t ret_last_start_us;         /* monotonic; 0 = never */
    aq_config ret_cfg;                 /* the run's settings, copied at its start */
};

static int64_t deadline_left_ms(worker *w)
{
    return (atomic_load(&w->stop_deadline_us) - clock_mono_us()) / 1000;
}

/* Sleeps ms, or less when shutdown begins (unless ignore_stop). */
static void w_sleep(worker *w, int64_t ms, int ignore_stop)
{
    if (ms <= 0)
        return;
    struct timespec dl = clock_abs_after_ms(ms);
    pthread_mutex_lock(&w->mu);
    while (ignore_stop || !atomic_load(&w->stopping))
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&w->mu);
}

/* While stopping, true once the drain deadline has passed. */
static int out_of_time(worker *w)
{
    return atomic_load(&w->stopping) && deadline_left_ms(w) <= 0;
}

/* Sleep for a retry during shutdown: never past the deadline. */
static void retry_sleep(worker *w, int64_t ms)
{
    if (atomic_load(&w->stopping)) {
        int64_t left = deadline_left_ms(w);
        if (ms > left)
            ms = left;
    }
    w_sleep(w, ms, 1);
}

/* ---- writer threads ------------------------------------------------------- */

/* Takes a fresh snapshot of the live settings if a reload applied any. */
static void thread_refresh_cfg(wthread *t)
{
    worker *w = t->w;
    if (atomic_load_explicit(&w->cfg_gen, memory_order_acquire) == t->cfg_gen)
        return;
    pthread_mutex_lock(&w->cfg_mu);
    t->cfg = w->cfg;
    t->cfg_gen = atomic_load(&w->cfg_gen);
    pthread_mutex_unlock(&w->cfg_mu);
}

static int ensure_redis(wthread *t)
{
    char err[256], q[300];
    if (t->rc && !t->rc->err)
        return 0;
    if (t->rc) {
        redisFree(t->rc);
        t->rc = NULL;
    }
    t->rc = redis_connect(&t->w->rt, t->cfg.redis_connect_timeout_ms, t->cfg.redis_timeout_ms,
                          err, sizeof err, NULL);
    if (!t->rc) {
        atomic_store_explicit(&t->m->redis_up, 0, memory_order_relaxed);
        log_warn("redis unavailable", " thread=%d error=%s", t->idx, log_q(q, sizeof q, err));
        return -1;
    }
    return 0;
}

static void note_redis(wthread *t)
{
    atomic_store_explicit(&t->m->redis_up, t->rc != NULL && !t->rc->err, memory_order_relaxed);
}

/* err as logged: an ACL refusal (NOPERM, NOAUTH, WRONGPASS) is replaced by
 * a message naming our Redis user, what was refused and the fix. */
static const char *redis_why(const worker *w, const char *what, const char *err, char *buf, size_t n)
{
    return redis_explain_refusal(&w->rt, "worker", what, NULL, err, buf, n) != REDIS_REFUSED_NONE ? buf : err;
}

/* Records whether this thread's PostgreSQL can take writes (up) and, when
 * not, why (f, shown by /readyz); logs only the transitions. A cause only
 * an operator can fix (login refused, privilege missing, ...) is logged
 * with the fix, also when it follows another cause (a password changed
 * under a live session: "connection lost", then "login refused"). */
static void note_pg(wthread *t, int up, pgw_fault f, const char *err)
{
    char q[1100], why[1000];
    if (up)
        f = PGW_FAULT_NONE;
    else if (f == PGW_FAULT_NONE)
        f = PGW_FAULT_UNREACHABLE;
    atomic_store_explicit(&t->m->pg_up, up, memory_order_relaxed);
    atomic_store_explicit(&t->m->pg_fault, (int)f, memory_order_relaxed);
    if (up && t->pg_known == 0) {
        log_info("postgres connection restored", " thread=%d", t->idx);
    } else if (!up && pgw_fault_is_config(f) && (t->pg_known != 0 || f != t->pg_fault_logged)) {
        char msg[64];
        snprintf(msg, sizeof msg, "postgres %s", pgw_fault_name(f));
        log_warn(msg, " thread=%d error=%s", t->idx,
                 log_q(q, sizeof q, pgw_explain(f, pgw_role(t->pg), err, why, sizeof why)));
    } else if (!up && t->pg_known == 1) {
        char cq[40];
        log_warn("postgres connection lost", " thread=%d cause=%s error=%s", t->idx,
                 log_q(cq, sizeof cq, pgw_fault_name(f)), log_q(q, sizeof q, err));
    } else if (!up && t->pg_known == -1) {
        log_warn("postgres unreachable", " thread=%d error=%s", t->idx, log_q(q, sizeof q, err));
    }
    if (!up)
        t->pg_fault_logged = f;
    t->pg_known = up;
}

/* Idle thread: checks at most once per PG_CHECK_MS that its PostgreSQL can
 * take writes (pgw_probe: one round trip), so /readyz shows an outage, a
 * refused login or a revoked privilege without waiting for traffic. */
static void pg_check(wthread *t)
{
    char err[512] = "";
    int64_t now = clock_mono_us();
    if (t->pg_known != -1 && now - t->pg_check_us < (int64_t)PG_CHECK_MS * 1000)
        return;
    t->pg_check_us = now;
    int ok = pgw_probe(t->pg, err, sizeof err) == 0;
    note_pg(t, ok, pgw_last_fault(t->pg), err);
}

static int grow(wthread *t, size_t n)
{
    if (n <= t->cap)
        return 0;
    size_t cap = n;
    void *p;
#define GROW(field)                                            \
    p = realloc(t->field, cap * sizeof *t->field);             \
    if (!p)                                                    \
        return -1;                                             \
    t->field = p;
    GROW(jobs) GROW(jobitem) GROW(res) GROW(retries)
#undef GROW
    p = realloc(t->dead, cap * sizeof *t->dead);
    if (!p)
        return -1;
    t->dead = p;
    p = realloc(t->retrybufs, cap * sizeof *t->retrybufs);
    if (!p)
        return -1;
    t->retrybufs = p;
    memset(t->dead + t->cap, 0, (cap - t->cap) * sizeof *t->dead);
    memset(t->retrybufs + t->cap, 0, (cap - t->cap) * sizeof *t->retrybufs);
    t->cap = cap;
    return 0;
}

/* Gives the batch in hand back to the front of its queue (queue_release)
 * because this thread's PostgreSQL cannot take it: f and err say why,
 * failing_ms for how long. 0: the thread holds nothing now (released, or
 * a peer had recovered it meanwhile); -1: Redis did not take it, the batch
 * stays in flight. */
static int release_batch(wthread *t, const queue_batch *b, pgw_fault f, int64_t failing_ms, const char *err)
{
    worker *w = t->w;
    char rerr[512], q[600], why[300], eq[1100], ex[1000];
    long long n = 0;
    int fenced = 0;

    if (ensure_redis(t) != 0)
        return -1;
    int rc = queue_release(t->rc, &w->keys, w->id, t->idx, b->token, &n, &fenced, rerr, sizeof rerr);
    note_redis(t);
    if (rc != 0) {
        log_warn("could not give the batch back; it stays in flight and its write is retried",
                 " thread=%d error=%s", t->idx,
                 log_q(q, sizeof q, redis_why(w, "the release script", rerr, why, sizeof why)));
        return -1;
    }
    atomic_fetch_add(&t->m->released, (uint_fast64_t)n);
    atomic_store(&t->m->inflight, 0);
    if (fenced) {
        log_warn("batch was recovered by another worker meanwhile; nothing to give back",
                 " thread=%d jobs=%zu", t->idx, b->n);
        return 0;
    }
    log_warn(atomic_load(&w->stopping)
                 ? "batch released to the front of its queue: PostgreSQL cannot take it and the worker is stopping"
                 : "batch released to the front of its queue: PostgreSQL cannot take it; a healthy worker takes it next",
             " thread=%d jobs=%lld priority=%s cause=%s failing_ms=%lld pg_release_after_ms=%d error=%s", t->idx, n,
             codec_priority_name(b->priority) ? codec_priority_name(b->priority) : "normal",
             log_q(ex, sizeof ex, pgw_fault_name(f)), (long long)failing_ms, t->cfg.pg_release_after_ms,
             log_q(eq, sizeof eq, pgw_explain(f, pgw_role(t->pg), err, q, sizeof q)));
    return 0;
}

enum { WB_WRITTEN = 0, WB_RELEASED = 1, WB_GAVE_UP = -1 };

/* Writes the decoded jobs until PostgreSQL has taken every row (committed
 * or refused as bad data): WB_WRITTEN. Between failed attempts the thread
 * backs off (backoff_base_ms doubling to backoff_max_ms), and pgw_hold_next
 * decides the rest: while the connection is down it probes once a second
 * and retries at once when its database answers (a long backoff must not
 * hold a batch after the outage ended); after pg_release_after_ms of
 * failures, or at once when the worker is stopping, it gives the batch back
 * to the front of its queue for a healthy worker: WB_RELEASED. WB_GAVE_UP:
 * shutdown ran out of time and Redis would not take the batch back (it
 * stays in flight; finish_in_redis or a peer's recovery returns it). */
static int write_batch(wthread *t, const queue_batch *b, size_t nj)
{
    worker *w = t->w;
    const aq_config *c = &t->cfg;
    char err[512], perr[512], q[600];
    unsigned attempt = 0;
    pgw_hold h;

    memset(&h, 0, sizeof h);
    while (nj > 0) {
        metrics_set_state(t->m, MST_WRITING);
        int64_t t0 = clock_mono_us();
        int rc = pgw_write(t->pg, t->jobs, nj, t->res, &t->pgst, err, sizeof err);
        int64_t took = clock_mono_us() - t0;
        /* t->pgst is this thread's running total: publish it as is. */
        atomic_store_explicit(&t->m->pg_transactions, t->pgst.transactions, memory_order_relaxed);
        atomic_store_explicit(&t->m->pg_bisections, t->pgst.bisections, memory_order_relaxed);
        atomic_store_explicit(&t->m->pg_round_trips, t->pgst.round_trips, memory_order_relaxed);
        pgw_fault f = rc == PGW_DONE ? PGW_FAULT_NONE : pgw_last_fault(t->pg);
        /* A server error on a live connection (a deadlock) is not an
         * outage; a refused login or privilege is, connected or not. */
        note_pg(t, rc == PGW_DONE || (pgw_connected(t->pg) && !pgw_fault_is_config(f)), f, err);
        if (rc == PGW_DONE) {
            metrics_observe_write(t->m, took);
            return WB_WRITTEN;
        }
        atomic_fetch_add_explicit(&t->m->write_errors, 1, memory_order_relaxed);
        attempt++;
        int64_t now = clock_mono_us();
        int64_t delay = backoff_delay_ms(attempt, c->backoff_base_ms, c->backoff_max_ms, &t->rng);
        if (attempt == 1)
            h.failing_since_us = t0;
        h.retry_at_us = now + delay * 1000;
        h.probe_us = now; /* the write was as good as a probe */
        h.release_after_ms = c->pg_release_after_ms;
        if (!atomic_load(&w->stopping))
            log_warn("postgres write failed; will retry", " thread=%d attempt=%u retry_in_ms=%lld error=%s",
                     t->idx, attempt, (long long)delay, log_q(q, sizeof q, err));
        metrics_set_state(t->m, MST_BACKOFF);
        for (;;) {
            int64_t wait_us;
            now = clock_mono_us();
            h.connected = pgw_connected(t->pg);
            h.stopping = atomic_load(&w->stopping);
            pgw_step st = pgw_hold_next(&h, now, &wait_us);
            if (st == PGW_STEP_RELEASE) {
                if (release_batch(t, b, f, (now - h.failing_since_us) / 1000, err) == 0)
                    return WB_RELEASED;
                /* Redis is away too: keep writing, offer it again in a second. */
                h.release_at_us = now + (int64_t)PGW_PROBE_MS * 1000;
            } else if (st == PGW_STEP_RETRY) {
                break;
            } else if (st == PGW_STEP_PROBE) {
                h.probe_us = now;
                if (pgw_probe(t->pg, perr, sizeof perr) == 0) {
                    note_pg(t, 1, PGW_FAULT_NONE, "");
                    log_info("postgres answers again; retrying the batch now", " thread=%d attempt=%u failing_ms=%lld",
                             t->idx, attempt, (long long)((clock_mono_us() - h.failing_since_us) / 1000));
                    break;
                }
                f = pgw_last_fault(t->pg);
                snprintf(err, sizeof err, "%s", perr);
                note_pg(t, 0, f, err);
            } else if (h.stopping) {
                retry_sleep(w, (wait_us + 999) / 1000);
            } else {
                w_sleep(w, (wait_us + 999) / 1000, 0); /* a stop signal wakes it: release at once */
            }
            if (out_of_time(w)) {
                log_warn("shutdown deadline passed with a batch unwritten; it stays in flight",
                         " thread=%d jobs=%zu", t->idx, b->n);
                return WB_GAVE_UP;
            }
        }
    }
    return WB_WRITTEN;
}

/* Acknowledges the batch in Redis, retrying until it is done. Returns -1
 * if shutdown ran out of time first. */
static int settle_batch(wthread *t, queue_batch *b, size_t processed, size_t nr, size_t nd)
{
    worker *w = t->w;
    char err[512], q[600];
    unsigned attempt = 0;

    for (;;) {
        int fenced = 0;
        queue_wrongset ws = {0};
        metrics_set_state(t->m, MST_SETTLING);
        int connected = ensure_redis(t) == 0; /* ensure_redis logs its own failure */
        int ok = connected &&
                 queue_settle(t->rc, &w->keys, w->id, t->idx, b->token, processed, t->retries, nr,
                              t->dead, nd, t->cfg.dead_letter_max, &fenced, &ws, err, sizeof err) == 0;
        note_redis(t);
        /* Keys of the wrong type are logged by keyhealth, rate-limited: a
         * settle refused for one retries every 2 s until it is fixed. */
        for (size_t i = 0; i < ws.n; i++)
            keyhealth_report(&w->kh, ws.k[i].key, ws.k[i].type, ws.k[i].expected, "settle");
        if (ok) {
            if (fenced && attempt == 0)
                log_warn("batch was recovered by another worker meanwhile; its copy will be re-written "
                         "idempotently", " thread=%d jobs=%zu", t->idx, b->n);
            else if (fenced)
                log_warn("batch no longer ours after a failed settle: that settle went through and only "
                         "its answer was lost, or another worker recovered the batch (and re-writes it "
                         "idempotently)", " thread=%d jobs=%zu", t->idx, b->n);
            return 0;
        }
        /* Logged also when the command timed out (the connection is then
         * marked failed): a stalled Redis must show per thread. */
        if (connected && ws.n == 0) {
            char why[300];
            log_warn("settle failed; will retry", " thread=%d error=%s", t->idx,
                     log_q(q, sizeof q, redis_why(w, "the settle script", err, why, sizeof why)));
        }
        if (out_of_time(w)) {
            log_warn("shutdown deadline passed before the batch was acknowledged; it stays in flight "
                     "(already committed: its re-delivery is a no-op)", " thread=%d", t->idx);
            return -1;
        }
        metrics_set_state(t->m, MST_BACKOFF);
        retry_sleep(w, backoff_delay_ms(++attempt, 50, 2000, &t->rng));
    }
}

/* occurred_at far from our clock (worker/clockskew.h): flags each decoded
 * job, or with clock_skew_policy = dead_letter turns it into a dead letter
 * (t->dead[*nd ...]) and drops it from t->jobs. One reading of the clock
 * for the whole batch, so its events are judged alike. Returns the jobs
 * left to write. */
static size_t judge_clocks(wthread *t, const queue_batch *b, size_t nj, size_t *nd)
{
    const aq_config *c = &t->cfg;
    int64_t now_us = clock_now_us();
    size_t kept = 0;

    for (size_t j = 0; j < nj; j++) {
        aq_job *job = &t->jobs[j];
        int cls = clockskew_classify(job->occurred_at_us, now_us, c->clock_skew_future_ms,
                                     c->backfill_max_age_ms);

        if (cls != CLOCKSKEW_NONE && c->clock_skew_policy == CLOCK_POLICY_DEAD_LETTER) {
            const redisReply *it = b->items[t->jobitem[j]];
            char reason[300], idtxt[37], q[400];

            clockskew_reason(reason, sizeof reason, cls, job->occurred_at_us, now_us,
                             cls == CLOCKSKEW_FUTURE ? c->clock_skew_future_ms
                                                     : c->backfill_max_age_ms);
            uuid_format(job->id, idtxt);
            log_warn("job dead-lettered for its occurred_at", " thread=%d event_id=%s reason=%s",
                     t->idx, idtxt, log_q(q, sizeof q, reason));
            if (queue_dead_record(&t->dead[(*nd)++], it->str, it->len, job->priority, reason, NULL,
                                  0, t->w->id) != 0)
                abort();
            continue;
        }
        job->clock_flag = (uint8_t)cls;
        if (kept != j) {
            t->jobs[kept] = *job;
            t->jobitem[kept] = t->jobitem[j];
        }
        kept++;
    }
    return kept;
}

/* Decodes, writes and settles one batch. Returns when it is settled, or
 * when shutdown ran out of time (the batch stays in flight). */
static void process_batch(wthread *t, queue_batch *b)
{
    worker *w = t->w;
    const aq_config *c = &t->cfg;
    char err[512], q[600];
    size_t nj = 0, nd = 0, nr = 0, bad = 0;
    int64_t t0 = clock_mono_us();

    if (grow(t, b->n) != 0) {
        log_error("out of memory for a batch; aborting", " n=%zu", b->n);
        abort(); /* the daemon's one OOM policy: die, the batch is recovered */
    }
    atomic_store(&t->m->inflight, b->n);
    metrics_observe_batch(t->m, b->n);
    for (size_t i = 0; i < b->n; i++) {
        const redisReply *it = b->items[i];
        if (codec_decode(it->str, it->len, (size_t)c->max_job_bytes, &t->jobs[nj], err, sizeof err) == 0) {
            t->jobitem[nj++] = i;
            continue;
        }
        char reason[600];
        snprintf(reason, sizeof reason, "undecodable job: %s", err);
        log_warn("job dead-lettered at decode", " thread=%d bytes=%zu reason=%s", t->idx, it->len,
                 log_q(q, sizeof q, err));
        if (queue_dead_record(&t->dead[nd], it->str, it->len, b->priority, reason, NULL, 0, w->id) != 0)
            abort();
        nd++;
    }
    nj = judge_clocks(t, b, nj, &nd);

    int wr = write_batch(t, b, nj);
    if (wr == WB_GAVE_UP) {
        t->abandoned = 1;
        return;
    }
    if (wr == WB_RELEASED) {
        /* Holds nothing now; fetches again once a probe passes. */
        t->parked = !atomic_load(&w->stopping);
        t->parked_us = t->probe_us = clock_mono_us();
        return;
    }

#ifdef AQ_TEST_HOOKS
    /* Only in the test build (tests/auditq-worker-hooks; config.c refuses
     * the setting in every other build). */
    if (c->crash_after_commit > 0 &&
        atomic_fetch_add(&w->committed_batches, 1) + 1 >= (uint64_t)c->crash_after_commit) {
        /* Test hook: die between the PostgreSQL commit and the Redis ack. */
        log_error("crash_after_commit test hook: exiting after commit, before ack", NULL);
        /* A real crash: no atexit, no flush, no leak report under valgrind. */
        kill(getpid(), SIGKILL);
        _exit(137);
    }
#endif

    for (size_t j = 0; j < nj; j++) {
        if (!t->res[j].bad)
            continue;
        bad++;
        aq_job *job = &t->jobs[j];
        const redisReply *it = b->items[t->jobitem[j]];
        uint32_t attempts = job->attempts + 1;
        char idtxt[37];
        uuid_format(job->id, idtxt);
        if (attempts >= (uint32_t)c->max_attempts) {
            char reason[400];
            snprintf(reason, sizeof reason, "postgres rejected the row %u times: %s", attempts,
                     t->res[j].message);
            log_warn("row dead-lettered", " thread=%d event_id=%s sqlstate=%s attempts=%u error=%s",
                     t->idx, idtxt, t->res[j].sqlstate, attempts, log_q(q, sizeof q, t->res[j].message));
            if (queue_dead_record(&t->dead[nd++], it->str, it->len, job->priority, reason,
                                  t->res[j].sqlstate, attempts, w->id) != 0)
                abort();
        } else {
            aq_buf *rb = &t->retrybufs[nr];
            rb->len = 0;
            job->attempts = attempts;
            if (codec_encode(job, rb) != 0)
                abort();
            t->retries[nr].priority = job->priority;
            t->retries[nr].job = rb->data;
            t->retries[nr].len = rb->len;
            t->retries[nr].delay_ms = backoff_delay_ms(attempts, c->backoff_base_ms, c->backoff_max_ms, &t->rng);
            log_info("row rejected; retry scheduled", " thread=%d event_id=%s sqlstate=%s attempt=%u retry_in_ms=%lld error=%s",
                     t->idx, idtxt, t->res[j].sqlstate, attempts, (long long)t->retries[nr].delay_ms,
                     log_q(q, sizeof q, t->res[j].message));
            nr++;
        }
    }

    if (settle_batch(t, b, nj - bad, nr, nd) != 0) {
        t->abandoned = 1;
        return;
    }
    atomic_fetch_add(&t->m->processed, nj - bad);
    atomic_fetch_add(&t->m->failed, nr + nd);  /* as the settle script counts `failed` */
    atomic_fetch_add(&t->m->dead_lettered, nd);
    atomic_fetch_add(&t->m->retried, nr);
    atomic_fetch_add(&t->m->batches, 1);
    atomic_store(&t->m->last_batch_us, clock_now_us());
    atomic_store(&t->m->inflight, 0);
    log_debug("batch done", " thread=%d priority=%s jobs=%zu written=%zu retried=%zu dead_lettered=%zu ms=%lld",
              t->idx, codec_priority_name(b->priority) ? codec_priority_name(b->priority) : "?", b->n,
              nj - bad, nr, nd, (long long)((clock_mono_us() - t0) / 1000));
}

/* A parked thread (it gave its batch back): one probe per PGW_PROBE_MS
 * until its PostgreSQL can take writes again. Returns 1 while still parked
 * (after sleeping until the next probe is due, or a stop signal), 0 when
 * it may fetch again. */
static int parked_wait(wthread *t)
{
    worker *w = t->w;
    char err[512];
    int64_t now = clock_mono_us();
    int64_t due = t->probe_us + (int64_t)PGW_PROBE_MS * 1000;

    metrics_set_state(t->m, MST_PARKED);
    if (now < due) {
        w_sleep(w, (due - now + 999) / 1000, 0);
        return 1;
    }
    t->probe_us = now;
    if (pgw_probe(t->pg, err, sizeof err) != 0) {
        note_pg(t, 0, pgw_last_fault(t->pg), err);
        return 1;
    }
    note_pg(t, 1, PGW_FAULT_NONE, "");
    log_info("postgres can take writes again; fetching resumes", " thread=%d parked_ms=%lld", t->idx,
             (long long)((clock_mono_us() - t->parked_us) / 1000));
    t->parked = 0;
    return 0;
}

static void *thread_main(void *arg)
{
    wthread *t = arg;
    worker *w = t->w;
    char err[512], q[600];
    unsigned rfail = 0;
    int64_t idle = 1;

    while (!atomic_load(&w->stopping)) {
        thread_refresh_cfg(t);
        const aq_config *c = &t->cfg;
        if (t->parked && parked_wait(t))
            continue;
        if (ensure_redis(t) != 0) {
            metrics_set_state(t->m, MST_BACKOFF);
            w_sleep(w, backoff_delay_ms(++rfail, 100, 5000, &t->rng), 0);
            continue;
        }
        queue_batch b;
        double r01 = (double)(backoff_rand(&t->rng) >> 11) / (double)(1ULL << 53);
        metrics_set_state(t->m, MST_FETCHING);
        queue_limits lim = {(size_t)c->max_job_bytes, CODEC_REENCODE_SLACK, c->dead_letter_max};
        int frc = queue_fetch(t->rc, &w->keys, w->id, t->idx, c->priority_mode == PRIO_WEIGHTED,
                              c->weights, r01, c->batch_size, ++t->seq, &lim, &b, err, sizeof err);
        note_redis(t);
        for (size_t i = 0; frc == 0 && i < b.wrong.n; i++)
            keyhealth_report(&w->kh, b.wrong.k[i].key, b.wrong.k[i].type, b.wrong.k[i].expected, "fetch");
        if (frc == 0 && b.dead_oversized > 0) {
            atomic_fetch_add(&t->m->failed, b.dead_oversized);  /* as the fetch script counts */
            atomic_fetch_add(&t->m->dead_lettered, b.dead_oversized);
            log_warn("oversized jobs dead-lettered at fetch", " thread=%d jobs=%zu max_job_bytes=%d",
                     t->idx, b.dead_oversized, c->max_job_bytes);
        }
        if (frc != 0) {
            char why[300];
            log_warn("fetch failed", " thread=%d error=%s", t->idx,
                     log_q(q, sizeof q, redis_why(w, "the fetch script", err, why, sizeof why)));
            metrics_set_state(t->m, MST_BACKOFF);
            w_sleep(w, backoff_delay_ms(++rfail, 100, 5000, &t->rng), 0);
            continue;
        }
        rfail = 0;
        if (b.n == 0) {
            queue_batch_free(&b);
            pg_check(t);
            /* Empty queues: back off from 1 ms up to idle_poll_ms, so a
             * trickle of events is picked up within milliseconds while an
             * idle worker costs a few commands per second. */
            metrics_set_state(t->m, MST_IDLE);
            w_sleep(w, idle, 0);
            idle = idle * 2 > c->idle_poll_ms ? c->idle_poll_ms : idle * 2;
            continue;
        }
        idle = 1;
        process_batch(t, &b);
        queue_batch_free(&b);
        if (t->abandoned)
            break;
    }
    metrics_set_state(t->m, MST_STOPPED);
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

/* ---- main thread: Redis timers -------------------------------------------- */

/* The main thread's Redis connection, (re)connected at most once per
 * MAIN_REDIS_RETRY_MS: the loop also serves HTTP, and a Redis that is down
 * must not turn every 100 ms timer into a connect attempt. */
static redisContext *main_redis(worker *w)
{
    char err[256], q[300];
    if (w->rc && w->rc->err) {
        redisFree(w->rc);
        w->rc = NULL;
    }
    if (w->rc)
        return w->rc;
    int64_t now = clock_mono_us();
    if (now < w->rc_retry_us)
        return NULL;
    w->rc = redis_connect(&w->rt, w->cfg.redis_connect_timeout_ms, w->cfg.redis_timeout_ms, err,
                          sizeof err, NULL);
    if (!w->rc) {
        w->rc_retry_us = now + (int64_t)MAIN_REDIS_RETRY_MS * 1000;
        if (!w->rc_down_logged)
            log_warn("redis unavailable (main)", " error=%s", log_q(q, sizeof q, err));
        w->rc_down_logged = 1;
    } else if (w->rc_down_logged) {
        log_info("redis connection restored (main)", NULL);
        w->rc_down_logged = 0;
    }
    return w->rc;
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char err[256], q[600], why[300];
    metrics_totals tot;
    redisContext *c = main_redis(w);
    if (!c)
        return;
    metrics_sum(w->mt, w->nthreads, &tot);
    if (queue_heartbeat(c, &w->keys, w->id, w->host, w->pid, w->nthreads, w->started_ms, tot.processed,
                        tot.inflight, err, sizeof err) != 0)
        log_warn("heartbeat failed", " error=%s",
                 log_q(q, sizeof q, redis_why(w, "the heartbeat script", err, why, sizeof why)));
}

/* Connects and registers before the threads take work. Redis refusing our
 * login, or an ACL without the commands the heartbeat needs, is a
 * configuration error that no retry can fix: log it and return -1 (exit
 * status 1). A Redis that is down is not: the threads and timers wait for
 * it, as always. */
static int register_at_start(worker *w)
{
    char err[256], q[600], why[300];
    int auth_failed = 0;

    w->rc = redis_connect(&w->rt, w->cfg.redis_connect_timeout_ms, w->cfg.redis_timeout_ms, err,
                          sizeof err, &auth_failed);
    if (!w->rc) {
        if (auth_failed) {
            log_error("cannot start: Redis refused the worker's login", " error=%s", log_q(q, sizeof q, err));
            return -1;
        }
        log_warn("redis unavailable (main)", " error=%s", log_q(q, sizeof q, err));
        w->rc_down_logged = 1;
        w->rc_retry_us = clock_mono_us() + (int64_t)MAIN_REDIS_RETRY_MS * 1000;
        return 0;
    }
    if (queue_heartbeat(w->rc, &w->keys, w->id, w->host, w->pid, w->nthreads, w->started_ms, 0, 0, err,
                        sizeof err) != 0) {
        if (redis_explain_refusal(&w->rt, "worker", "the heartbeat script", NULL, err, why, sizeof why) !=
            REDIS_REFUSED_NONE) {
            log_error("cannot start: Redis refused the worker", " error=%s", log_q(q, sizeof q, why));
            redisFree(w->rc);
            w->rc = NULL;
            return -1;
        }
        log_warn("heartbeat failed", " error=%s", log_q(q, sizeof q, err));
    }
    return 0;
}

static void on_recover(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char err[256], q[600], why[300];
    long long workers = 0, jobs = 0, dead = 0;
    redisContext *c = main_redis(w);
    if (!c)
        return;
    if (queue_recover(c, &w->keys, &w->cfg, NULL, &workers, &jobs, &dead, err, sizeof err) != 0) {
        log_warn("recovery check failed", " error=%s",
                 log_q(q, sizeof q, redis_why(w, "the recover script", err, why, sizeof why)));
    } else if (workers > 0) {
        w->recovered += (uint64_t)(jobs > 0 ? jobs : 0);
        log_warn("recovered in-flight jobs of dead workers", " workers=%lld jobs=%lld dead_lettered=%lld",
                 workers, jobs, dead);
    }
}

static void on_promote(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char err[256], q[600], why[300];
    long long moved = 0, total = 0;
    redisContext *c = main_redis(w);
    if (!c)
        return;
    do {
        if (queue_promote(c, &w->keys, &moved, err, sizeof err) != 0) {
            log_warn("retry promotion failed", " error=%s",
                     log_q(q, sizeof q, redis_why(w, "the promote script", err, why, sizeof why)));
            return;
        }
        total += moved;
    } while (moved == 1000);
    if (total > 0)
        log_debug("retries due, back in their queues", " jobs=%lld", total);
}

/* Reads the queue numbers for /metrics, /readyz and the summary. */
static void on_sample(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    metrics_queue_sample s;
    redisContext *c = main_redis(w);

    if (!c) {
        w->sample_ok = 0;
        snprintf(w->sample_err, sizeof w->sample_err, "no connection to Redis");
        return;
    }
    if (sample_queues(c, &w->keys, &w->cfg, w->id, w->nthreads, &s, w->sample_err,
                      sizeof w->sample_err) != 0) {
        char q[600], why[300];
        if (w->sample_ok)
            log_warn("reading queue numbers from redis failed", " error=%s",
                     log_q(q, sizeof q, redis_why(w, "the queue sample", w->sample_err, why, sizeof why)));
        w->sample_ok = 0;
        return;
    }
    for (size_t i = 0; i < s.nwrong; i++)
        keyhealth_report(&w->kh, s.wrong[i].key, s.wrong[i].type, s.wrong[i].expected, "sample");
    keyhealth_sweep(&w->kh);
    w->sample = s;
    w->sample_have = 1;
    w->sample_ok = 1;
    w->sample_us = clock_now_us();
    w->sample_err[0] = '\0';
}

/* Creates the coming months' partitions (auditq_ensure_partitions, from
 * the migrations). Runs at start and hourly; a failure is logged and
 * harmless: rows land in the DEFAULT partition meanwhile. */
static void on_maint(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char ahead[16], q[600], m[512];
    /* This runs on the main loop, which must keep heartbeating: connecting
     * and the query each give up after half the heartbeat timeout at most
     * (and within pg_connect_timeout_s / pg_timeout_ms); the next hourly
     * run tries again. */
    int limit = w->cfg.heartbeat_timeout_ms / 2, timed_out = 0;
    int climit = w->cfg.pg_connect_timeout_s * 1000 < limit ? w->cfg.pg_connect_timeout_s * 1000 : limit;
    if (w->cfg.pg_timeout_ms > 0 && w->cfg.pg_timeout_ms < limit)
        limit = w->cfg.pg_timeout_ms;
    snprintf(ahead, sizeof ahead, "%d", w->cfg.partitions_ahead);
    const pgconn_opts o = { .conninfo = w->cfg.database_url, .component = "auditq-worker/partitions",
                            .connect_timeout_s = w->cfg.pg_connect_timeout_s,
                            .tcp_user_timeout_ms = w->cfg.pg_timeout_ms };
    pgconn_params params;
    PGconn *pg = NULL;
    if (pgconn_params_init(&params, &o, m, sizeof m) == 0) {
        /* The whole connect stays within climit, however many hosts. */
        if (params.connect_timeout_ms > 0 && params.connect_timeout_ms < climit)
            climit = params.connect_timeout_ms;
        pg = pgconn_connect(&params, climit / params.nhosts, PQERRORS_DEFAULT, &timed_out, m, sizeof m);
        if (pg == NULL && !timed_out)
            snprintf(m, sizeof m, "out of memory");
    }
    pgconn_params_free(&params);
    if (PQstatus(pg) != CONNECTION_OK) {
        if (timed_out)
            snprintf(m, sizeof m, "no answer from PostgreSQL within %d ms", climit);
        else {
            char one[sizeof m];
            pgconn_reason(one, sizeof one, m);
            snprintf(m, sizeof m, "%s", one);
        }
        log_warn("partition upkeep skipped: cannot connect to PostgreSQL", " error=%s",
                 log_q(q, sizeof q, m));
        PQfinish(pg);
        return;
    }
    pgconn_io io;
    const char *args[1] = {ahead};
    PGresult *r = pgconn_io_init(&io, pg, limit) == 0
                      ? pgconn_io_exec(&io, "SELECT auditq_ensure_partitions($1::int)", 1, args)
                      : NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_warn("partition upkeep failed (run 'auditqctl migrate'?)", " error=%s",
                 log_q(q, sizeof q, pgconn_io_error(&io, r, m, sizeof m)));
    } else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0) {
        log_info("partitions created", " count=%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    PQfinish(pg);
}

/* ---- retention on a timer ------------------------------------------------- */

static void retention_log(void *ctx, const retention_event *ev)
{
    char q[600];
    (void)ctx;
    log_q(q, sizeof q, ev->line);
    switch (ev->kind) {
    case RET_EV_WARNING:
        log_warn("retention", " detail=%s", q);
        break;
    case RET_EV_PROGRESS:
        log_debug("retention", " detail=%s", q);
        break;
    default:
        log_info("retention", " detail=%s", q);
        break;
    }
}

static void *retention_main(void *arg)
{
    worker *w = arg;
    char err[1024], q[1100];
    PGconn *pg = retention_connect(&w->ret_cfg, "auditq-worker/retention", err, sizeof err);

    if (pg == NULL) {
        log_warn("retention run skipped: cannot connect to PostgreSQL", " error=%s", log_q(q, sizeof q, err));
    } else {
        int rc = retention_run(pg, &w->ret_cfg, 0, retention_log, NULL, err, sizeof err);
        if (rc == RETENTION_BUSY)
            log_info("retention run skipped: another run holds the lock", " detail=%s", log_q(q, sizeof q, err));
        else if (rc != RETENTION_OK)
            log_error("retention run failed; the next run continues from here", " error=%s",
                      log_q(q, sizeof q, err));
        PQfinish(pg);
    }
    atomic_store(&w->ret_running, 0);
    return NULL;
}

/* Every second: start a retention run when one is due (the first shortly
 * after start, then every retention_interval_s, which SIGHUP may change)
 * and none is running. Never during shutdown. */
static void on_retention(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    int64_t now = clock_mono_us();

    if (w->cfg.retention_interval_s <= 0 || atomic_load(&w->stopping) || atomic_load(&w->ret_running))
        return;
    if (w->ret_last_start_us != 0 &&
        now - w->ret_last_start_us < (int64_t)w->cfg.retention_interval_s * 1000000)
        return;
    if (w->ret_joinable) {
        pthread_join(w->ret_tid, NULL);
        w->ret_joinable = 0;
    }
    pthread_mutex_lock(&w->cfg_mu);
    w->ret_cfg = w->cfg;
    pthread_mutex_unlock(&w->cfg_mu);
    w->ret_last_start_us = now;
    atomic_store(&w->ret_running, 1);
    if (pthread_create(&w->ret_tid, NULL, retention_main, w) != 0) {
        atomic_store(&w->ret_running, 0);
        log_warn("retention run skipped: cannot start its thread", NULL);
        return;
    }
    w->ret_joinable = 1;
}

/* One logfmt line: throughput since the last summary, this process's
 * totals, and the lag (queued jobs, oldest job's age) from the last Redis
 * sample. */
static void on_summary(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    metrics_totals t;
    char lag[200], rel[40] = "";
    metrics_sum(w->mt, w->nthreads, &t);
    int64_t now = clock_mono_us();
    double secs = (double)(now - w->last_summary_us) / 1e6;
    uint64_t delta = t.processed - w->last_processed;
    long long queued = 0, oldest = -1;

    if (w->sample_have) {
        queued = metrics_queued(&w->sample);
        oldest = metrics_oldest_ms(&w->sample);
    }
    if (!w->sample_have)
        snprintf(lag, sizeof lag, " queued=unknown oldest_age_s=unknown");
    else
        snprintf(lag, sizeof lag, " queued=%lld oldest_age_s=%.3f inflight_all=%lld retry=%lld dead=%lld%s",
                 queued, oldest > 0 ? (double)oldest / 1000.0 : 0.0, w->sample.inflight, w->sample.retry,
                 w->sample.dead, w->sample_ok ? "" : " queue_sample=stale");
    /* Logged at every interval, idle or not: an operator tailing the log
     * reads "written_per_s=0 queued=0" as "idle and caught up", whereas a
     * missing line could as well mean a hung loop. */
    /* Jobs given back unwritten (pg_release_after_ms): only once there are. */
    if (t.released > 0)
        snprintf(rel, sizeof rel, " released=%llu", (unsigned long long)t.released);
    log_info("summary", " written_per_s=%.0f processed=%llu failed=%llu dead_lettered=%llu "
             "inflight=%llu%s%s", secs > 0 ? (double)delta / secs : 0.0,
             (unsigned long long)t.processed, (unsigned long long)t.failed,
             (unsigned long long)t.dead_lettered, (unsigned long long)t.inflight, lag, rel);
    w->last_processed = t.processed;
    w->last_summary_us = now;
}

/* ---- main thread: HTTP ---------------------------------------------------- */

/* Readiness: not stopping, Redis sampled successfully within
 * READY_SAMPLE_MAX_MS, and at least one writer thread with a live
 * PostgreSQL connection. Returns 1, or 0 with what is down in why.
 * A Redis key of the wrong type does not make the worker unready: it still
 * serves everything that does not use the key (the other queues), and a
 * 503 would only have orchestrators hold back or restart every worker at
 * once, which cannot fix a key. /readyz answers 200 "ready, degraded:
 * <the key, its type and the fix>" instead, and auditq_redis_key_wrong_type
 * is the metric to alert on. */
static int is_ready(worker *w, char *why, size_t cap)
{
    size_t n = 0;
    int64_t now = clock_now_us();
    metrics_totals t;

    why[0] = '\0';
    if (atomic_load(&w->stopping))
        n += (size_t)snprintf(why + n, cap - n, "shutting down; ");
    if (n < cap && (!w->sample_ok || now - w->sample_us > (int64_t)READY_SAMPLE_MAX_MS * 1000)) {
        if (w->sample_have)
            n += (size_t)snprintf(why + n, cap - n, "redis unreachable (last good read %.1f s ago: %s); ",
                                  (double)(now - w->sample_us) / 1e6, w->sample_err);
        else
            n += (size_t)snprintf(why + n, cap - n, "redis unreachable (%s); ",
                                  w->sample_err[0] ? w->sample_err : "not read yet");
    }
    metrics_sum(w->mt, w->nthreads, &t);
    if (n < cap && t.pg_up_threads == 0) {
        /* Name the cause: the one an operator must act on first. */
        static const int rank[PGW_FAULT_COUNT] = {
            [PGW_FAULT_UNREACHABLE] = 1, [PGW_FAULT_SERVER] = 2, [PGW_FAULT_STALLED] = 3,
            [PGW_FAULT_TABLE] = 4, [PGW_FAULT_PRIVILEGE] = 5, [PGW_FAULT_DATABASE] = 6,
            [PGW_FAULT_LOGIN] = 7,
        };
        pgw_fault f = PGW_FAULT_UNREACHABLE;
        for (int i = 0; i < w->nthreads; i++) {
            int tf = atomic_load_explicit(&w->mt[i].pg_fault, memory_order_relaxed);
            if (tf > 0 && tf < PGW_FAULT_COUNT && rank[tf] > rank[f])
                f = (pgw_fault)tf;
        }
        if (f == PGW_FAULT_UNREACHABLE) {
            n += (size_t)snprintf(why + n, cap - n,
                                  "postgresql unreachable (0 of %d writer threads connected); ", w->nthreads);
        } else {
            char fix[300];
            pgw_fault_fix(f, w->pg_role, fix, sizeof fix);
            n += (size_t)snprintf(why + n, cap - n, "postgresql %s (0 of %d writer threads can write)%s%s; ",
                                  pgw_fault_name(f), w->nthreads, fix[0] ? ": " : "", fix);
        }
    }
    if (n >= cap)
        n = cap - 1;
    if (n >= 2 && why[n - 2] == ';')
        why[n - 2] = '\0';
    return why[0] == '\0';
}

static void on_http(void *ctx, const http_request *req, http_response *resp)
{
    worker *w = ctx;
    char why[700], text[800], deg[2400], ready[3300];
    metrics_wrongkey wrong[METRICS_WRONG_MAX];
    int n;

    if (strcmp(req->path, "/metrics") == 0) {
        size_t nwrong = keyhealth_snapshot(&w->kh, wrong, METRICS_WRONG_MAX);
        metrics_view v = {
            .version = AUDITQ_VERSION, .worker_id = w->id, .namespace_ = w->keys.ns,
            .start_us = w->started_us, .now_us = clock_now_us(), .threads = w->mt,
            .nthreads = w->nthreads, .recovered = w->recovered, .reloads_ok = w->reloads_ok,
            .reloads_failed = w->reloads_failed, .ready = is_ready(w, why, sizeof why),
            .sample = w->sample_have ? &w->sample : NULL, .sample_ok = w->sample_ok,
            .sample_us = w->sample_us, .wrong = wrong, .nwrong = nwrong,
        };
        if (metrics_render(&v, &resp->body) != 0 || seal_metrics_render(w->seal, &resp->body) != 0) {
            resp->status = 500;
            resp->body.len = 0;
            return;
        }
        resp->status = 200;
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        return;
    }
    if (strcmp(req->path, "/healthz") == 0) {
        resp->status = 200;
        (void)aq_buf_append(&resp->body, "ok\n", 3);
        return;
    }
    if (strcmp(req->path, "/readyz") == 0) {
        /* A key of the wrong type degrades, it does not make us unready:
         * see is_ready. */
        int degraded = keyhealth_describe(&w->kh, deg, sizeof deg) > 0;
        if (is_ready(w, why, sizeof why)) {
            resp->status = 200;
            n = snprintf(ready, sizeof ready, "ready%s%s\n", degraded ? ", degraded: " : "", degraded ? deg : "");
        } else {
            resp->status = 503;
            n = snprintf(ready, sizeof ready, "not ready: %s%s%s\n", why, degraded ? "; degraded: " : "",
                         degraded ? deg : "");
        }
        (void)aq_buf_append(&resp->body, ready, n > 0 && (size_t)n < sizeof ready ? (size_t)n : 0);
        return;
    }
    resp->status = 404;
    n = snprintf(text, sizeof text, "not found: %.200s (try /metrics, /healthz or /readyz)\n", req->path);
    (void)aq_buf_append(&resp->body, text, n > 0 && (size_t)n < sizeof text ? (size_t)n : 0);
}

/* ---- main thread: configuration ------------------------------------------- */

/* Builds a configuration the one way, at start and on SIGHUP: defaults,
 * the file (if any), AUDITQ_* variables, then the --set flags in order,
 * then the cross-field checks. 0, or -1 with the reason in err. */
static int build_config(aq_config *c, const char *path, char *const *sets,
                        const char *const *origins, int nsets, char *err, size_t errlen)
{
    config_defaults(c);
    if (path[0] && config_load_file(c, path, err, errlen) != 0)
        return -1;
    if (config_load_env(c, err, errlen) != 0)
        return -1;
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        /* The shape was checked when the flag was read. */
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (config_set(c, key, eq + 1, origins[i], err, errlen) != 0)
            return -1;
    }
    return config_validate(c, err, errlen);
}

typedef struct reload_report {
    config_change ch[64];
    int n, applied, restart;
} reload_report;

static void collect_change(void *ctx, const config_change *ch)
{
    reload_report *r = ctx;
    if (r->n < (int)(sizeof r->ch / sizeof r->ch[0]))
        r->ch[r->n++] = *ch;
    if (ch->applied)
        r->applied++;
    else
        r->restart++;
}

static void apply_summary_interval(worker *w)
{
    ev_timer_stop(w->loop, &w->t_summary);
    if (w->cfg.summary_interval_ms > 0) {
        double s = w->cfg.summary_interval_ms / 1000.0;
        ev_timer_set(&w->t_summary, s, s);
        ev_timer_start(w->loop, &w->t_summary);
    }
}

/* SIGHUP. Tolerant where start is strict: a file that does not parse or
 * validate leaves everything as it was, and says why (file:line). */
static void reload_config(worker *w)
{
    static aq_config next; /* main thread only; 2.5 KB off the stack */
    static reload_report rep;
    char err[1024], q[1100], fq[600], oq[220], nq[220];
    const char *file = w->cfg_path[0] ? w->cfg_path : "(none: environment and --set only)";
    int old_level = w->cfg.log_level;

    log_q(fq, sizeof fq, file);
    if (build_config(&next, w->cfg_path, w->sets, w->set_origin, w->nsets, err, sizeof err) != 0) {
        w->reloads_failed++;
        log_error("config reload failed; keeping the running configuration", " file=%s error=%s", fq,
                  log_q(q, sizeof q, err));
        return;
    }
    memset(&rep, 0, sizeof rep);
    pthread_mutex_lock(&w->cfg_mu);
    int rc = config_reload(&w->cfg, &next, collect_change, &rep, err, sizeof err);
    if (rc > 0)
        atomic_fetch_add_explicit(&w->cfg_gen, 1, memory_order_release);
    pthread_mutex_unlock(&w->cfg_mu);
    if (rc < 0) {
        w->reloads_failed++;
        log_error("config reload failed; keeping the running configuration", " file=%s error=%s", fq,
                  log_q(q, sizeof q, err));
        return;
    }
    w->reloads_ok++;
    /* Report under the more verbose of the two levels, so switching to a
     * quieter level still says so. */
    atomic_store(&log_level, old_level > w->cfg.log_level ? old_level : w->cfg.log_level);
    for (int i = 0; i < rep.n; i++) {
        const config_change *ch = &rep.ch[i];
        char msg[600];
        log_q(oq, sizeof oq, ch->old_value);
        log_q(nq, sizeof nq, ch->new_value);
        if (ch->applied) {
            snprintf(msg, sizeof msg, "setting %s changed from %s to %s", ch->name, ch->old_value,
                     ch->new_value);
            log_info(msg, " setting=%s old=%s new=%s applied=1", ch->name, oq, nq);
        } else {
            snprintf(msg, sizeof msg, "setting %s changed from %s to %s; restart to apply", ch->name,
                     ch->old_value, ch->new_value);
            log_warn(msg, " setting=%s old=%s new=%s applied=0", ch->name, oq, nq);
        }
    }
    if (rep.n == 0)
        log_info("config reloaded: nothing changed", " file=%s", fq);
    else
        log_info("config reloaded", " file=%s changed=%d applied=%d restart_needed=%d", fq, rep.n,
                 rep.applied, rep.restart);
    atomic_store(&log_level, w->cfg.log_level);
    apply_summary_interval(w);
}

/* ---- main thread: signals and shutdown ------------------------------------ */

static void on_stop_check(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)revents;
    worker *w = tm->data;
    /* Threads bound their own work by the deadline; the extra 2 s cover a
     * libpq/hiredis call already in progress (bounded by its timeout). */
    if (atomic_load(&w->running) == 0 || deadline_left_ms(w) < -2000)
        ev_break(loop, EVBREAK_ALL);
}

static void begin_shutdown(worker *w, const char *why)
{
    if (atomic_load(&w->stopping)) {
        log_warn("second stop signal: giving up on the batches in hand now", " signal=%s", why);
        atomic_store(&w->stop_deadline_us, clock_mono_us());
        return;
    }
    /* shutdown_timeout_ms = 0: no limit (a second signal still sets one). */
    atomic_store(&w->stop_deadline_us, w->cfg.shutdown_timeout_ms == 0
                                           ? INT64_MAX / 4
                                           : clock_mono_us() + (int64_t)w->cfg.shutdown_timeout_ms * 1000);
    atomic_store(&w->stopping, 1);
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    log_info("shutting down: finishing the batches in hand", " signal=%s timeout_ms=%d", why,
             w->cfg.shutdown_timeout_ms);
    ev_timer_start(w->loop, &w->t_stop);
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = s->data;
    if (s->signum == SIGHUP) {
        reload_config(w);
        return;
    }
    begin_shutdown(w, s->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start ---------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: auditq-worker [-c FILE] [--set KEY=VALUE]... [OPTIONS]\n"
            "\n"
            "Moves audit events from Redis queues into PostgreSQL, reliably: a job leaves\n"
            "Redis only after PostgreSQL committed it; a crashed worker's jobs are recovered\n"
            "by the others within heartbeat_timeout_ms.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE     read settings from FILE (see config/auditq.conf)\n"
            "  -s, --set KEY=VALUE   override one setting (repeatable)\n"
            "  -t, --threads N       writer threads (default: number of cores)\n"
            "  -b, --batch-size N    jobs per batch\n"
            "      --check           validate the configuration and exit\n"
            "      --print-config    print the effective configuration and exit\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n"
            "\n"
            "Precedence: defaults < config file < AUDITQ_<SETTING> environment variables\n"
            "(e.g. AUDITQ_REDIS_URL, AUDITQ_DATABASE_URL, AUDITQ_THREADS, AUDITQ_BATCH_SIZE)\n"
            "< command-line flags.\n"
            "\n"
            "HTTP: with http_listen = HOST:PORT (e.g. --set http_listen=127.0.0.1:9187;\n"
            "\":9187\" = every address) the worker serves GET /metrics (Prometheus text\n"
            "format), /healthz (200 while it runs) and /readyz (200 when Redis and\n"
            "PostgreSQL are reachable, else 503 naming what is down). It refuses to start\n"
            "if it cannot bind. Off by default.\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit 0 (a second one stops at once).\n"
            "SIGHUP reloads the configuration (the -c file, environment and --set flags,\n"
            "as at start): reloadable settings (batch_size, idle_poll_ms, max_attempts,\n"
            "backoff_*, pg_release_after_ms, dead_letter_max, priority_mode, weights,\n"
            "log_level, summary_interval_ms, retention settings) apply at once; others\n"
            "are logged as needing a restart; a file with an error is ignored, the error\n"
            "logged.\n"
            "Logs: logfmt lines on stderr (ts=... level=... msg=... key=value).\n"
            "Exit codes: 0 clean stop, 2 configuration error, 1 other failure.\n");
}

/* config_env_unknown's callback: a typo'd AUDITQ_* variable is a warning. */
static void warn_env(void *ctx, const char *msg)
{
    (void)ctx;
    log_warn(msg, NULL);
}

static int load_config(worker *w, int argc, char **argv, int *check, int *print)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'}, {"batch-size", required_argument, NULL, 'b'},
        {"check", no_argument, NULL, 1},           {"print-config", no_argument, NULL, 2},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    static char flagbuf[MAX_SETS][128];
    char err[1024];
    int o;

    opterr = 0; /* getopt's own messages are replaced by the ones below */
    while ((o = getopt_long(argc, argv, ":c:s:t:b:hV", opts, NULL)) != -1) {
        /* The one rule for values (config.h): "-c --check" is refused. */
        if ((o == 'c' || o == 's' || o == 't' || o == 'b') &&
            config_getopt_value(argv, optind, optarg, err, sizeof err) != 0) {
            fprintf(stderr, "auditq-worker: %s\n", err);
            return 2;
        }
        switch (o) {
        case 'c': snprintf(w->cfg_path, sizeof w->cfg_path, "%s", optarg); break;
        case 's':
        case 't':
        case 'b':
            if (w->nsets == MAX_SETS) {
                fprintf(stderr, "auditq-worker: too many --set options (at most %d)\n", MAX_SETS);
                return 2;
            }
            if (o == 's') {
                const char *eq = strchr(optarg, '=');
                if (!eq || eq == optarg || (size_t)(eq - optarg) >= 128) {
                    fprintf(stderr, "auditq-worker: --set '%s': expected KEY=VALUE\n", optarg);
                    return 2;
                }
                w->set_origin[w->nsets] = "--set";
                w->sets[w->nsets++] = optarg;
            } else {
                char *buf = flagbuf[w->nsets];
                snprintf(buf, sizeof flagbuf[0], "%s=%.100s", o == 't' ? "threads" : "batch_size", optarg);
                /* Errors name the option the user typed, not --set: the
                 * argument before a separate value, else the one holding
                 * it ("--batch-size=5", "-b5"). */
                const char *typed = optarg == argv[optind - 1] ? argv[optind - 2] : argv[optind - 1];
                int is_long = strncmp(typed, "--", 2) == 0;
                w->set_origin[w->nsets] = o == 't' ? (is_long ? "--threads" : "-t")
                                                   : (is_long ? "--batch-size" : "-b");
                w->sets[w->nsets++] = buf;
            }
            break;
        case 1: *check = 1; break;
        case 2: *print = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("auditq-worker %s\n", AUDITQ_VERSION); exit(0);
        case ':':
            config_arg_value(argv[optind - 1], NULL, err, sizeof err);
            fprintf(stderr, "auditq-worker: %s; see --help\n", err);
            return 2;
        default:
            fprintf(stderr, "auditq-worker: unknown option '%s'; see --help\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "auditq-worker: unexpected argument '%s'; see --help\n", argv[optind]);
        return 2;
    }
    if (build_config(&w->cfg, w->cfg_path, w->sets, w->set_origin, w->nsets, err, sizeof err) != 0)
        goto bad;
    atomic_store(&log_level, w->cfg.log_level);
    config_env_unknown(warn_env, NULL);
    if (redis_url_parse(w->cfg.redis_url, &w->rt, err, sizeof err) != 0 ||
        keys_init(&w->keys, w->cfg.namespace_) != 0)
        goto bad;
    return 0;
bad:
    fprintf(stderr, "auditq-worker: %s\n", err);
    return 2;
}

static void make_identity(worker *w)
{
    uint8_t rnd[16];
    w->nthreads = w->cfg.threads > 0 ? w->cfg.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (w->nthreads < 1)
        w->nthreads = 1;
    w->pid = (int)getpid();
    if (gethostname(w->host, sizeof w->host) != 0)
        snprintf(w->host, sizeof w->host, "unknown");
    w->host[sizeof w->host - 1] = '\0';
    uuid7_new(rnd);
    snprintf(w->id, sizeof w->id, "%.100s:%d:%02x%02x%02x", w->host, w->pid, rnd[13], rnd[14], rnd[15]);
    w->started_us = clock_now_us();
    w->started_ms = w->started_us / 1000;
}

static void start_timers(worker *w)
{
    double hb = w->cfg.heartbeat_interval_ms / 1000.0;
    double rec = w->cfg.recovery_interval_ms / 1000.0;
    ev_timer_init(&w->t_heartbeat, on_heartbeat, hb, hb);
    ev_timer_init(&w->t_recover, on_recover, 0.05, rec);
    ev_timer_init(&w->t_promote, on_promote, 0.1, 0.1);
    ev_timer_init(&w->t_maint, on_maint, 0.2, 3600.0);
    ev_timer_init(&w->t_sample, on_sample, 0.0, SAMPLE_INTERVAL_S);
    ev_timer_init(&w->t_summary, on_summary, 0.0, 0.0);
    ev_timer_init(&w->t_stop, on_stop_check, 0.02, 0.02);
    w->t_heartbeat.data = w->t_recover.data = w->t_promote.data = w->t_maint.data = w;
    w->t_sample.data = w->t_summary.data = w->t_stop.data = w;
    w->last_summary_us = clock_mono_us();
    ev_timer_start(w->loop, &w->t_heartbeat);
    ev_timer_start(w->loop, &w->t_recover);
    ev_timer_start(w->loop, &w->t_promote);
    ev_timer_start(w->loop, &w->t_maint);
    ev_timer_init(&w->t_retention, on_retention, 1.0, 1.0);
    w->t_retention.data = w;
    ev_timer_start(w->loop, &w->t_retention);
    ev_timer_start(w->loop, &w->t_sample);
    apply_summary_interval(w);
}

/* Connects thread 0's writer once before anything starts. A refusal no
 * retry can fix -- a refused login, a missing database, a missing privilege
 * (INSERT on audit_events, TEMPORARY on the database), no audit_events
 * table -- is a configuration error: log it with the fix and return -1
 * (exit status 1), as a refused Redis login is. A PostgreSQL that is down,
 * stalled or busy is not: the writer threads wait for it, as always. The
 * connection, if made, is thread 0's. */
static int check_pg_at_start(worker *w)
{
    char err[512], why[900], q[1000], msg[80];
    pgw *pg = pgw_new(&w->boot_cfg);

    if (!pg) {
        log_error("out of memory", NULL);
        return -1;
    }
    w->th[0].pg = pg;
    if (pgw_connect(pg, err, sizeof err) == 0) {
        snprintf(w->pg_role, sizeof w->pg_role, "%s", pgw_role(pg));
        return 0;
    }
    snprintf(w->pg_role, sizeof w->pg_role, "%s", pgw_role(pg));
    pgw_fault f = pgw_last_fault(pg);
    if (pgw_fault_is_config(f)) {
        snprintf(msg, sizeof msg, "cannot start: PostgreSQL %s", pgw_fault_name(f));
        log_error(msg, " error=%s", log_q(q, sizeof q, pgw_explain(f, w->pg_role, err, why, sizeof why)));
        return -1;
    }
    return 0; /* thread 0 logs "postgres unreachable" at its first attempt */
}

/* Leaves Redis tidy on the way out: releases abandoned batches at once, or
 * deregisters. */
static void finish_in_redis(worker *w, int abandoned)
{
    char err[256], q[300];
    w->rc_retry_us = 0;
    redisContext *c = main_redis(w);
    if (c && abandoned) {
        long long nw, nj, nd;
        /* Release unfinished batches to their queues now rather than after
         * heartbeat_timeout_ms. A stuck thread's late settle is fenced. */
        if (queue_recover(c, &w->keys, &w->cfg, w->id, &nw, &nj, &nd, err, sizeof err) == 0)
            log_warn("released unfinished batches back to their queues", " jobs=%lld", nj);
        else
            log_warn("could not release unfinished batches; peers recover them after heartbeat_timeout_ms",
                     " error=%s", log_q(q, sizeof q, err));
    } else if (c) {
        if (queue_deregister(c, &w->keys, w->id, err, sizeof err) != 0)
            log_warn("could not deregister", " error=%s", log_q(q, sizeof q, err));
    } else {
        log_warn("redis unreachable at exit; in-flight jobs (if any) are recovered by peers after "
                 "heartbeat_timeout_ms", NULL);
    }
}

static void free_threads(worker *w)
{
    for (int i = 0; i < w->nthreads; i++) {
        wthread *t = &w->th[i];
        if (t->rc)
            redisFree(t->rc);
        pgw_free(t->pg);
        for (size_t j = 0; j < t->cap; j++) {
            free(t->dead[j].data);
            free(t->retrybufs[j].data);
        }
        free(t->jobs);
        free(t->jobitem);
        free(t->res);
        free(t->dead);
        free(t->retries);
        free(t->retrybufs);
    }
    free(w->th);
    free(w->mt);
}

int main(int argc, char **argv)
{
    static worker W;
    worker *w = &W;
    int check = 0, print = 0, rc;
    char err[512], q[600];

    rc = load_config(w, argc, argv, &check, &print);
    if (rc)
        return rc;
    if (print) {
        config_print(&w->cfg, stdout);
        return 0;
    }
    if (check) {
        printf("configuration OK\n");
        return 0;
    }
    atomic_store(&log_level, w->cfg.log_level);
    keyhealth_init(&w->kh, &w->keys);
    signal(SIGPIPE, SIG_IGN);
    w->boot_cfg = w->cfg;
    make_identity(w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_mutex_init(&w->cfg_mu, NULL);

    w->loop = EV_DEFAULT;
    ev_signal_init(&w->sig_term, on_signal, SIGTERM);
    ev_signal_init(&w->sig_int, on_signal, SIGINT);
    ev_signal_init(&w->sig_hup, on_signal, SIGHUP);
    w->sig_term.data = w->sig_int.data = w->sig_hup.data = w;
    ev_signal_start(w->loop, &w->sig_term);
    ev_signal_start(w->loop, &w->sig_int);
    ev_signal_start(w->loop, &w->sig_hup);

    /* Bind before anything registers in Redis: a taken port is a
     * configuration problem the operator must see at once. */
    if (w->cfg.http_listen[0]) {
        w->http = http_start(w->loop, w->cfg.http_listen, on_http, w, err, sizeof err);
        if (!w->http) {
            log_error("cannot start the HTTP endpoint", " error=%s", log_q(q, sizeof q, err));
            return 1;
        }
    }

    w->th = calloc((size_t)w->nthreads, sizeof *w->th);
    w->mt = calloc((size_t)w->nthreads, sizeof *w->mt);
    if (!w->th || !w->mt) {
        log_error("out of memory", NULL);
        return 1;
    }
    /* PostgreSQL refusing us (login, database, privilege, table) is fatal
     * before anything registers, as a refused Redis login is. */
    if (check_pg_at_start(w) != 0)
        return 1;
    /* A seal_key_file that cannot be used is refused before any work. */
    if (seal_setup(&w->boot_cfg, &w->seal, err, sizeof err) != 0) {
        log_error("cannot start sealing", " error=%s", log_q(q, sizeof q, err));
        return 1;
    }
    /* Register before the threads take work, so our in-flight lists are
     * never unowned. */
    if (register_at_start(w) != 0)
        return 1;
    atomic_store(&w->running, w->nthreads);
    for (int i = 0; i < w->nthreads; i++) {
        wthread *t = &w->th[i];
        t->w = w;
        t->idx = i;
        t->cfg = w->cfg;
        t->m = &w->mt[i];
        t->pg_known = -1;
        t->rng = ((uint64_t)w->pid << 32) ^ (uint64_t)clock_mono_us() ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
        if (!t->pg)
            t->pg = pgw_new(&w->boot_cfg);
        if (!t->pg || pthread_create(&t->tid, NULL, thread_main, t) != 0) {
            log_error("cannot start writer thread", " thread=%d", i);
            return 1;
        }
    }
    log_info("worker started", " id=%s threads=%d batch_size=%d namespace=%s priority_mode=%s write_method=%s http=%s",
             w->id, w->nthreads, w->cfg.batch_size, w->cfg.namespace_,
             w->cfg.priority_mode == PRIO_WEIGHTED ? "weighted" : "strict",
             w->cfg.write_method == WRITE_INSERT ? "insert" : "copy",
             w->http ? http_address(w->http) : "off");

    if (seal_start(w->seal, err, sizeof err) != 0) {
        log_error("cannot start sealing", " error=%s", log_q(q, sizeof q, err));
        return 1;
    }
    start_timers(w);
    ev_run(w->loop, 0);

    /* Shutdown: threads have stopped (or are stuck in a bounded call). */
    int stuck = atomic_load(&w->running);
    int abandoned = stuck > 0;
    for (int i = 0; i < w->nthreads; i++) {
        if (stuck == 0) {
            pthread_join(w->th[i].tid, NULL);
            abandoned |= w->th[i].abandoned;
        }
    }
    if (w->ret_joinable) {
        if (atomic_load(&w->ret_running)) {
            /* Not waited for: each retention step is one transaction, which
             * PostgreSQL rolls back when our connection goes with us, and
             * an export's files are only renamed into place when complete. */
            log_warn("a retention run is still going; it is abandoned and its current step rolled back "
                     "(the next run redoes it)", NULL);
        } else {
            pthread_join(w->ret_tid, NULL);
        }
    }
    seal_stop(w->seal);  /* bounded: one tick (statement_timeout_ms) at most */
    on_summary(w->loop, &w->t_summary, 0);
    finish_in_redis(w, abandoned);
    http_stop(w->http);
    log_info("worker stopped", " id=%s", w->id);
    if (stuck)
        _exit(0); /* threads still inside a bounded call: don't free under them */
    free_threads(w);
    if (w->rc)
        redisFree(w->rc);
    ev_loop_destroy(w->loop);
    return 0;
}
