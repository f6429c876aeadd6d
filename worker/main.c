/* auditq-worker -- moves audit jobs from Redis into PostgreSQL.
 *
 * DESIGN
 *
 * Threads. The main thread runs a libev loop that owns signals and timers:
 * heartbeat, recovery of dead workers, promotion of due retries, partition
 * upkeep, a periodic summary line, and shutdown. N writer threads (default:
 * one per core) each own one Redis and one PostgreSQL connection; no
 * connection is ever shared between threads.
 *
 * A writer thread loops:  fetch -> decode -> write -> settle.
 *   fetch   a Lua script moves up to batch_size jobs from the highest-
 *           priority non-empty queue into this thread's in-flight list and
 *           records the source queue and a fencing token in the worker hash.
 *   decode  jobs that are not valid msgpack jobs become dead letters now,
 *           with the reason.
 *   write   one transaction per batch, ON CONFLICT DO NOTHING on
 *           (event_id, occurred_at). Transient errors (PostgreSQL down,
 *           too many connections, deadlock, ...) are retried forever with
 *           capped exponential backoff -- the batch stays in flight, nothing
 *           is dead-lettered because the database was away. Data errors are
 *           isolated by bisection: every good row commits; each bad row is
 *           scheduled for a delayed retry, and dead-lettered with its
 *           SQLSTATE after max_attempts.
 *   settle  a Lua script adds retries and dead letters, bumps the stats and
 *           deletes the in-flight list, atomically, only if the fencing
 *           token is still ours.
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
 *   SIGTERM/SIGINT: threads stop fetching, finish and settle the batch in
 *     hand, and exit; a batch that cannot be finished within
 *     shutdown_timeout_ms is released back to its queue before exit.
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
#include "codec.h"
#include "config.h"
#include "keys.h"
#include "log.h"
#include "pgw.h"
#include "queue.h"
#include "redisconn.h"
#include "uuid7.h"

typedef struct worker worker;

typedef struct wthread {
    worker *w;
    int idx;
    pthread_t tid;
    redisContext *rc;
    pgw *pg;
    uint64_t rng;
    uint64_t seq;
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
    /* counters read by the main thread */
    atomic_uint_fast64_t processed, failed, dead_lettered, retried, batches, inflight;
} wthread;

struct worker {
    aq_config cfg;
    char cfg_path[512];
    aq_keys keys;
    aq_redis_target rt;
    char id[160];
    char host[128];
    int pid;
    int64_t started_ms;
    int nthreads;
    wthread *th;

    atomic_int stopping;
    int64_t stop_deadline_us;          /* monotonic */
    atomic_int running;                /* writer threads still running */
    atomic_uint_fast64_t committed_batches;
    pthread_mutex_t mu;
    pthread_cond_t cv;                 /* wakes sleeping threads at shutdown */

    redisContext *rc;                  /* main thread's own connection */
    uint64_t last_processed;
    int64_t last_summary_us;

    struct ev_loop *loop;
    ev_signal sig_term, sig_int, sig_hup;
    ev_timer t_heartbeat, t_recover, t_promote, t_maint, t_summary, t_stop;
};

