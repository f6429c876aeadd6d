/* bench_shards.c -- `auditq-bench shards`: the Redis side of the pipeline
 * over redis_shards shards, with PostgreSQL taken out (issue 16: the
 * scaling factor of shards measured, not claimed).
 *
 * Phase 1, produce: --threads producer threads send --events events
 * through one libauditq handle opened with the run's --set settings
 * (redis_shards, redis_shard_urls, redis_cluster, ...), sync or --async
 * as `enqueue` does; the phase ends when auditq_flush returned,
 * so every event is in Redis. Events/s = events / (send + flush).
 * Phase 2, drain: --threads threads each run the worker's own fetch and
 * settle scripts (worker/queue.c, batch --pg-batch) over every shard in
 * turn, exactly as a writer thread does, but settle at once instead of
 * writing to PostgreSQL, until every shard is empty. Events/s = events /
 * wall time. The worker registration each thread leaves is removed.
 * Around each phase the CPU time of every shard's redis-server (INFO cpu)
 * is read: the busiest server's seconds per event bound what one Redis
 * core can take, whatever the client machine does.
 * The caller (scripts/bench-shards.sh) runs it for 1, 2 and 4 shards on
 * as many redis-server processes and divides by the 1-shard figure of the
 * same run. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "config.h"
#include "queue.h"
#include "shards.h"

typedef struct drain_thread {
    pthread_t tid;
    int idx;
    aq_shards *sh;
    int batch;
    char wid[64];
    uint64_t done, batches;
    atomic_int *failed;
    char err[700];
} drain_thread;

static void *drain_main(void *arg)
{
    drain_thread *t = arg;
    int n = t->sh->n, empty = 0, s = t->idx % n;
    redisContext *c[AQ_SHARDS_MAX] = {0};
    uint64_t seq = 0;
    static const int weights[4] = {8, 4, 2, 1};
    queue_limits lim = {16777216, 1024, 10000};

    while (empty < n && !atomic_load(t->failed)) {
        char err[500];
        queue_batch b;
        if (!c[s] && !(c[s] = shard_connect(t->sh, s, 2000, 10000, err, sizeof err, NULL))) {
            snprintf(t->err, sizeof t->err, "shard %d: %s", s, err);
            atomic_store(t->failed, 1);
            break;
        }
        if (queue_fetch(c[s], &t->sh->keys[s], t->wid, t->idx, 0, weights, 0.5, t->batch, ++seq, &lim, &b, err,
                        sizeof err) != 0) {
            snprintf(t->err, sizeof t->err, "shard %d fetch: %s", s, err);
            atomic_store(t->failed, 1);
            break;
        }
        if (b.n == 0) {
            queue_batch_free(&b);
            empty++;
            s = (s + 1) % n;
            continue;
        }
        empty = 0;
        int fenced = 0;
        if (queue_settle(c[s], &t->sh->keys[s], t->wid, t->idx, b.token, b.n, NULL, 0, NULL, 0, 10000, &fenced,
                         NULL, err, sizeof err) != 0 || fenced) {
            snprintf(t->err, sizeof t->err, "shard %d settle: %s", s, fenced ? "fenced" : err);
            queue_batch_free(&b);
            atomic_store(t->failed, 1);
            break;
        }
        t->done += b.n;
        t->batches++;
        queue_batch_free(&b);
        s = (s + 1) % n;
    }
    for (int k = 0; k < n; k++) {
        char err[300];
        if (c[k]) {
            queue_deregister(c[k], &t->sh->keys[k], t->wid, err, sizeof err);
            redisFree(c[k]);
        }
    }
    return NULL;
}

/* Redis CPU seconds (INFO cpu: used_cpu_user + used_cpu_sys) of each
 * distinct server the shards live on (shard i's server is cpu[i]; shards
 * sharing a server read it once, the others get -1). 0 or -1. */
static int servers_cpu(aq_shards *sh, double *cpu)
{
    for (int i = 0; i < sh->n; i++) {
        char err[600];
        cpu[i] = -1;
        int dup = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = !sh->cl && sh->target[j].port == sh->target[i].port &&
                  strcmp(sh->target[j].host, sh->target[i].host) == 0;
        if (dup)
            continue;
        redisContext *c = shard_connect(sh, i, 2000, 10000, err, sizeof err, NULL);
        if (!c)
            return -1;
        redisReply *r = redisCommand(c, "INFO cpu");
        if (r && r->type == REDIS_REPLY_STRING) {
            const char *u = strstr(r->str, "used_cpu_user:"), *y = strstr(r->str, "used_cpu_sys:");
            if (u && y)
                cpu[i] = atof(u + 14) + atof(y + 13);
        }
        if (r)
            freeReplyObject(r);
        redisFree(c);
    }
    return 0;
}

/* The largest and the summed CPU seconds used between two readings. */
static void cpu_delta(const aq_shards *sh, const double *a, const double *b, double *busiest, double *sum)
{
    *busiest = *sum = 0;
    for (int i = 0; i < sh->n; i++) {
        if (a[i] < 0 || b[i] < 0)
            continue;
        double d = b[i] - a[i];
        *sum += d;
        if (d > *busiest)
            *busiest = d;
    }
}

/* The value of library setting key among the run's --set pairs (last
 * wins), or dflt. */
