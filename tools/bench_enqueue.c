/* bench_enqueue.c -- `auditq-bench enqueue`: times auditq_send /
 * auditq_send_async calls into Redis (producers_run), against the
 * yardstick of bare LPUSH round trips on one connection (ref_run), and
 * reports both as a table or one JSON object. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis.h>

#include "auditq.h"
#include "bench.h"
#include "gen.h"
#include "redisconn.h"

/* ---- reference: bare LPUSH ------------------------------------------------- */

typedef struct ref_result {
    int done;                    /* measured */
    uint64_t count;
    double wall_s;
    hist lat;
} ref_result;

/* K LPUSH round trips of a REF_VALUE_BYTES value to "{NS}:bench:ref" on one
 * connection, then DEL. Returns 0, or -1 with the reason in err. */
static int ref_run(const bench_opts *o, ref_result *r, char *err, size_t errlen)
{
    int rc = -1;
    aq_redis_target t;
    redisContext *c = NULL;
    redisReply *rep = NULL;
    char key[256], value[REF_VALUE_BYTES];
    gen g;

    hist_init(&r->lat);
    r->count = o->ref_count;
    if (redis_url_parse(o->redis_url, &t, err, errlen) < 0)
        goto out;
    c = redis_connect(&t, 2000, 5000, err, errlen, NULL);
    if (c == NULL)
        goto out;
    snprintf(key, sizeof key, "{%s}:bench:ref", o->ns);
    /* Printable bytes, like the text-heavy jobs; content does not matter
     * to Redis but keeps MONITOR output readable. */
    gen_init(&g, o->seed);
    for (size_t i = 0; i < sizeof value; i++)
        value[i] = (char)('a' + gen_u64(&g) % 26);

    rep = redisCommand(c, "DEL %b", key, strlen(key));
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        goto cmd_err;
    freeReplyObject(rep);
    rep = NULL;

    int64_t w0 = now_ns();
    for (uint64_t k = 0; k < o->ref_count; k++) {
        int64_t s0 = now_ns();
        rep = redisCommand(c, "LPUSH %b %b", key, strlen(key), value, sizeof value);
        int64_t s1 = now_ns();
        if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
            goto cmd_err;
        freeReplyObject(rep);
        rep = NULL;
        hist_add(&r->lat, (uint64_t)(s1 - s0));
    }
    r->wall_s = (double)(now_ns() - w0) / 1e9;

    rep = redisCommand(c, "DEL %b", key, strlen(key));
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        goto cmd_err;
    r->done = 1;
    rc = 0;
    goto out;
cmd_err:
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        snprintf(err, errlen, "reference LPUSH: Redis error: %s", rep->str);
    else if (rep != NULL)
        snprintf(err, errlen, "reference LPUSH: unexpected reply type %d", rep->type);
    else
        snprintf(err, errlen, "reference LPUSH: %s", c->errstr);
out:
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    return rc;
}

/* ---- enqueue ----------------------------------------------------------------- */

typedef struct enqueue_report {
    const bench_opts *o;
    run_result *run;
    ref_result *ref;             /* NULL: skipped */
    const char *ref_err;         /* non-empty: reference failed */
    double drain_s;              /* async only */
    auditq_rc drain_rc;
    char drain_err[512];
    auditq_rc close_rc;
    auditq_stats stats;
    int have_stats;
} enqueue_report;

/* Async "into Redis" rate: events Redis acknowledged (library counter; an
 * accepted-but-undelivered event does not count) over send + drain time. */
static double into_redis_eps(const enqueue_report *e)
{
    double total = e->run->send_s + e->drain_s;
    uint64_t acked = e->have_stats ? e->stats.sent_async : e->run->ok;
    return total > 0 ? (double)acked / total : 0.0;
}

