/* bench_pg.c -- auditq-bench `ceiling` and `e2e`: the PostgreSQL side.
 *
 * DESIGN
 *   ceiling  What PostgreSQL alone can take for our rows and schema. The
 *            rows come from the same generator as every other command
 *            (gen.h), are encoded, decoded and formatted into COPY text by
 *            the worker's own code (codec.c, pgw.c) BEFORE the clock starts,
 *            and are then written with exactly the worker's statements
 *            (pgw_internal.h: BEGIN; COPY auditq_stage; pipelined SAVEPOINT, INSERT ...
 *            ON CONFLICT DO NOTHING + COMMIT) from K connections, each
 *            taking every K-th batch. What is left out is everything that
 *            is not PostgreSQL: Redis, decoding, formatting, acknowledging.
 *            So auditq's end-to-end rate divided by this is the share of the
 *            database's capacity the pipeline delivers.
 *            The rows go into a scratch schema (auditq_bench_ceiling) built
 *            from the embedded migrations -- the same tables, indexes,
 *            partitions and triggers as audit_events -- recreated empty for
 *            each K and dropped at the end, so the real audit trail (which
 *            is append-only) is never touched.
 *
 *   e2e      N events through the whole pipeline: this process produces
 *            (libauditq, async), P auditq-worker child processes with T
 *            threads each consume, PostgreSQL stores. Two phases:
 *              full load  N events as fast as the producer can send them;
 *                         throughput = N / (first send .. last commit),
 *                         i.e. the sustained rate the workers write at.
 *              latency    `load_fraction` x that rate for `latency_seconds`;
 *                         end-to-end latency per event = received_at -
 *                         occurred_at, read back from PostgreSQL
 *                         (received_at is clock_timestamp() when the row is
 *                         inserted, inside the batch's transaction; COMMIT
 *                         follows in the same round trip).
 *            Completion is counted by the workers' `processed` counter in
 *            {ns}:stats; then every phase's rows are counted in PostgreSQL
 *            and must equal what was sent (the run fails otherwise).
 *            Worker CPU and peak RSS come from wait4()'s rusage when the
 *            workers exit (SIGTERM, drained); the producer's from
 *            getrusage(RUSAGE_SELF) (it includes generating the events).
 *            By default the ceiling is measured in the same run, so the
 *            ratio compares numbers from the same machine and moment.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include <hiredis.h>
#include <libpq-fe.h>

#include "bench.h"
#include "clock.h"
#include "codec.h"
#include "gen.h"
#include "migrations.h"
#include "pgconn.h"
#include "pgw_internal.h"
#include "../producer/event.h"
#include "keys.h"
#include "redisconn.h"
#include "uuid7.h"

#define CEIL_SCHEMA "auditq_bench_ceiling"

/* ---- PostgreSQL helpers ---------------------------------------------------- */

static PGconn *pg_open(const char *url, char *err, size_t errlen)
{
    /* No connect_timeout of ours: the bench waits as libpq does by default. */
    const pgconn_opts o = { .conninfo = url, .component = "auditq-bench",
                            .fix = "check --database-url or AUDITQ_DATABASE_URL" };

    return pgconn_open(&o, err, errlen);
}