static const char *lib_set(const bench_opts *o, const char *key, const char *dflt)
{
    const char *v = dflt;
    for (int i = 0; i < o->nsets; i++)
        if (strcmp(o->lib_sets[i][0], key) == 0)
            v = o->lib_sets[i][1];
    return v;
}

int cmd_shards(const bench_opts *o)
{
    auditq *q = NULL;
    run_result r;
    aq_shards sh;
    char err[1400];
    int rc = bench_open(o, &q);
    if (rc != EXIT_OK)
        return rc;

    int n = atoi(lib_set(o, "redis_shards", "1"));
    if (shards_from_settings(&sh, o->ns, n, o->redis_url, "", "", "", "", lib_set(o, "redis_shard_urls", ""),
                             strcmp(lib_set(o, "redis_cluster", "off"), "on") == 0, err, sizeof err) != 0) {
        fprintf(stderr, "auditq-bench shards: %s\n", err);
        auditq_close(q);
        return EXIT_USAGE;
    }

    static double c0[AQ_SHARDS_MAX], c1[AQ_SHARDS_MAX], c2[AQ_SHARDS_MAX];
    if (servers_cpu(&sh, c0) != 0) {
        fprintf(stderr, "auditq-bench shards: cannot reach every shard's server to read INFO cpu\n");
        auditq_close(q);
        shards_free(&sh);
        return EXIT_FAILED;
    }
    /* ---- produce ---- */
    int64_t p0 = now_ns();
    if (producers_run(o, q, &r) != 0) {
        auditq_close(q);
        shards_free(&sh);
        return EXIT_FAILED;
    }
    auditq_rc frc = auditq_flush(q, o->drain_timeout_ms);
    double produce_s = (double)(now_ns() - p0) / 1e9;
    auditq_close(q);
    if (r.errors || frc != AUDITQ_OK) {
        fprintf(stderr, "auditq-bench shards: %llu sends failed (first: %s), flush: %s\n",
                (unsigned long long)r.errors, r.first_err, auditq_strerror(frc));
        shards_free(&sh);
        return EXIT_FAILED;
    }

    servers_cpu(&sh, c1);
    /* ---- drain ---- */
    int nt = o->threads;
    drain_thread *th = calloc((size_t)nt, sizeof *th);
    atomic_int failed = 0;
    if (!th) {
        shards_free(&sh);
        return EXIT_FAILED;
    }
    int64_t d0 = now_ns();
    for (int i = 0; i < nt; i++) {
        th[i].idx = i;
        th[i].sh = &sh;
        th[i].batch = o->pg_batch;
        th[i].failed = &failed;
        snprintf(th[i].wid, sizeof th[i].wid, "bench-shards:%d:%d", (int)getpid(), i);
        pthread_create(&th[i].tid, NULL, drain_main, &th[i]);
    }
    uint64_t drained = 0, batches = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i].tid, NULL);
        drained += th[i].done;
        batches += th[i].batches;
    }
    double drain_s = (double)(now_ns() - d0) / 1e9;
    err[0] = '\0';
    for (int i = 0; i < nt && !err[0]; i++)
        if (th[i].err[0])
            snprintf(err, sizeof err, "%s", th[i].err);
    free(th);
    servers_cpu(&sh, c2);
    double pb, ps, db, ds;
    cpu_delta(&sh, c0, c1, &pb, &ps);
    cpu_delta(&sh, c1, c2, &db, &ds);
    shards_free(&sh);
    if (failed) {
        fprintf(stderr, "auditq-bench shards: drain failed: %s\n", err);
        return EXIT_FAILED;
    }
    if (drained != r.ok) {
        fprintf(stderr, "auditq-bench shards: drained %llu events, %llu were sent: the queues held others "
                "(use an empty --namespace)\n", (unsigned long long)drained, (unsigned long long)r.ok);
        return EXIT_FAILED;
    }
    double prate = (double)r.ok / produce_s, drate = (double)drained / drain_s;
    if (o->json) {
        printf("{\"command\":\"shards\",\"shards\":%d,\"events\":%llu,\"threads\":%d,\"mode\":\"%s\","
               "\"produce_s\":%.3f,\"produce_events_per_s\":%.0f,\"drain_s\":%.3f,\"drain_events_per_s\":%.0f,"
               "\"drain_batches\":%llu,\"produce_redis_cpu_s\":{\"busiest\":%.3f,\"sum\":%.3f},"
               "\"drain_redis_cpu_s\":{\"busiest\":%.3f,\"sum\":%.3f}}\n",
               n, (unsigned long long)r.ok, nt, o->async ? "async" : "sync", produce_s, prate, drain_s, drate,
               (unsigned long long)batches, pb, ps, db, ds);
    } else {
        char a[32], b[32];
        printf("shards=%d events=%s threads=%d mode=%s\n", n, fmt_count(r.ok, a, sizeof a), nt,
               o->async ? "async" : "sync");
        printf("  produce  %8.3f s  %s events/s (send + flush, into Redis)\n", produce_s,
               fmt_count((uint64_t)prate, a, sizeof a));
        printf("  drain    %8.3f s  %s events/s (fetch + settle scripts, %s batches, no PostgreSQL)\n", drain_s,
               fmt_count((uint64_t)drate, b, sizeof b), fmt_count(batches, a, sizeof a));
        printf("  redis CPU produce %.3f s busiest server, %.3f s all; drain %.3f s busiest, %.3f s all\n", pb, ps,
               db, ds);
    }
    return EXIT_OK;
}