static void report_table(const enqueue_report *e)
{
    const bench_opts *o = e->o;
    const run_result *r = e->run;
    lat_summary a = hist_summary(&r->lat);
    char b1[32], b2[32];

    printf("auditq-bench enqueue  events=%" PRIu64 " mode=%s threads=%d", o->events,
           o->async ? "async" : "sync", o->threads);
    if (o->rate > 0)
        printf(" rate=%" PRIu64 "/s", o->rate);
    printf("\n");
    printf("             %9s %9s %9s %9s %9s %10s\n", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "ev/s");
    printf("%-12s %9.1f %9.1f %9.1f %9.1f %9.1f %10s\n", o->async ? "auditq async" : "auditq",
           a.p50, a.p90, a.p99, a.p999, a.max,
           fmt_count((uint64_t)((double)r->events / r->send_s + 0.5), b1, sizeof b1));
    if (e->ref && e->ref->done) {
        lat_summary l = hist_summary(&e->ref->lat);
        printf("%-12s %9.1f %9.1f %9.1f %9.1f %9.1f %10s\n", "lpush ref", l.p50, l.p90, l.p99, l.p999,
               l.max, fmt_count((uint64_t)((double)e->ref->count / e->ref->wall_s + 0.5), b2, sizeof b2));
        if (l.p99 > 0)
            printf("p99 ratio auditq/lpush: %.2f\n", a.p99 / l.p99);
    } else if (e->ref_err && *e->ref_err) {
        printf("lpush ref    failed: %s\n", e->ref_err);
    }
    if (o->pool)
        printf("wall %.3f s (send)   events: a pool of %d per thread, built before the clock started\n",
               r->send_s, o->pool);
    else
        printf("wall %.3f s (send)   generator %.2f us/event (outside the timed call)\n", r->send_s,
               r->gen_us_per_event);
    if (o->async) {
        printf("drain (auditq_flush) %.1f ms   into Redis: %s ev/s", e->drain_s * 1000.0,
               fmt_count((uint64_t)(into_redis_eps(e) + 0.5), b1, sizeof b1));
        if (e->drain_rc != AUDITQ_OK)
            printf("   FLUSH FAILED: %s: %s", rc_name(e->drain_rc), e->drain_err);
        printf("\n");
    }
    printf("by priority:");
    for (int k = 0; k < 4; k++)
        printf(" %s=%" PRIu64, PRIO_NAMES[k], r->by_prio[k]);
    printf("   errors: %" PRIu64, r->errors);
    if (r->errors) {
        printf(" (");
        const char *sep = "";
        for (int k = 0; k < RC_SLOTS; k++) {
            if (r->err_by_rc[k]) {
                printf("%s%s=%" PRIu64, sep, rc_name(k), r->err_by_rc[k]);
                sep = " ";
            }
        }
        printf(")");
    }
    printf("\n");
    if (e->have_stats && o->async)
        printf("library: queued_async=%" PRIu64 " sent_async=%" PRIu64 " rejected_full=%" PRIu64
               " redis_retries=%" PRIu64 "\n", e->stats.queued_async, e->stats.sent_async,
               e->stats.rejected_full, e->stats.redis_retries);
    if (r->errors)
        printf("first error: %s (%s): %s\n", rc_name(r->first_rc),
               auditq_strerror((auditq_rc)r->first_rc), r->first_err);
    if (e->close_rc != AUDITQ_OK)
        printf("auditq_close: %s (%s)\n", rc_name(e->close_rc), auditq_strerror(e->close_rc));
}