static int64_t deadline_left_ms(worker *w)
{
    return (w->stop_deadline_us - clock_mono_us()) / 1000;
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

static int ensure_redis(wthread *t)
{
    char err[256];
    if (t->rc && !t->rc->err)
        return 0;
    if (t->rc) {
        redisFree(t->rc);
        t->rc = NULL;
    }
    t->rc = redis_connect(&t->w->rt, t->w->cfg.redis_connect_timeout_ms, t->w->cfg.redis_timeout_ms,
                          err, sizeof err, NULL);
    if (!t->rc) {
        log_warn("redis unavailable", " thread=%d error=\"%s\"", t->idx, err);
        return -1;
    }
    return 0;
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

/* Decodes, writes and settles one batch. Returns when it is settled, or
 * when shutdown ran out of time (the batch stays in flight). */
static void process_batch(wthread *t, queue_batch *b)
{
    worker *w = t->w;
    const aq_config *c = &w->cfg;
    char err[512];
    size_t nj = 0, nd = 0, nr = 0, bad = 0;
    unsigned attempt = 0;

    if (grow(t, b->n) != 0) {
        log_error("out of memory for a batch; aborting", " n=%zu", b->n);
        abort(); /* the daemon's one OOM policy: die, the batch is recovered */
    }
    atomic_store(&t->inflight, b->n);
    for (size_t i = 0; i < b->n; i++) {
        const redisReply *it = b->items[i];
        if (codec_decode(it->str, it->len, (size_t)c->max_job_bytes, &t->jobs[nj], err, sizeof err) == 0) {
            t->jobitem[nj++] = i;
            continue;
        }
        char reason[600];
        snprintf(reason, sizeof reason, "undecodable job: %s", err);
        log_warn("job dead-lettered at decode", " thread=%d bytes=%zu reason=\"%s\"", t->idx, it->len, err);
        if (queue_dead_record(&t->dead[nd], it->str, it->len, b->priority, reason, NULL, 0, w->id) != 0)
            abort();
        nd++;
    }

    while (nj > 0) {
        int rc = pgw_write(t->pg, t->jobs, nj, t->res, &t->pgst, err, sizeof err);
        if (rc == PGW_DONE)
            break;
        attempt++;
        if (out_of_time(w)) {
            log_warn("shutdown deadline passed with a batch unwritten; it stays in flight",
                     " thread=%d jobs=%zu", t->idx, b->n);
            t->abandoned = 1;
            return;
        }
        int64_t delay = backoff_delay_ms(attempt, c->backoff_base_ms, c->backoff_max_ms, &t->rng);
        log_warn("postgres write failed; will retry", " thread=%d attempt=%u retry_in_ms=%lld error=\"%s\"",
                 t->idx, attempt, (long long)delay, err);
        retry_sleep(w, delay);
    }

    if (c->crash_after_commit > 0 &&
        atomic_fetch_add(&w->committed_batches, 1) + 1 >= (uint64_t)c->crash_after_commit) {
        /* Test hook: die between the PostgreSQL commit and the Redis ack. */
        log_error("crash_after_commit test hook: exiting after commit, before ack", NULL);
        _exit(137);
    }

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
            log_warn("row dead-lettered", " thread=%d event_id=%s sqlstate=%s attempts=%u error=\"%s\"",
                     t->idx, idtxt, t->res[j].sqlstate, attempts, t->res[j].message);
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
            log_info("row rejected; retry scheduled", " thread=%d event_id=%s sqlstate=%s attempt=%u retry_in_ms=%lld error=\"%s\"",
                     t->idx, idtxt, t->res[j].sqlstate, attempts, (long long)t->retries[nr].delay_ms,
                     t->res[j].message);
            nr++;
        }
    }

    attempt = 0;
    for (;;) {
        int fenced = 0;
        if (ensure_redis(t) == 0 &&
            queue_settle(t->rc, &w->keys, w->id, t->idx, b->token, nj - bad, t->retries, nr, t->dead,
                         nd, c->dead_letter_max, &fenced, err, sizeof err) == 0) {
            if (fenced)
                log_warn("batch was recovered by another worker meanwhile; its copy will be re-written "
                         "idempotently", " thread=%d jobs=%zu", t->idx, b->n);
            break;
        }
        if (t->rc && !t->rc->err)
            log_warn("settle failed; will retry", " thread=%d error=\"%s\"", t->idx, err);
        if (out_of_time(w)) {
            log_warn("shutdown deadline passed before the batch was acknowledged; it stays in flight "
                     "(already committed: its re-delivery is a no-op)", " thread=%d", t->idx);
            t->abandoned = 1;
            return;
        }
        retry_sleep(w, backoff_delay_ms(++attempt, 50, 2000, &t->rng));
    }
    atomic_fetch_add(&t->processed, nj - bad);
    atomic_fetch_add(&t->failed, bad + nd);
    atomic_fetch_add(&t->dead_lettered, nd);
    atomic_fetch_add(&t->retried, nr);
    atomic_fetch_add(&t->batches, 1);
    atomic_store(&t->inflight, 0);
}

