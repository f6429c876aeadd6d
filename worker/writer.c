/* writer.c -- the writer threads of auditq-worker (writer.h).
 *
 * DESIGN
 *
 * N writer threads (default: one per core) each own one Redis connection
 * per shard and one PostgreSQL connection; no connection is ever shared
 * between threads. The main thread starts them (main.c); its timers
 * (upkeep.c) keep this worker registered and recover the batches of dead
 * workers.
 *
 * Shards (redis_shards > 1, common/shards.h): each thread serves every
 * shard in turn, one fetch each (thread i starts at shard i mod N), so no
 * shard starves; the batch in hand is settled on the shard it came from
 * (t->sh). Priorities hold within a shard; across shards a thread takes
 * the next shard's best queue, so a critical job waits at most one batch
 * per other shard per thread. A shard that fails to connect or fetch is
 * skipped for a backoff (100 ms doubling to 5 s) while the others are
 * served; only when all are empty does the thread sleep (idle_poll_ms).
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
 *           Then the batch's dead letters are handed to the self-audit
 *           events (selfevents.c: one mutex hold, no I/O; only those the
 *           settle recorded, so a fenced batch's are recorded by whoever
 *           recovers it).
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
 *   pg_timeout_ms, pg_connect_timeout_s) per call, then backs off (the main
 *   loop's own bounds: upkeep.c; the retention thread's: retainer.c).
 */
#include "writer.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "clock.h"
#include "clockskew.h"
#include "codec.h"
#include "keyhealth.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "redisconn.h"
#include "selfevents.h"
#include "uuid7.h"

#define PG_CHECK_MS 1000          /* idle thread's PostgreSQL ping interval */

typedef struct wthread {
    worker *w;
    writers *ws;              /* the pool it belongs to */
    int idx;
    pthread_t tid;
    redisContext *rc;         /* rcs[sh]: the connection of the shard in hand */
    int sh;                   /* the shard being fetched, or whose batch is in hand */
    int next_sh;              /* the shard to fetch from next (round robin) */
    redisContext *rcs[AQ_SHARDS_MAX];      /* per shard, connected on first use */
    int64_t sh_retry_us[AQ_SHARDS_MAX];    /* monotonic: shard not tried again before this */
    unsigned sh_fail[AQ_SHARDS_MAX];       /* consecutive failures per shard (backoff) */
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
    selfevents_batch seb;     /* this batch's dead letters, for their self-audit events */
    pgw_stats pgst;
} wthread;

struct writers {
    worker *w;
    wthread *th;                       /* w->nthreads entries */
    int started;                       /* threads created */
#ifdef AQ_TEST_HOOKS
    atomic_uint_fast64_t committed_batches; /* crash_after_commit counts these */
#endif
};

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
    char err[1400], q[1500];
    int sh = t->sh;
    if (t->rcs[sh] && !t->rcs[sh]->err) {
        t->rc = t->rcs[sh];
        return 0;
    }
    t->rc = NULL;
    if (t->rcs[sh]) {
        redisFree(t->rcs[sh]);
        t->rcs[sh] = NULL;
    }
    t->rcs[sh] = shard_connect(&t->w->shards, sh, t->cfg.redis_connect_timeout_ms, t->cfg.redis_timeout_ms, err,
                               sizeof err, NULL);
    if (!t->rcs[sh]) {
        atomic_store_explicit(&t->m->redis_up, 0, memory_order_relaxed);
        log_warn("redis unavailable", " thread=%d%s error=%s", t->idx, SHARD_KV(t->w, sh), log_q(q, sizeof q, err));
        return -1;
    }
    t->rc = t->rcs[sh];
    return 0;
}

/* The shard to fetch from next: the next one in turn whose backoff is
 * over. With every shard backing off, sleeps until the first is due (or
 * a stop signal) and returns -1. */
static int pick_shard(wthread *t)
{
    worker *w = t->w;
    int n = w->shards.n;
    int64_t now = clock_mono_us(), first = INT64_MAX;
    for (int k = 0; k < n; k++) {
        int s = (t->next_sh + k) % n;
        if (now >= t->sh_retry_us[s]) {
            t->sh = s;
            t->next_sh = (s + 1) % n;
            return s;
        }
        if (t->sh_retry_us[s] < first)
            first = t->sh_retry_us[s];
    }
    metrics_set_state(t->m, MST_BACKOFF);
    worker_sleep(w, (first - now + 999) / 1000, 0);
    return -1;
}

