/* bench_pg.c -- auditq-bench `ceiling`: what PostgreSQL alone can take.
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
 *            `e2e` (bench_e2e.c) measures this ceiling in the same run.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench.h"
#include "clock.h"
#include "codec.h"
#include "gen.h"
#include "migrations.h"
#include "pgconn.h"
#include "pgw_internal.h"
#include "../producer/event.h"
#include "redisconn.h"

#define CEIL_SCHEMA "auditq_bench_ceiling"

/* ---- PostgreSQL helpers ---------------------------------------------------- */

PGconn *bench_pg_open(const char *url, char *err, size_t errlen)
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
    PGconn *pg = bench_pg_open(url, err, errlen);
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

/* Measures every K in o->conns. res[] gets one entry per K. 0 or -1 (err). */
int ceiling_measure(const bench_opts *o, ceil_result *res, char *err, size_t errlen)
{
    row_batches rb;
    PGconn *admin = NULL;
    int rc = -1;

    if (o->progress)
        fprintf(stderr, "ceiling: generating %" PRIu64 " rows...\n", o->events);
    if (row_batches_make(&rb, o->seed, (size_t)o->events, (size_t)o->pg_batch, err, errlen) < 0)
        return -1;
    admin = bench_pg_open(o->database_url, err, errlen);
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

void ceiling_print(const ceil_result *res, int n, uint64_t events, int batch)
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

void ceiling_json(FILE *f, const ceil_result *res, int n)
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