static void *thread_main(void *arg)
{
    wthread *t = arg;
    worker *w = t->w;
    char err[512];
    unsigned rfail = 0;
    int64_t idle = 1;

    while (!atomic_load(&w->stopping)) {
        if (ensure_redis(t) != 0) {
            w_sleep(w, backoff_delay_ms(++rfail, 100, 5000, &t->rng), 0);
            continue;
        }
        queue_batch b;
        double r01 = (double)(backoff_rand(&t->rng) >> 11) / (double)(1ULL << 53);
        if (queue_fetch(t->rc, &w->keys, w->id, t->idx, w->cfg.priority_mode == PRIO_WEIGHTED,
                        w->cfg.weights, r01, w->cfg.batch_size, ++t->seq, &b, err, sizeof err) != 0) {
            log_warn("fetch failed", " thread=%d error=\"%s\"", t->idx, err);
            w_sleep(w, backoff_delay_ms(++rfail, 100, 5000, &t->rng), 0);
            continue;
        }
        rfail = 0;
        if (b.n == 0) {
            queue_batch_free(&b);
            /* Empty queues: back off from 1 ms up to idle_poll_ms, so a
             * trickle of events is picked up within milliseconds while an
             * idle worker costs a few commands per second. */
            w_sleep(w, idle, 0);
            idle = idle * 2 > w->cfg.idle_poll_ms ? w->cfg.idle_poll_ms : idle * 2;
            continue;
        }
        idle = 1;
        process_batch(t, &b);
        queue_batch_free(&b);
        if (t->abandoned)
            break;
    }
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

/* ---- main thread ---------------------------------------------------------- */

static redisContext *main_redis(worker *w)
{
    char err[256];
    if (w->rc && w->rc->err) {
        redisFree(w->rc);
        w->rc = NULL;
    }
    if (!w->rc) {
        w->rc = redis_connect(&w->rt, w->cfg.redis_connect_timeout_ms, w->cfg.redis_timeout_ms, err,
                              sizeof err, NULL);
        if (!w->rc)
            log_warn("redis unavailable (main)", " error=\"%s\"", err);
    }
    return w->rc;
}

static void sum_counters(worker *w, uint64_t *processed, uint64_t *inflight)
{
    *processed = *inflight = 0;
    for (int i = 0; i < w->nthreads; i++) {
        *processed += atomic_load(&w->th[i].processed);
        *inflight += atomic_load(&w->th[i].inflight);
    }
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char err[256];
    uint64_t processed, inflight;
    redisContext *c = main_redis(w);
    if (!c)
        return;
    sum_counters(w, &processed, &inflight);
    if (queue_heartbeat(c, &w->keys, w->id, w->host, w->pid, w->nthreads, w->started_ms, processed,
                        inflight, err, sizeof err) != 0)
        log_warn("heartbeat failed", " error=\"%s\"", err);
}

static void on_recover(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char err[256];
    long long workers = 0, jobs = 0, dead = 0;
    redisContext *c = main_redis(w);
    if (!c)
        return;
    if (queue_recover(c, &w->keys, &w->cfg, NULL, &workers, &jobs, &dead, err, sizeof err) != 0)
        log_warn("recovery check failed", " error=\"%s\"", err);
    else if (workers > 0)
        log_warn("recovered in-flight jobs of dead workers", " workers=%lld jobs=%lld dead_lettered=%lld",
                 workers, jobs, dead);
}

static void on_promote(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char err[256];
    long long moved = 0, total = 0;
    redisContext *c = main_redis(w);
    if (!c)
        return;
    do {
        if (queue_promote(c, &w->keys, &moved, err, sizeof err) != 0) {
            log_warn("retry promotion failed", " error=\"%s\"", err);
            return;
        }
        total += moved;
    } while (moved == 1000);
    if (total > 0)
        log_debug("retries due, back in their queues", " jobs=%lld", total);
}

/* Creates the coming months' partitions (auditq_ensure_partitions, from
 * the migrations). Runs at start and hourly; a failure is logged and
 * harmless: rows land in the DEFAULT partition meanwhile. */
static void on_maint(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    char ahead[16], cto[16];
    snprintf(ahead, sizeof ahead, "%d", w->cfg.partitions_ahead);
    snprintf(cto, sizeof cto, "%d", w->cfg.pg_connect_timeout_s);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {w->cfg.database_url, cto, "auditq-worker-maint", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(pg);
        log_warn("partition upkeep skipped: cannot connect to PostgreSQL", " error=\"%.*s\"",
                 (int)strcspn(msg, "\n"), msg);
        PQfinish(pg);
        return;
    }
    const char *params[1] = {ahead};
    PGresult *r = PQexecParams(pg, "SELECT auditq_ensure_partitions($1::int)", 1, NULL, params, NULL,
                               NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        log_warn("partition upkeep failed (run 'auditqctl migrate'?)", " error=\"%s\"",
                 PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : "");
    else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0)
        log_info("partitions created", " count=%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(pg);
}

static void on_summary(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = tm->data;
    uint64_t processed, inflight, failed = 0, dead = 0;
    sum_counters(w, &processed, &inflight);
    for (int i = 0; i < w->nthreads; i++) {
        failed += atomic_load(&w->th[i].failed);
        dead += atomic_load(&w->th[i].dead_lettered);
    }
    int64_t now = clock_mono_us();
    double secs = (double)(now - w->last_summary_us) / 1e6;
    uint64_t delta = processed - w->last_processed;
    if (delta > 0 || inflight > 0)
        log_info("summary", " written_per_s=%.0f processed=%llu failed=%llu dead_lettered=%llu inflight=%llu",
                 secs > 0 ? (double)delta / secs : 0.0, (unsigned long long)processed,
                 (unsigned long long)failed, (unsigned long long)dead, (unsigned long long)inflight);
    w->last_processed = processed;
    w->last_summary_us = now;
}

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
        w->stop_deadline_us = clock_mono_us();
        return;
    }
    w->stop_deadline_us = clock_mono_us() + (int64_t)w->cfg.shutdown_timeout_ms * 1000;
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
        log_warn("SIGHUP: this version has no live reload; restart the worker to apply config changes "
                 "(a graceful restart loses nothing)", NULL);
        return;
    }
    begin_shutdown(w, s->signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

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
            "Signals: SIGTERM/SIGINT drain and exit 0 (a second one stops at once).\n"
            "Exit codes: 0 clean stop, 2 configuration error, 1 other failure.\n");
}