/* A failed connect or fetch on shard t->sh: not tried again for a backoff
 * of 100 ms doubling to 5 s; the other shards are served meanwhile. */
static void shard_failed(wthread *t)
{
    t->sh_retry_us[t->sh] = clock_mono_us() + backoff_delay_ms(++t->sh_fail[t->sh], 100, 5000, &t->rng) * 1000;
}

static void note_redis(wthread *t)
{
    atomic_store_explicit(&t->m->redis_up, t->rc != NULL && !t->rc->err, memory_order_relaxed);
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
    int rc = queue_release(t->rc, &w->shards.keys[t->sh], w->id, t->idx, b->token, &n, &fenced, rerr, sizeof rerr);
    note_redis(t);
    if (rc != 0) {
        log_warn("could not give the batch back; it stays in flight and its write is retried",
                 " thread=%d error=%s", t->idx,
                 log_q(q, sizeof q, worker_redis_why(w, "the release script", rerr, why, sizeof why)));
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
                worker_retry_sleep(w, (wait_us + 999) / 1000);
            } else {
                worker_sleep(w, (wait_us + 999) / 1000, 0); /* a stop signal wakes it: release at once */
            }
            if (worker_out_of_time(w)) {
                log_warn("shutdown deadline passed with a batch unwritten; it stays in flight",
                         " thread=%d jobs=%zu", t->idx, b->n);
                return WB_GAVE_UP;
            }
        }
    }
    return WB_WRITTEN;
}

/* Acknowledges the batch in Redis, retrying until it is done. Returns 0
 * (settled), 1 (fenced: nothing of ours was recorded), 2 (fenced after a
 * failed try: that try may have gone through), or -1 if shutdown ran out
 * of time first. */
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
                 queue_settle(t->rc, &w->shards.keys[t->sh], w->id, t->idx, b->token, processed, t->retries, nr,
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
            return fenced ? (attempt == 0 ? 1 : 2) : 0;
        }
        /* Logged also when the command timed out (the connection is then
         * marked failed): a stalled Redis must show per thread. */
        if (connected && ws.n == 0) {
            char why[300];
            log_warn("settle failed; will retry", " thread=%d error=%s", t->idx,
                     log_q(q, sizeof q, worker_redis_why(w, "the settle script", err, why, sizeof why)));
        }
        if (worker_out_of_time(w)) {
            log_warn("shutdown deadline passed before the batch was acknowledged; it stays in flight "
                     "(already committed: its re-delivery is a no-op)", " thread=%d", t->idx);
            return -1;
        }
        metrics_set_state(t->m, MST_BACKOFF);
        worker_retry_sleep(w, backoff_delay_ms(++attempt, 50, 2000, &t->rng));
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
            selfevents_note(&t->seb, c, job, job->priority, job->attempts, NULL,
                            cls == CLOCKSKEW_FUTURE ? "occurred_at_future" : "occurred_at_backfill");
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
    selfevents_commit(NULL, &t->seb, SELFEVENTS_DISCARD); /* a batch given back left notes */
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
        selfevents_note(&t->seb, c, NULL, b->priority, 0, NULL, "undecodable");
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
        atomic_fetch_add(&t->ws->committed_batches, 1) + 1 >= (uint64_t)c->crash_after_commit) {
        /* Test hook: die between the PostgreSQL commit and the Redis ack. */
        log_error("crash_after_commit test hook: exiting after commit, before ack", NULL);
        /* A real crash: no atexit, no flush, no leak report under valgrind. */
        kill(getpid(), SIGKILL);
        _exit(137);
    }