/* Runs sql (may hold several statements). 0, or -1 with the server's message. */
static int pg_exec(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s: %s", what, PQerrorMessage(pg));
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* One integer from a one-row, one-column query; -1 on error. */
static long long pg_scalar(PGconn *pg, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        snprintf(err, errlen, "%s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return v;
}

/* ---- rows ----------------------------------------------------------------- */

/* n generated events as COPY text, batch by batch: batches[b] holds rows
 * [b*per, min(n, (b+1)*per)). Each event goes through the producer's and the
 * worker's code: event -> aq_job -> msgpack -> codec_decode -> pgw_copy_row,
 * so the bytes PostgreSQL parses are the worker's bytes. */
typedef struct row_batches {
    aq_buf *b;
    size_t nb;
    size_t rows;
} row_batches;

static void row_batches_free(row_batches *rb)
{
    for (size_t i = 0; i < rb->nb; i++)
        free(rb->b[i].data);
    free(rb->b);
    memset(rb, 0, sizeof *rb);
}

static int row_batches_make(row_batches *rb, uint64_t seed, size_t n, size_t per, char *err, size_t errlen)
{
    gen g;
    auditq_event *ev = auditq_event_new(NULL);
    aq_buf enc = { 0 };
    int rc = -1;
    int64_t base = clock_now_us();

    memset(rb, 0, sizeof *rb);
    rb->nb = (n + per - 1) / per;
    rb->b = calloc(rb->nb, sizeof *rb->b);
    if (ev == NULL || rb->b == NULL)
        goto oom;
    gen_init(&g, seed);
    for (size_t i = 0; i < n; i++) {
        aq_job j, d;
        char why[256];

        gen_fill(&g, ev);
        if (event_fill_job(ev, &j) != AUDITQ_OK) {
            snprintf(err, errlen, "generated event %zu: %s", i, auditq_last_error());
            goto out;
        }
        /* Recent, increasing times, as live traffic has: 1 us apart. */
        j.occurred_at_us = base - (int64_t)(n - i);
        enc.len = 0;
        if (codec_encode(&j, &enc) != 0)
            goto oom;
        if (codec_decode(enc.data, enc.len, enc.len, &d, why, sizeof why) != 0) {
            snprintf(err, errlen, "generated event %zu does not decode: %s", i, why);
            goto out;
        }
        if (pgw_copy_row(&rb->b[i / per], &d, i % per) != 0)
            goto oom;
        rb->rows++;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory generating %zu rows", n);
out:
    if (rc != 0)
        row_batches_free(rb);
    free(enc.data);
    auditq_event_free(ev);
    return rc;
}

/* ---- ceiling ---------------------------------------------------------------- */

/* (Re)creates the scratch schema from the embedded migrations, with this
 * month's partition and the next one. */
static int ceil_schema_reset(PGconn *pg, char *err, size_t errlen)
{
    if (pg_exec(pg, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS " CEIL_SCHEMA
                " CASCADE; CREATE SCHEMA " CEIL_SCHEMA "; SET search_path = " CEIL_SCHEMA,
                "creating schema " CEIL_SCHEMA " (the bench needs CREATE on the database)", err,
                errlen) < 0)
        return -1;
    for (size_t i = 0; i < aq_migrations_count; i++) {
        char what[128];
        snprintf(what, sizeof what, "migration %03d_%s in " CEIL_SCHEMA, aq_migrations[i].version,
                 aq_migrations[i].name);
        if (pg_exec(pg, aq_migrations[i].sql, what, err, errlen) < 0)
            return -1;
    }
    return pg_exec(pg, "SELECT " CEIL_SCHEMA ".auditq_ensure_partitions(1); RESET search_path",
                   "creating partitions in " CEIL_SCHEMA, err, errlen);
}

static void ceil_schema_drop(PGconn *pg)
{
    char err[256];
    pg_exec(pg, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS " CEIL_SCHEMA " CASCADE",
            "dropping " CEIL_SCHEMA, err, sizeof err);
}

typedef struct ceil_thread {
    pthread_t tid;
    PGconn *pg;
    const row_batches *rb;
    size_t first, step;          /* batches first, first+step, ... */
    _Atomic uint64_t rows_done;
    int failed;
    char err[512];
    struct ceil_gate *gate;
} ceil_thread;

typedef struct ceil_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;
} ceil_gate;

/* One batch the way pgw.c's txn_copy writes it: BEGIN + COPY in one
 * round trip, then SAVEPOINT, INSERT ... SELECT and COMMIT pipelined in
 * another. */
static int ceil_write(PGconn *pg, const aq_buf *b, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, pgw_begin_copy_sql);
    int ok;

    if (PQresultStatus(r) != PGRES_COPY_IN) {
        snprintf(err, errlen, "BEGIN; COPY: %s", PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    ok = PQputCopyData(pg, b->data, (int)b->len) == 1 && PQputCopyEnd(pg, NULL) == 1;
    while ((r = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            ok = 0;
        PQclear(r);
    }
    if (!ok) {
        snprintf(err, errlen, "COPY: %s", PQerrorMessage(pg));
        return -1;
    }
    if (PQenterPipelineMode(pg) != 1 ||
        PQsendQueryParams(pg, pgw_savepoint_sql, 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQsendQueryPrepared(pg, "ceil_insert", 0, NULL, NULL, NULL, 0) != 1 ||
        PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 || PQpipelineSync(pg) != 1) {
        snprintf(err, errlen, "pipeline: %s", PQerrorMessage(pg));
        return -1;
    }
    for (int results = 0; results < 4;) {  /* 3 queries and the Sync */
        r = PQgetResult(pg);
        if (r == NULL)
            continue;  /* end of one query's results */
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED) {
            snprintf(err, errlen, "INSERT/COMMIT: %s", PQresultErrorMessage(r));
            ok = 0;
        }
        PQclear(r);
        results++;
    }
    PQexitPipelineMode(pg);
    if (!ok)
        pg_exec(pg, "ROLLBACK", "rollback", err + strlen(err), errlen - strlen(err));
    return ok ? 0 : -1;
}

static void *ceil_main(void *arg)
{
    ceil_thread *t = arg;

    pthread_mutex_lock(&t->gate->mu);
    while (!t->gate->go)
        pthread_cond_wait(&t->gate->cv, &t->gate->mu);
    pthread_mutex_unlock(&t->gate->mu);
    for (size_t b = t->first; b < t->rb->nb && !t->failed; b += t->step) {
        if (ceil_write(t->pg, &t->rb->b[b], t->err, sizeof t->err) < 0) {
            t->failed = 1;
            break;
        }
        /* Rows of this batch: every batch is full except maybe the last. */
        size_t per = t->rb->nb > 1 ? (t->rb->rows + t->rb->nb - 1) / t->rb->nb : t->rb->rows;
        size_t rows = b + 1 == t->rb->nb ? t->rb->rows - b * per : per;
        atomic_fetch_add(&t->rows_done, rows);
    }
    return NULL;
}

/* Connection set-up identical to the worker's pgw_connect, pointed at the
 * scratch schema. */
static PGconn *ceil_connect(const char *url, char *err, size_t errlen)
{
    PGconn *pg = pg_open(url, err, errlen);
    PGresult *r;

    if (pg == NULL)
        return NULL;
    if (pg_exec(pg, "SET search_path = " CEIL_SCHEMA ", public; SET application_name = 'auditq-bench'",
                "search_path", err, errlen) < 0 ||
        pg_exec(pg, pgw_setup_sql, "staging table", err, errlen) < 0)
        goto fail;
    r = PQprepare(pg, "ceil_insert", pgw_insert_stage_sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "prepare: %s", PQerrorMessage(pg));
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    return pg;
fail:
    PQfinish(pg);
    return NULL;
}

typedef struct ceil_result {
    int conns;
    uint64_t rows;
    double secs;
    double rows_per_s;
} ceil_result;

/* Measures every K in o->conns. res[] gets one entry per K. 0 or -1 (err). */
static int ceiling_measure(const bench_opts *o, ceil_result *res, char *err, size_t errlen)
{
    row_batches rb;
    PGconn *admin = NULL;
    int rc = -1;

    if (o->progress)
        fprintf(stderr, "ceiling: generating %" PRIu64 " rows...\n", o->events);
    if (row_batches_make(&rb, o->seed, (size_t)o->events, (size_t)o->pg_batch, err, errlen) < 0)
        return -1;
    admin = pg_open(o->database_url, err, errlen);
    if (admin == NULL)
        goto out;
    for (int k = 0; k < o->nconns; k++) {
        int K = o->conns[k];
        ceil_thread *ts = calloc((size_t)K, sizeof *ts);
        ceil_gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
        int created = 0, failed = 0;

        if (ts == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (ceil_schema_reset(admin, err, errlen) < 0) {
            free(ts);
            goto out;
        }
        for (int i = 0; i < K; i++) {
            ts[i].pg = ceil_connect(o->database_url, err, errlen);
            if (ts[i].pg == NULL) {
                failed = 1;
                break;
            }
            ts[i].rb = &rb;
            ts[i].first = (size_t)i;
            ts[i].step = (size_t)K;
            ts[i].gate = &gate;
            atomic_init(&ts[i].rows_done, 0);
        }
        for (int i = 0; i < K && !failed; i++) {
            if (pthread_create(&ts[i].tid, NULL, ceil_main, &ts[i]) != 0) {
                snprintf(err, errlen, "pthread_create failed");
                failed = 1;
                break;
            }
            created++;
        }
        pthread_mutex_lock(&gate.mu);
        gate.go = 1;
        int64_t t0 = now_ns();
        pthread_cond_broadcast(&gate.cv);
        pthread_mutex_unlock(&gate.mu);
        for (;;) {
            uint64_t done = 0;
            int alive = 0;
            for (int i = 0; i < created; i++) {
                done += atomic_load(&ts[i].rows_done);
                alive += ts[i].failed == 0;
            }
            if (done >= rb.rows || failed || alive == 0)
                break;
            if (o->progress) {
                double s = (double)(now_ns() - t0) / 1e9;
                fprintf(stderr, "\rceiling %d conn%s: %" PRIu64 "/%zu rows  %.0f rows/s   ", K,
                        K == 1 ? "" : "s", done, rb.rows, s > 0 ? (double)done / s : 0.0);
            }
            sleep_ms(100);
        }
        for (int i = 0; i < created; i++)
            pthread_join(ts[i].tid, NULL);
        int64_t t1 = now_ns();
        for (int i = 0; i < created; i++) {
            if (ts[i].failed && !failed) {
                snprintf(err, errlen, "ceiling, connection %d: %s", i, ts[i].err);
                failed = 1;
            }
        }
        for (int i = 0; i < K; i++)
            PQfinish(ts[i].pg);
        free(ts);
        if (o->progress)
            fputc('\n', stderr);
        if (failed)
            goto out;
        long long stored = pg_scalar(admin, "SELECT count(*) FROM " CEIL_SCHEMA ".audit_events", err, errlen);
        if (stored != (long long)rb.rows) {
            if (stored >= 0)
                snprintf(err, errlen, "ceiling: %lld rows stored, expected %zu", stored, rb.rows);
            goto out;
        }
        res[k].conns = K;
        res[k].rows = rb.rows;
        res[k].secs = (double)(t1 - t0) / 1e9;
        res[k].rows_per_s = (double)rb.rows / res[k].secs;
    }
    rc = 0;
out:
    if (admin) {
        ceil_schema_drop(admin);
        PQfinish(admin);
    }
    row_batches_free(&rb);
    return rc;
}

static void ceiling_print(const ceil_result *res, int n, uint64_t events, int batch)
{
    char a[32];
    printf("PostgreSQL ceiling (the worker's COPY + INSERT ... ON CONFLICT path, full schema, "
           "%d rows per transaction)\n", batch);
    printf("  %-6s %10s %9s %12s\n", "conns", "rows", "seconds", "rows/s");
    for (int i = 0; i < n; i++)
        printf("  %-6d %10" PRIu64 " %9.2f %12s\n", res[i].conns, res[i].rows, res[i].secs,
               fmt_count((uint64_t)(res[i].rows_per_s + 0.5), a, sizeof a));
    (void)events;
}

static void ceiling_json(FILE *f, const ceil_result *res, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s{\"conns\":%d,\"rows\":%" PRIu64 ",\"seconds\":%.4f,\"rows_per_s\":%.1f}",
                i ? "," : "", res[i].conns, res[i].rows, res[i].secs, res[i].rows_per_s);
    fputc(']', f);
}

int cmd_ceiling(const bench_opts *o)
{
    ceil_result res[MAX_CONNS_LIST];
    char err[1024] = "";

    memset(res, 0, sizeof res);
    if (ceiling_measure(o, res, err, sizeof err) < 0) {
        fprintf(stderr, "auditq-bench ceiling: %s\n", err);
        return EXIT_FAILED;
    }
    if (o->json) {
        printf("{\"command\":\"ceiling\",\"batch\":%d,\"seed\":%" PRIu64 ",\"results\":", o->pg_batch, o->seed);
        ceiling_json(stdout, res, o->nconns);
        printf("}\n");
    } else {
        ceiling_print(res, o->nconns, o->events, o->pg_batch);
    }
    return EXIT_OK;
}

/* ---- e2e: worker processes --------------------------------------------------- */

typedef struct worker_proc {
    pid_t pid;
    char log[256];
    int exited;
    int status;
    struct rusage ru;
} worker_proc;

/* The auditq-worker next to this binary, unless --worker names one. */
static void worker_path(const bench_opts *o, char *out, size_t len)
{
    char self[PATH_MAX - 16];
    ssize_t n;

    if (o->worker_path) {
        snprintf(out, len, "%s", o->worker_path);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, len, "auditq-worker");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s/auditq-worker", self);
}

static int worker_spawn(const bench_opts *o, const char *path, int index, worker_proc *w,
                        char *err, size_t errlen)
{
    char sets[8 + MAX_SETS][640];
    static char set_flag[] = "--set";
    char prog[PATH_MAX];
    char *argv[2 + 2 * (8 + MAX_SETS) + 1];
    int n = 0, a = 0;

    snprintf(prog, sizeof prog, "%s", path);

    snprintf(sets[n++], sizeof sets[0], "redis_url=%s", o->redis_url);
    snprintf(sets[n++], sizeof sets[0], "database_url=%s", o->database_url);
    snprintf(sets[n++], sizeof sets[0], "namespace=%s", o->ns);
    snprintf(sets[n++], sizeof sets[0], "threads=%d", o->worker_threads);
    snprintf(sets[n++], sizeof sets[0], "batch_size=%d", o->pg_batch);
    for (int i = 0; i < o->nworker_sets; i++)
        snprintf(sets[n++], sizeof sets[0], "%s", o->worker_sets[i]);
    argv[a++] = prog;
    for (int i = 0; i < n; i++) {
        argv[a++] = set_flag;
        argv[a++] = sets[i];
    }
    argv[a] = NULL;
    snprintf(w->log, sizeof w->log, "%s/auditq-bench-worker-%d-%d.log",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), index);
    w->pid = fork();
    if (w->pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (w->pid == 0) {
        int fd = open(w->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        execv(path, argv);
        fprintf(stderr, "auditq-bench: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return 0;
}

/* SIGTERM (the worker drains and exits), then reap with rusage. */
static void worker_stop(worker_proc *w, int timeout_ms)
{
    if (w->pid <= 0 || w->exited)
        return;
    kill(w->pid, SIGTERM);
    for (int waited = 0;; waited += 20) {
        pid_t p = wait4(w->pid, &w->status, WNOHANG, &w->ru);
        if (p == w->pid) {
            w->exited = 1;
            return;
        }
        if (waited >= timeout_ms) {
            kill(w->pid, SIGKILL);
            if (wait4(w->pid, &w->status, 0, &w->ru) == w->pid)
                w->exited = 1;
            return;
        }
        sleep_ms(20);
    }
}

/* 1 if the worker process has died. */
static int worker_dead(worker_proc *w)
{
    if (w->exited)
        return 1;
    if (wait4(w->pid, &w->status, WNOHANG, &w->ru) == w->pid)
        w->exited = 1;
    return w->exited;
}

/* ---- e2e: Redis counters ------------------------------------------------------- */

static long long redis_int(redisContext *c, const char *fmt, const char *key, const char *field)
{
    redisReply *r = field ? redisCommand(c, fmt, key, field) : redisCommand(c, fmt, key);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    if (r)
        freeReplyObject(r);
    return v;
}

static long long processed_total(redisContext *c, const aq_keys *k)
{
    return redis_int(c, "HGET %s %s", k->stats, "processed");
}

/* Events still queued, in flight, or waiting for a retry. */
static long long backlog(redisContext *c, const aq_keys *k)
{
    long long total = 0;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        long long v = redis_int(c, "LLEN %s", k->queue[p], NULL);
        if (v < 0)
            return -1;
        total += v;
    }
    long long r = redis_int(c, "ZCARD %s", k->retry, NULL);
    return r < 0 ? -1 : total + r;
}

/* ---- e2e: one phase ---------------------------------------------------------------- */

typedef struct phase_result {
    const char *name;
    uint64_t events;
    uint64_t rate;               /* target events/s; 0 = unpaced */
    double send_s;               /* producer: first send .. last auditq_send_async returned */
    double total_s;              /* first send .. the workers' processed count reached events */
    double eps;                  /* events / total_s */
    int64_t wall_from_us, wall_to_us;
    long long stored;            /* rows in PostgreSQL with occurred_at in the phase */
    double lat_ms[5];            /* p50 p90 p99 p99.9 max, received_at - occurred_at */
    lat_summary enqueue;         /* auditq_send_async call, us */
    int failed;
} phase_result;

/* Reads the phase's latency distribution and row count from PostgreSQL. */
static int phase_latency(PGconn *pg, phase_result *ph, char *err, size_t errlen)
{
    char from[32], to[32];
    const char *params[2] = { from, to };
    snprintf(from, sizeof from, "%lld", (long long)ph->wall_from_us);
    snprintf(to, sizeof to, "%lld", (long long)ph->wall_to_us);
    PGresult *r = PQexecParams(pg,
        "SELECT count(*), "
        "percentile_disc(ARRAY[0.5, 0.9, 0.99, 0.999]) WITHIN GROUP (ORDER BY d), max(d) "
        "FROM (SELECT extract(epoch FROM received_at - occurred_at) * 1000 AS d FROM audit_events "
        "      WHERE occurred_at >= to_timestamp($1::float8 / 1e6) "
        "        AND occurred_at <= to_timestamp($2::float8 / 1e6)) s",
        2, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        snprintf(err, errlen, "reading latencies: %s", PQerrorMessage(pg));
        goto out;
    }
    ph->stored = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (ph->stored > 0) {
        /* "{a,b,c,d}" */
        char *s = PQgetvalue(r, 0, 1);
        for (int i = 0; i < 4 && *s; i++) {
            s++;
            ph->lat_ms[i] = strtod(s, &s);
        }
        ph->lat_ms[4] = strtod(PQgetvalue(r, 0, 2), NULL);
    }
    rc = 0;
out:
    PQclear(r);
    return rc;
}

typedef struct e2e_ctx {
    const bench_opts *o;
    redisContext *rc;
    PGconn *pg;
    aq_keys keys;
    worker_proc *w;
    int nw;
} e2e_ctx;

static int phase_run(e2e_ctx *x, phase_result *ph, uint64_t events, uint64_t rate, char *err, size_t errlen)
{
    bench_opts po = *x->o;
    auditq *q = NULL;
    run_result *run = calloc(1, sizeof *run);
    int rc = -1;

    ph->events = events;
    ph->rate = rate;
    po.events = events;
    po.rate = rate;
    po.async = 1;
    po.progress = 0;
    /* Unpaced, the producer outruns the workers by design: a full buffer
     * must make it wait (full_policy=block), not fail, unless the user set
     * the wait. */
    int has_wait = 0;
    for (int i = 0; i < po.nsets; i++)
        has_wait |= strcmp(po.lib_sets[i][0], "enqueue_timeout_ms") == 0;
    if (!has_wait && po.nsets < MAX_SETS) {
        po.lib_sets[po.nsets][0] = "enqueue_timeout_ms";
        po.lib_sets[po.nsets][1] = "60000";
        po.nsets++;
    }
    if (run == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    long long p0 = processed_total(x->rc, &x->keys);
    if (p0 < 0) {
        snprintf(err, errlen, "reading %s: %s", x->keys.stats, x->rc->errstr);
        goto out;
    }
    if (bench_open(&po, &q) != EXIT_OK) {
        snprintf(err, errlen, "could not open the producer (see above)");
        goto out;
    }
    if (x->o->progress)
        fprintf(stderr, "e2e %s: sending %" PRIu64 " events%s...\n", ph->name, events,
                rate ? " (paced)" : "");
    ph->wall_from_us = clock_now_us();
    int64_t t0 = now_ns();
    if (producers_run(&po, q, run) < 0)
        goto out;
    ph->send_s = run->send_s;
    ph->enqueue = hist_summary(&run->lat);
    if (run->errors) {
        snprintf(err, errlen, "%" PRIu64 " of %" PRIu64 " sends failed; first: %s: %s", run->errors,
                 events, rc_name(run->first_rc), run->first_err);
        goto out;
    }
    if (auditq_flush(q, x->o->drain_timeout_ms) != AUDITQ_OK) {
        snprintf(err, errlen, "auditq_flush: %s", auditq_last_error());
        goto out;
    }
    /* Wait for the workers to have processed everything. */
    int64_t limit = t0 + (int64_t)x->o->drain_timeout_ms * 1000000 + (int64_t)(events / 1000) * 1000000000;
    int64_t next_print = now_ns();
    for (;;) {
        long long p = processed_total(x->rc, &x->keys);
        int64_t t = now_ns();
        if (p >= p0 + (long long)events)
            break;
        for (int i = 0; i < x->nw; i++) {
            if (worker_dead(&x->w[i])) {
                snprintf(err, errlen, "worker %d (pid %d) exited; its log: %s", i, (int)x->w[i].pid,
                         x->w[i].log);
                goto out;
            }
        }
        if (t > limit) {
            snprintf(err, errlen, "workers processed %lld of %" PRIu64 " events in time; logs: %s",
                     p < 0 ? -1 : p - p0, events, x->w[0].log);
            goto out;
        }
        if (x->o->progress && t >= next_print) {
            double s = (double)(t - t0) / 1e9;
            fprintf(stderr, "\re2e %s: written %lld/%" PRIu64 "  %.0f ev/s   ", ph->name, p - p0, events,
                    s > 0 ? (double)(p - p0) / s : 0.0);
            next_print = t + 500000000;
        }
        sleep_ms(5);
    }
    ph->total_s = (double)(now_ns() - t0) / 1e9;
    ph->wall_to_us = clock_now_us();
    ph->eps = (double)events / ph->total_s;
    if (x->o->progress)
        fprintf(stderr, "\re2e %s: written %" PRIu64 "/%" PRIu64 "  %.0f ev/s        \n", ph->name, events,
                events, ph->eps);
    if (phase_latency(x->pg, ph, err, errlen) < 0)
        goto out;
    if (ph->stored != (long long)events) {
        snprintf(err, errlen, "%s: %lld rows stored for %" PRIu64 " events sent (lost or duplicated; "
                 "or other writers share this database)", ph->name, ph->stored, events);
        goto out;
    }
    rc = 0;
out:
    if (q)
        auditq_close(q);
    free(run);
    ph->failed = rc != 0;
    return rc;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void e2e_report(const bench_opts *o, const phase_result *ph, int nph, const ceil_result *ceil,
                       int nceil, const worker_proc *w, int nw, double prod_cpu_s, long prod_rss_kb,
                       int flush_ms)
{
    char a[32];
    const ceil_result *best = NULL;
    for (int i = 0; i < nceil; i++)
        if (best == NULL || ceil[i].conns > best->conns)
            best = &ceil[i];

    if (o->json) {
        printf("{\"command\":\"e2e\",\"workers\":%d,\"worker_threads\":%d,\"batch\":%d,\"producer_threads\":%d,"
               "\"seed\":%" PRIu64 ",\"flush_interval_ms\":%d,\"phases\":[",
               o->workers, o->worker_threads, o->pg_batch, o->threads, o->seed, flush_ms);
        for (int i = 0; i < nph; i++) {
            printf("%s{\"name\":\"%s\",\"events\":%" PRIu64 ",\"rate\":%" PRIu64 ",\"send_s\":%.4f,"
                   "\"total_s\":%.4f,\"events_per_s\":%.1f,\"stored\":%lld,\"latency_ms\":{\"p50\":%.3f,"
                   "\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},\"enqueue_us\":",
                   i ? "," : "", ph[i].name, ph[i].events, ph[i].rate, ph[i].send_s, ph[i].total_s, ph[i].eps,
                   ph[i].stored, ph[i].lat_ms[0], ph[i].lat_ms[1], ph[i].lat_ms[2], ph[i].lat_ms[3],
                   ph[i].lat_ms[4]);
            json_lat(stdout, &ph[i].enqueue);
            putchar('}');
        }
        printf("],\"worker_processes\":[");
        for (int i = 0; i < nw; i++)
            printf("%s{\"cpu_s\":%.3f,\"max_rss_kb\":%ld,\"exit_status\":%d}", i ? "," : "",
                   tv_s(w[i].ru.ru_utime) + tv_s(w[i].ru.ru_stime), w[i].ru.ru_maxrss,
                   WIFEXITED(w[i].status) ? WEXITSTATUS(w[i].status) : 128 + WTERMSIG(w[i].status));
        printf("],\"producer\":{\"cpu_s\":%.3f,\"max_rss_kb\":%ld},\"ceiling\":", prod_cpu_s, prod_rss_kb);
        if (nceil)
            ceiling_json(stdout, ceil, nceil);
        else
            fputs("null", stdout);
        printf(",\"ratio_to_ceiling\":");
        if (best && nph > 0)
            printf("%.3f", ph[0].eps / best->rows_per_s);
        else
            fputs("null", stdout);
        printf("}\n");
        return;
    }
    printf("auditq-bench e2e  workers=%d x %d threads  batch=%d  producer threads=%d (async, "
           "flush_interval_ms=%d)\n", o->workers, o->worker_threads, o->pg_batch, o->threads, flush_ms);
    printf("  %-10s %9s %9s %10s %9s %9s %9s %9s %9s\n", "phase", "events", "rate", "ev/s", "lat p50",
           "p90", "p99", "p99.9", "max ms");
    for (int i = 0; i < nph; i++) {
        char r[32];
        if (ph[i].rate)
            fmt_count(ph[i].rate, r, sizeof r);
        else
            snprintf(r, sizeof r, "max");
        printf("  %-10s %9" PRIu64 " %9s %10s %9.1f %9.1f %9.1f %9.1f %9.1f\n", ph[i].name, ph[i].events, r,
               fmt_count((uint64_t)(ph[i].eps + 0.5), a, sizeof a), ph[i].lat_ms[0], ph[i].lat_ms[1],
               ph[i].lat_ms[2], ph[i].lat_ms[3], ph[i].lat_ms[4]);
    }
    printf("  (latency = received_at - occurred_at per stored row, ms; every phase's rows counted "
           "in PostgreSQL: all stored once)\n");
    for (int i = 0; i < nph; i++)
        printf("  enqueue %-10s auditq_send_async p50 %.1f us  p99 %.1f us  max %.1f us\n", ph[i].name,
               ph[i].enqueue.p50, ph[i].enqueue.p99, ph[i].enqueue.max);
    for (int i = 0; i < nw; i++)
        printf("  worker %d: cpu %.2f s  peak rss %.1f MiB  exit %d\n", i,
               tv_s(w[i].ru.ru_utime) + tv_s(w[i].ru.ru_stime), (double)w[i].ru.ru_maxrss / 1024.0,
               WIFEXITED(w[i].status) ? WEXITSTATUS(w[i].status) : 128 + WTERMSIG(w[i].status));
    printf("  producer: cpu %.2f s (incl. generating events)  peak rss %.1f MiB\n", prod_cpu_s,
           (double)prod_rss_kb / 1024.0);
    if (nceil) {
        ceiling_print(ceil, nceil, 0, o->pg_batch);
        if (best && nph > 0)
            printf("e2e / ceiling(%d conns) = %.2f  (target >= 0.70)\n", best->conns,
                   ph[0].eps / best->rows_per_s);
    }
    if (nph > 1)
        printf("latency p99 at %.0f%% load = %.1f ms  (target <= flush_interval_ms + 50 = %d ms)\n",
               o->load_fraction * 100, ph[1].lat_ms[2], flush_ms + 50);
}

/* flush_interval_ms the producer runs with (the library default unless set). */
static int producer_flush_ms(const bench_opts *o)
{
    int v = 100;
    for (int i = 0; i < o->nsets; i++)
        if (strcmp(o->lib_sets[i][0], "flush_interval_ms") == 0)
            v = (int)strtol(o->lib_sets[i][1], NULL, 10);
    return v;
}

int cmd_e2e(const bench_opts *o)
{
    e2e_ctx x = { .o = o };
    ceil_result ceil[MAX_CONNS_LIST];
    phase_result ph[2] = { { .name = "full" }, { .name = "latency" } };
    worker_proc w[16];
    int nceil = 0, nph = 0, rc = EXIT_FAILED;
    char err[1024] = "", path[PATH_MAX];
    aq_redis_target t;
    struct rusage ru0, ru1;

    memset(ceil, 0, sizeof ceil);
    memset(w, 0, sizeof w);
    worker_path(o, path, sizeof path);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "auditq-bench e2e: %s is not executable; build it (make) or pass --worker PATH\n",
                path);
        return EXIT_USAGE;
    }
    if (keys_init(&x.keys, o->ns) < 0) {
        fprintf(stderr, "auditq-bench e2e: bad --namespace '%s'\n", o->ns);
        return EXIT_USAGE;
    }
    if (redis_url_parse(o->redis_url, &t, err, sizeof err) < 0 ||
        (x.rc = redis_connect(&t, 2000, 10000, err, sizeof err, NULL)) == NULL)
        goto out;
    x.pg = pg_open(o->database_url, err, sizeof err);
    if (x.pg == NULL)
        goto out;
    long long bl = backlog(x.rc, &x.keys);
    if (bl != 0) {
        snprintf(err, sizeof err, "the queues of namespace '%s' are not empty (%lld jobs): e2e needs them "
                 "to itself; drain them or use another --namespace", o->ns, bl);
        goto out;
    }
    if (!o->no_ceiling) {
        if (ceiling_measure(o, ceil, err, sizeof err) < 0)
            goto out;
        nceil = o->nconns;
    }
    for (int i = 0; i < o->workers; i++) {
        if (worker_spawn(o, path, i, &w[i], err, sizeof err) < 0)
            goto out;
        x.nw = i + 1;
    }
    x.w = w;
    /* Registered = one heartbeat each. */
    for (int waited = 0;; waited += 50) {
        long long n = redis_int(x.rc, "ZCARD %s", x.keys.workers, NULL);
        if (n >= o->workers)
            break;
        for (int i = 0; i < x.nw; i++) {
            if (worker_dead(&w[i])) {
                snprintf(err, sizeof err, "worker %d exited at start-up; its log: %s", i, w[i].log);
                goto out;
            }
        }
        if (waited > 30000) {
            snprintf(err, sizeof err, "workers did not register within 30 s; logs: %s", w[0].log);
            goto out;
        }
        sleep_ms(50);
    }
    getrusage(RUSAGE_SELF, &ru0);
    if (phase_run(&x, &ph[0], o->events, 0, err, sizeof err) < 0)
        goto out;
    nph = 1;
    if (o->latency_seconds > 0) {
        uint64_t rate = (uint64_t)(ph[0].eps * o->load_fraction);
        if (rate < 1)
            rate = 1;
        if (phase_run(&x, &ph[1], rate * (uint64_t)o->latency_seconds, rate, err, sizeof err) < 0)
            goto out;
        nph = 2;
    }
    getrusage(RUSAGE_SELF, &ru1);
    for (int i = 0; i < x.nw; i++)
        worker_stop(&w[i], 60000);
    e2e_report(o, ph, nph, ceil, nceil, w, x.nw,
               tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime) + tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime),
               ru1.ru_maxrss, producer_flush_ms(o));
    rc = EXIT_OK;
    for (int i = 0; i < x.nw; i++)
        if (!WIFEXITED(w[i].status) || WEXITSTATUS(w[i].status) != 0)
            rc = EXIT_FAILED;
    for (int i = 0; i < x.nw; i++)
        unlink(w[i].log);
out:
    for (int i = 0; i < x.nw; i++)
        worker_stop(&w[i], 60000);
    if (err[0])
        fprintf(stderr, "auditq-bench e2e: %s\n", err);
    if (x.pg)
        PQfinish(x.pg);
    if (x.rc)
        redisFree(x.rc);
    return rc;
}