static int load_config(worker *w, int argc, char **argv, int *check, int *print)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'}, {"batch-size", required_argument, NULL, 'b'},
        {"check", no_argument, NULL, 1},           {"print-config", no_argument, NULL, 2},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    char err[1024];
    char *sets[128];
    int nsets = 0, o;

    config_defaults(&w->cfg);
    while ((o = getopt_long(argc, argv, "c:s:t:b:hV", opts, NULL)) != -1) {
        switch (o) {
        case 'c': snprintf(w->cfg_path, sizeof w->cfg_path, "%s", optarg); break;
        case 's':
        case 't':
        case 'b':
            if (nsets == 128) {
                fprintf(stderr, "auditq-worker: too many --set options\n");
                return 2;
            }
            if (o == 's')
                sets[nsets++] = optarg;
            else {
                static char buf[2][64];
                snprintf(buf[o == 't' ? 0 : 1], sizeof buf[0], "%s=%s", o == 't' ? "threads" : "batch_size", optarg);
                sets[nsets++] = buf[o == 't' ? 0 : 1];
            }
            break;
        case 1: *check = 1; break;
        case 2: *print = 1; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("auditq-worker %s\n", AUDITQ_VERSION); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "auditq-worker: unexpected argument '%s'; see --help\n", argv[optind]);
        return 2;
    }
    if (w->cfg_path[0] && config_load_file(&w->cfg, w->cfg_path, err, sizeof err) != 0)
        goto bad;
    if (config_load_env(&w->cfg, err, sizeof err) != 0)
        goto bad;
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *eq = strchr(sets[i], '=');
        if (!eq || (size_t)(eq - sets[i]) >= sizeof key) {
            fprintf(stderr, "auditq-worker: --set '%s': expected KEY=VALUE\n", sets[i]);
            return 2;
        }
        memcpy(key, sets[i], (size_t)(eq - sets[i]));
        key[eq - sets[i]] = '\0';
        if (config_set(&w->cfg, key, eq + 1, "--set", err, sizeof err) != 0)
            goto bad;
    }
    if (config_validate(&w->cfg, err, sizeof err) != 0)
        goto bad;
    if (redis_url_parse(w->cfg.redis_url, &w->rt, err, sizeof err) != 0 ||
        keys_init(&w->keys, w->cfg.namespace_) != 0)
        goto bad;
    return 0;
bad:
    fprintf(stderr, "auditq-worker: %s\n", err);
    return 2;
}