static void report_json(const enqueue_report *e)
{
    const bench_opts *o = e->o;
    const run_result *r = e->run;
    lat_summary a = hist_summary(&r->lat);
    FILE *f = stdout;

    fprintf(f, "{\"command\":\"enqueue\",\"mode\":\"%s\",\"events\":%" PRIu64 ",\"threads\":%d,"
               "\"rate\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"pool\":%d,\"namespace\":",
            o->async ? "async" : "sync", o->events, o->threads, o->rate, o->seed, o->pool);
    json_str(f, o->ns);
    fprintf(f, ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"errors_by_code\":{", r->ok, r->errors);
    const char *sep = "";
    for (int k = 0; k < RC_SLOTS; k++) {
        if (r->err_by_rc[k]) {
            fputs(sep, f);
            json_str(f, rc_name(k));
            fprintf(f, ":%" PRIu64, r->err_by_rc[k]);
            sep = ",";
        }
    }
    fprintf(f, "},\"first_error\":");
    if (r->errors)
        json_str(f, r->first_err);
    else
        fputs("null", f);
    fprintf(f, ",\"send_s\":%.6f,\"throughput_eps\":%.1f,\"gen_us_per_event\":%.3f,\"latency_us\":",
            r->send_s, (double)r->events / r->send_s, r->gen_us_per_event);
    json_lat(f, &a);
    fprintf(f, ",\"by_priority\":{");
    for (int k = 0; k < 4; k++)
        fprintf(f, "%s\"%s\":%" PRIu64, k ? "," : "", PRIO_NAMES[k], r->by_prio[k]);
    fputc('}', f);
    if (o->async) {
        fprintf(f, ",\"drain_ms\":%.3f,\"drain_ok\":%s,\"into_redis_eps\":%.1f", e->drain_s * 1000.0,
                e->drain_rc == AUDITQ_OK ? "true" : "false", into_redis_eps(e));
        fputs(",\"drain_error\":", f);
        if (e->drain_rc != AUDITQ_OK)
            json_str(f, e->drain_err);
        else
            fputs("null", f);
    }
    if (e->have_stats)
        fprintf(f, ",\"library\":{\"sent_sync\":%" PRIu64 ",\"queued_async\":%" PRIu64
                   ",\"sent_async\":%" PRIu64 ",\"rejected_full\":%" PRIu64 ",\"errors\":%" PRIu64
                   ",\"redis_retries\":%" PRIu64 "}", e->stats.sent_sync, e->stats.queued_async,
                e->stats.sent_async, e->stats.rejected_full, e->stats.errors, e->stats.redis_retries);
    fprintf(f, ",\"ref\":");
    if (e->ref && e->ref->done) {
        lat_summary l = hist_summary(&e->ref->lat);
        fprintf(f, "{\"count\":%" PRIu64 ",\"value_bytes\":%d,\"wall_s\":%.6f,\"throughput_eps\":%.1f,\"latency_us\":",
                e->ref->count, REF_VALUE_BYTES, e->ref->wall_s, (double)e->ref->count / e->ref->wall_s);
        json_lat(f, &l);
        fprintf(f, "},\"p99_ratio\":");
        if (l.p99 > 0)
            fprintf(f, "%.3f", a.p99 / l.p99);
        else
            fputs("null", f);
    } else if (e->ref_err && *e->ref_err) {
        fputs("{\"error\":", f);
        json_str(f, e->ref_err);
        fputs("},\"p99_ratio\":null", f);
    } else {
        fputs("null,\"p99_ratio\":null", f);
    }
    fprintf(f, ",\"close_ok\":%s}\n", e->close_rc == AUDITQ_OK ? "true" : "false");
}

int cmd_enqueue(const bench_opts *o)
{
    int rc = EXIT_FAILED;
    auditq *q = NULL;
    run_result *run = calloc(1, sizeof *run);
    ref_result *ref = calloc(1, sizeof *ref);
    char ref_err[512] = "";
    enqueue_report e = { .o = o, .run = run, .drain_rc = AUDITQ_OK, .close_rc = AUDITQ_OK };

    if (run == NULL || ref == NULL) {
        fprintf(stderr, "auditq-bench: out of memory\n");
        goto out;
    }
    /* Reference first: same server, same moment, before our lists grow. */
    if (!o->no_ref) {
        if (ref_run(o, ref, ref_err, sizeof ref_err) == 0)
            e.ref = ref;
        else
            fprintf(stderr, "auditq-bench: %s\n", ref_err);
        e.ref_err = ref_err;
    }

    rc = bench_open(o, &q);
    if (rc != EXIT_OK)
        goto out;
    rc = EXIT_FAILED;
    if (producers_run(o, q, run) < 0)
        goto out;

    if (o->async) {
        int64_t d0 = now_ns();
        e.drain_rc = auditq_flush(q, o->drain_timeout_ms);
        e.drain_s = (double)(now_ns() - d0) / 1e9;
        if (e.drain_rc != AUDITQ_OK)
            snprintf(e.drain_err, sizeof e.drain_err, "%s", auditq_last_error());
    }
    e.have_stats = auditq_get_stats(q, &e.stats) == AUDITQ_OK;
    e.close_rc = auditq_close(q);
    q = NULL;

    if (o->json)
        report_json(&e);
    else
        report_table(&e);
    fflush(stdout);

    if (run->errors == 0 && e.drain_rc == AUDITQ_OK && e.close_rc == AUDITQ_OK && ref_err[0] == '\0')
        rc = EXIT_OK;
    if (run->errors)
        fprintf(stderr, "auditq-bench: %" PRIu64 " of %" PRIu64 " sends failed; first: %s: %s\n",
                run->errors, run->events, rc_name(run->first_rc), run->first_err);
out:
    if (q)
        auditq_close(q);
    free(run);
    free(ref);
    return rc;
}