#endif

    for (size_t j = 0; j < nj; j++) {
        writer_row_verdict v;
        writer_row_decide(&t->res[j], t->jobs[j].attempts, c->max_attempts, c->backoff_base_ms,
                          c->backoff_max_ms, &t->rng, &v);
        if (v.action == WRITER_ROW_WRITTEN)
            continue;
        bad++;
        aq_job *job = &t->jobs[j];
        const redisReply *it = b->items[t->jobitem[j]];
        char idtxt[37];
        uuid_format(job->id, idtxt);
        if (v.action == WRITER_ROW_DEAD) {
            log_warn("row dead-lettered", " thread=%d event_id=%s sqlstate=%s attempts=%u error=%s",
                     t->idx, idtxt, t->res[j].sqlstate, v.attempts, log_q(q, sizeof q, t->res[j].message));
            if (queue_dead_record(&t->dead[nd++], it->str, it->len, job->priority, v.reason,
                                  t->res[j].sqlstate, v.attempts, w->id) != 0)
                abort();
            selfevents_note(&t->seb, c, job, job->priority, v.attempts, t->res[j].sqlstate, "rejected");
        } else {
            aq_buf *rb = &t->retrybufs[nr];
            rb->len = 0;
            job->attempts = v.attempts;
            if (codec_encode(job, rb) != 0)
                abort();
            t->retries[nr].priority = job->priority;
            t->retries[nr].job = rb->data;
            t->retries[nr].len = rb->len;
            t->retries[nr].delay_ms = v.delay_ms;
            log_info("row rejected; retry scheduled", " thread=%d event_id=%s sqlstate=%s attempt=%u retry_in_ms=%lld error=%s",
                     t->idx, idtxt, t->res[j].sqlstate, v.attempts, (long long)v.delay_ms,
                     log_q(q, sizeof q, t->res[j].message));
            nr++;
        }
    }

    int sr = settle_batch(t, b, nj - bad, nr, nd);
    /* The dead letters' self-audit events: only those the settle recorded. */
    selfevents_commit(w->se, &t->seb, sr == 0 ? SELFEVENTS_SETTLED : sr == 2 ? SELFEVENTS_UNCERTAIN
                                                                          : SELFEVENTS_DISCARD);
    if (sr < 0) {
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
        worker_sleep(w, (due - now + 999) / 1000, 0);
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
    int64_t idle = 1;
    int empty = 0;            /* shards found empty in a row */

    while (!atomic_load(&w->stopping)) {
        thread_refresh_cfg(t);
        const aq_config *c = &t->cfg;
        if (t->parked && parked_wait(t))
            continue;
        if (pick_shard(t) < 0)
            continue;
        if (ensure_redis(t) != 0) {
            shard_failed(t);
            continue;
        }
        queue_batch b;
        double r01 = (double)(backoff_rand(&t->rng) >> 11) / (double)(1ULL << 53);
        metrics_set_state(t->m, MST_FETCHING);
        queue_limits lim = {(size_t)c->max_job_bytes, CODEC_REENCODE_SLACK, c->dead_letter_max};
        int frc = queue_fetch(t->rc, &w->shards.keys[t->sh], w->id, t->idx, c->priority_mode == PRIO_WEIGHTED,
                              c->weights, r01, c->batch_size, ++t->seq, &lim, &b, err, sizeof err);
        note_redis(t);
        for (size_t i = 0; frc == 0 && i < b.wrong.n; i++)
            keyhealth_report(&w->kh, b.wrong.k[i].key, b.wrong.k[i].type, b.wrong.k[i].expected, "fetch");
        if (frc == 0 && b.dead_oversized > 0) {
            atomic_fetch_add(&t->m->failed, b.dead_oversized);  /* as the fetch script counts */
            atomic_fetch_add(&t->m->dead_lettered, b.dead_oversized);
            log_warn("oversized jobs dead-lettered at fetch", " thread=%d%s jobs=%zu max_job_bytes=%d",
                     t->idx, SHARD_KV(t->w, t->sh), b.dead_oversized, c->max_job_bytes);
            /* The fetch script recorded them: their events are final. */
            selfevents_batch ob = {0};
            for (size_t i = 0; i < b.dead_oversized; i++)
                selfevents_note(&ob, c, NULL, b.priority, 0, NULL, "oversized");
            selfevents_commit(w->se, &ob, SELFEVENTS_SETTLED);
            selfevents_batch_free(&ob);
        }
        if (frc != 0) {
            char why[300];
            log_warn("fetch failed", " thread=%d%s error=%s", t->idx, SHARD_KV(t->w, t->sh),
                     log_q(q, sizeof q, worker_redis_why(w, "the fetch script", err, why, sizeof why)));
            shard_failed(t);
            continue;
        }
        t->sh_fail[t->sh] = 0;
        if (b.n == 0) {
            queue_batch_free(&b);
            /* Every shard tried and found empty: back off from 1 ms up
             * to idle_poll_ms, so a trickle of events is picked up within
             * milliseconds while an idle worker costs a few commands per
             * second and shard. */
            if (++empty < w->shards.n)
                continue;
            empty = 0;
            pg_check(t);
            metrics_set_state(t->m, MST_IDLE);
            worker_sleep(w, idle, 0);
            idle = idle * 2 > c->idle_poll_ms ? c->idle_poll_ms : idle * 2;
            continue;
        }
        idle = 1;
        empty = 0;
        process_batch(t, &b);
        queue_batch_free(&b);
        if (t->abandoned)
            break;
    }
    metrics_set_state(t->m, MST_STOPPED);
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

/* ---- the bad-row decision ------------------------------------------------- */

void writer_row_decide(const pgw_row_result *r, uint32_t prior_attempts, int max_attempts,
                       int64_t backoff_base_ms, int64_t backoff_max_ms, uint64_t *rng,
                       writer_row_verdict *v)
{
    v->attempts = 0;
    v->delay_ms = 0;
    v->reason[0] = '\0';
    if (!r->bad) {
        v->action = WRITER_ROW_WRITTEN;
        return;
    }
    v->attempts = prior_attempts + 1;
    if (v->attempts >= (uint32_t)max_attempts) {
        v->action = WRITER_ROW_DEAD;
        snprintf(v->reason, sizeof v->reason, "postgres rejected the row %u times: %s", v->attempts,
                 r->message);
        return;
    }
    v->action = WRITER_ROW_RETRY;
    /* Drawn only for a retry: the thread's jitter sequence is the same
     * whatever the other rows of the batch were. */
    v->delay_ms = backoff_delay_ms(v->attempts, backoff_base_ms, backoff_max_ms, rng);
}

/* ---- lifecycle (main thread) ---------------------------------------------- */

writers *writers_setup(worker *w)
{
    writers *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    ws->w = w;
    ws->th = calloc((size_t)w->nthreads, sizeof *ws->th);
    w->mt = calloc((size_t)w->nthreads, sizeof *w->mt);
    if (!ws->th || !w->mt) {
        free(ws->th);
        free(w->mt);
        w->mt = NULL;
        free(ws);
        return NULL;
    }
    return ws;
}

int writers_check_pg(writers *ws)
{
    worker *w = ws->w;
    char err[512], why[900], q[1000], msg[80];
    pgw *pg = pgw_new(&w->boot_cfg);

    if (!pg) {
        log_error("out of memory", NULL);
        return -1;
    }
    ws->th[0].pg = pg;
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

int writers_start(writers *ws)
{
    worker *w = ws->w;

    atomic_store(&w->running, w->nthreads);
    for (int i = 0; i < w->nthreads; i++) {
        wthread *t = &ws->th[i];
        t->w = w;
        t->ws = ws;
        t->idx = i;
        t->next_sh = i % w->shards.n; /* threads start on different shards */
        t->cfg = w->cfg;
        t->m = &w->mt[i];
        t->pg_known = -1;
        t->rng = ((uint64_t)w->pid << 32) ^ (uint64_t)clock_mono_us() ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
        if (!t->pg)
            t->pg = pgw_new(&w->boot_cfg);
        if (!t->pg || pthread_create(&t->tid, NULL, thread_main, t) != 0) {
            log_error("cannot start writer thread", " thread=%d", i);
            return -1;
        }
        ws->started = i + 1;
    }
    return 0;
}

int writers_join(writers *ws)
{
    int abandoned = 0;
    for (int i = 0; i < ws->started; i++) {
        pthread_join(ws->th[i].tid, NULL);
        abandoned |= ws->th[i].abandoned;
    }
    return abandoned;
}

void writers_free(writers *ws)
{
    if (!ws)
        return;
    for (int i = 0; i < ws->w->nthreads; i++) {
        wthread *t = &ws->th[i];
        for (int k = 0; k < AQ_SHARDS_MAX; k++)
            if (t->rcs[k])
                redisFree(t->rcs[k]);
        pgw_free(t->pg);
        for (size_t j = 0; j < t->cap; j++) {
            free(t->dead[j].data);
            free(t->retrybufs[j].data);
        }
        free(t->jobs);
        free(t->jobitem);
        free(t->res);
        free(t->dead);
        selfevents_batch_free(&t->seb);
        free(t->retries);
        free(t->retrybufs);
    }
    free(ws->th);
    free(ws->w->mt);
    ws->w->mt = NULL;
    free(ws);
}