int main(int argc, char **argv)
{
    static worker W;
    worker *w = &W;
    int check = 0, print = 0, rc;

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
    log_level = w->cfg.log_level;
    signal(SIGPIPE, SIG_IGN);

    w->nthreads = w->cfg.threads > 0 ? w->cfg.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (w->nthreads < 1)
        w->nthreads = 1;
    w->pid = (int)getpid();
    if (gethostname(w->host, sizeof w->host) != 0)
        snprintf(w->host, sizeof w->host, "unknown");
    w->host[sizeof w->host - 1] = '\0';
    uint8_t rnd[16];
    uuid7_new(rnd);
    snprintf(w->id, sizeof w->id, "%.100s:%d:%02x%02x%02x", w->host, w->pid, rnd[13], rnd[14], rnd[15]);
    w->started_ms = clock_now_us() / 1000;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);

    w->loop = EV_DEFAULT;
    ev_signal_init(&w->sig_term, on_signal, SIGTERM);
    ev_signal_init(&w->sig_int, on_signal, SIGINT);
    ev_signal_init(&w->sig_hup, on_signal, SIGHUP);
    w->sig_term.data = w->sig_int.data = w->sig_hup.data = w;
    ev_signal_start(w->loop, &w->sig_term);
    ev_signal_start(w->loop, &w->sig_int);
    ev_signal_start(w->loop, &w->sig_hup);

    w->th = calloc((size_t)w->nthreads, sizeof *w->th);
    if (!w->th) {
        log_error("out of memory", NULL);
        return 1;
    }
    /* Register before the threads take work, so our in-flight lists are
     * never unowned. */
    on_heartbeat(w->loop, &(ev_timer){.data = w}, 0);
    atomic_store(&w->running, w->nthreads);
    for (int i = 0; i < w->nthreads; i++) {
        wthread *t = &w->th[i];
        t->w = w;
        t->idx = i;
        t->rng = ((uint64_t)w->pid << 32) ^ (uint64_t)clock_mono_us() ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
        t->pg = pgw_new(&w->cfg);
        if (!t->pg || pthread_create(&t->tid, NULL, thread_main, t) != 0) {
            log_error("cannot start writer thread", " thread=%d", i);
            return 1;
        }
    }
    log_info("worker started", " id=%s threads=%d batch_size=%d namespace=%s priority_mode=%s write_method=%s",
             w->id, w->nthreads, w->cfg.batch_size, w->cfg.namespace_,
             w->cfg.priority_mode == PRIO_WEIGHTED ? "weighted" : "strict",
             w->cfg.write_method == WRITE_INSERT ? "insert" : "copy");

    double hb = w->cfg.heartbeat_interval_ms / 1000.0;
    double rec = w->cfg.recovery_interval_ms / 1000.0;
    ev_timer_init(&w->t_heartbeat, on_heartbeat, hb, hb);
    ev_timer_init(&w->t_recover, on_recover, 0.05, rec);
    ev_timer_init(&w->t_promote, on_promote, 0.1, 0.1);
    ev_timer_init(&w->t_maint, on_maint, 0.2, 3600.0);
    double sum = w->cfg.summary_interval_ms / 1000.0;
    ev_timer_init(&w->t_summary, on_summary, sum, sum);
    ev_timer_init(&w->t_stop, on_stop_check, 0.02, 0.02);
    w->t_heartbeat.data = w->t_recover.data = w->t_promote.data = w;
    w->t_maint.data = w->t_summary.data = w->t_stop.data = w;
    w->last_summary_us = clock_mono_us();
    ev_timer_start(w->loop, &w->t_heartbeat);
    ev_timer_start(w->loop, &w->t_recover);
    ev_timer_start(w->loop, &w->t_promote);
    ev_timer_start(w->loop, &w->t_maint);
    if (w->cfg.summary_interval_ms > 0)
        ev_timer_start(w->loop, &w->t_summary);

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
    on_summary(w->loop, &w->t_summary, 0);
    char err[256];
    redisContext *c = main_redis(w);
    if (c && abandoned) {
        long long nw, nj, nd;
        /* Release unfinished batches to their queues now rather than after
         * heartbeat_timeout_ms. A stuck thread's late settle is fenced. */
        if (queue_recover(c, &w->keys, &w->cfg, w->id, &nw, &nj, &nd, err, sizeof err) == 0)
            log_warn("released unfinished batches back to their queues", " jobs=%lld", nj);
        else
            log_warn("could not release unfinished batches; peers recover them after heartbeat_timeout_ms",
                     " error=\"%s\"", err);
    } else if (c) {
        if (queue_deregister(c, &w->keys, w->id, err, sizeof err) != 0)
            log_warn("could not deregister", " error=\"%s\"", err);
    } else {
        log_warn("redis unreachable at exit; in-flight jobs (if any) are recovered by peers after "
                 "heartbeat_timeout_ms", NULL);
    }
    log_info("worker stopped", " id=%s", w->id);
    if (stuck)
        _exit(0); /* threads still inside a bounded call: don't free under them */
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
    if (w->rc)
        redisFree(w->rc);
    ev_loop_destroy(w->loop);
    return 0;
}
