/* bench_e2e.c -- auditq-bench `e2e`: events through the whole pipeline.
 *
 * DESIGN
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
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis.h>
#include <libpq-fe.h>

#include "bench.h"
#include "clock.h"
#include "keys.h"
#include "redisconn.h"

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
    x.pg = bench_pg_open(o->database_url, err, sizeof err);
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
