/* ctl_stats.c -- `auditqctl stats [--json]`: queue depths, oldest-job ages,
 * in-flight / retry / dead counts, live workers and the pipeline totals.
 *
 * Everything is read from Redis (docs/PROTOCOL.md); the worker keeps the
 * totals in {ns}:stats, so the numbers cover every worker process. Ages are
 * measured against Redis' clock (TIME), the same clock workers use.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "ctl.h"
#include "keys.h"
#include "redisconn.h"

typedef struct stats {
    long long depth[AQ_PRIORITIES];
    long long oldest_ms[AQ_PRIORITIES]; /* -1: empty or undecodable */
    long long inflight, retry, dead, workers, workers_registered;
    long long processed, failed, retried, recovered, dead_lettered, dead_trimmed;
    long long now_ms;
} stats;

static long long reply_int(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

/* Appends commands, then reads exactly that many replies into out[]. */
static int pipeline(redisContext *c, int n, redisReply **out)
{
    for (int i = 0; i < n; i++) {
        if (redisGetReply(c, (void **)&out[i]) != REDIS_OK) {
            for (int j = 0; j < i; j++)
                freeReplyObject(out[j]);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        if (out[i]->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "auditqctl stats: Redis error: %s\n", out[i]->str);
            for (int j = 0; j < n; j++)
                freeReplyObject(out[j]);
            return -1;
        }
    }
    return 0;
}

static int collect(redisContext *c, const aq_keys *k, const aq_config *cfg, stats *s)
{
    redisReply *r[16];
    int n = 0;

    memset(s, 0, sizeof *s);
    redisAppendCommand(c, "TIME");
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        redisAppendCommand(c, "LLEN %s", k->queue[p]);
        redisAppendCommand(c, "LINDEX %s -1", k->queue[p]);
    }
    redisAppendCommand(c, "ZCARD %s", k->retry);
    redisAppendCommand(c, "LLEN %s", k->dead);
    redisAppendCommand(c, "HGETALL %s", k->stats);
    redisAppendCommand(c, "ZRANGE %s 0 -1 WITHSCORES", k->workers);
    n = 1 + 2 * AQ_PRIORITIES + 4;
    if (pipeline(c, n, r) != 0)
        return -1;

    if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements == 2)
        s->now_ms = reply_int(r[0]->element[0]) * 1000 + reply_int(r[0]->element[1]) / 1000;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        redisReply *len = r[1 + 2 * p], *oldest = r[2 + 2 * p];
        aq_job j;
        char err[160];
        s->depth[p] = reply_int(len);
        s->oldest_ms[p] = -1;
        if (oldest->type == REDIS_REPLY_STRING &&
            codec_decode(oldest->str, oldest->len, (size_t)cfg->max_job_bytes, &j, err, sizeof err) == 0) {
            long long age = s->now_ms - j.occurred_at_us / 1000;
            s->oldest_ms[p] = age < 0 ? 0 : age;
        }
    }
    int i = 1 + 2 * AQ_PRIORITIES;
    s->retry = reply_int(r[i++]);
    s->dead = reply_int(r[i++]);
    redisReply *h = r[i++];
    for (size_t e = 0; h->type == REDIS_REPLY_ARRAY && e + 1 < h->elements; e += 2) {
        const char *name = h->element[e]->str;
        long long v = reply_int(h->element[e + 1]);
        if (!strcmp(name, "processed")) s->processed = v;
        else if (!strcmp(name, "failed")) s->failed = v;
        else if (!strcmp(name, "retried")) s->retried = v;
        else if (!strcmp(name, "recovered")) s->recovered = v;
        else if (!strcmp(name, "dead_lettered")) s->dead_lettered = v;
        else if (!strcmp(name, "dead_trimmed")) s->dead_trimmed = v;
    }
    redisReply *wz = r[i++];
    /* In-flight: each registered worker's hash names its in-flight lists
     * (fields src:<thread>); count them, live or not yet recovered. */
    size_t nw = wz->type == REDIS_REPLY_ARRAY ? wz->elements / 2 : 0;
    s->workers_registered = (long long)nw;
    for (size_t w = 0; w < nw; w++) {
        const char *id = wz->element[2 * w]->str;
        long long hb = reply_int(wz->element[2 * w + 1]);
        if (s->now_ms - hb <= cfg->heartbeat_timeout_ms)
            s->workers++;
        redisReply *f = redisCommand(c, "HKEYS %s%s", k->worker_prefix, id);
        if (!f)
            goto fail;
        for (size_t e = 0; f->type == REDIS_REPLY_ARRAY && e < f->elements; e++) {
            if (strncmp(f->element[e]->str, "src:", 4) != 0)
                continue;
            redisReply *l = redisCommand(c, "LLEN %s%s:%s", k->inflight_prefix, id, f->element[e]->str + 4);
            if (!l) {
                freeReplyObject(f);
                goto fail;
            }
            s->inflight += reply_int(l);
            freeReplyObject(l);
        }
        freeReplyObject(f);
    }
    for (int x = 0; x < n; x++)
        freeReplyObject(r[x]);
    return 0;
fail:
    for (int x = 0; x < n; x++)
        freeReplyObject(r[x]);
    return -1;
}

static void fmt_count(char *out, size_t n, long long v)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", v < 0 ? -v : v), o = 0;
    if (v < 0 && (size_t)o + 1 < n)
        out[o++] = '-';
    for (int i = 0; i < len && (size_t)o + 1 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && (size_t)o + 2 < n)
            out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = '\0';
}

static void fmt_age(char *out, size_t n, long long ms)
{
    if (ms < 0)
        snprintf(out, n, "-");
    else if (ms < 1000)
        snprintf(out, n, "%lld ms", ms);
    else if (ms < 120000)
        snprintf(out, n, "%.1f s", (double)ms / 1000.0);
    else if (ms < 7200000)
        snprintf(out, n, "%.1f min", (double)ms / 60000.0);
    else
        snprintf(out, n, "%.1f h", (double)ms / 3600000.0);
}

static void print_json(const stats *s, const char *ns)
{
    static const char *const names[AQ_PRIORITIES] = {"critical", "high", "normal", "low"};
    printf("{\"namespace\":\"%s\",\"time_ms\":%lld,\"queues\":{", ns, s->now_ms);
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        printf("%s\"%s\":{\"depth\":%lld,\"oldest_age_ms\":", p ? "," : "", names[p], s->depth[p]);
        if (s->oldest_ms[p] < 0)
            printf("null}");
        else
            printf("%lld}", s->oldest_ms[p]);
    }
    printf("},\"inflight\":%lld,\"retry\":%lld,\"dead\":%lld,\"workers\":%lld,"
           "\"workers_registered\":%lld,\"processed\":%lld,\"failed\":%lld,\"retried\":%lld,"
           "\"recovered\":%lld,\"dead_lettered\":%lld,\"dead_trimmed\":%lld}\n",
           s->inflight, s->retry, s->dead, s->workers, s->workers_registered, s->processed,
           s->failed, s->retried, s->recovered, s->dead_lettered, s->dead_trimmed);
}

static void print_table(const stats *s, const char *ns)
{
    static const char *const names[AQ_PRIORITIES] = {"critical", "high", "normal", "low"};
    char a[32], b[32], c[32];
    long long total = 0;

    printf("auditq  namespace=%s\n\n", ns);
    printf("%-10s %12s %12s\n", "queue", "depth", "oldest");
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        fmt_count(a, sizeof a, s->depth[p]);
        fmt_age(b, sizeof b, s->oldest_ms[p]);
        printf("%-10s %12s %12s\n", names[p], a, b);
        total += s->depth[p];
    }
    fmt_count(a, sizeof a, total);
    printf("%-10s %12s\n\n", "total", a);
    fmt_count(a, sizeof a, s->inflight);
    fmt_count(b, sizeof b, s->retry);
    fmt_count(c, sizeof c, s->dead);
    printf("in flight %s   retry %s   dead %s\n", a, b, c);
    printf("workers   %lld live", s->workers);
    if (s->workers_registered > s->workers)
        printf(" (%lld silent, awaiting recovery)", s->workers_registered - s->workers);
    printf("\n\n");
    fmt_count(a, sizeof a, s->processed);
    fmt_count(b, sizeof b, s->failed);
    printf("processed %s   failed %s", a, b);
    fmt_count(a, sizeof a, s->retried);
    fmt_count(b, sizeof b, s->recovered);
    fmt_count(c, sizeof c, s->dead_lettered);
    printf("   retried %s   recovered %s   dead-lettered %s", a, b, c);
    if (s->dead_trimmed)
        printf("   dead letters trimmed by dead_letter_max %lld", s->dead_trimmed);
    printf("\n");
}

int ctl_stats(const aq_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int json = 0, o;
    aq_keys k;
    aq_redis_target t;
    char err[512];
    stats s;

    optind = 1;
    while ((o = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
        if (o == 'j')
            json = 1;
        else {
            fprintf(stderr, "auditqctl stats: unknown option; see 'auditqctl stats --help'\n");
            return CTL_USAGE;
        }
    }
    if (keys_init(&k, cfg->namespace_) != 0 || redis_url_parse(cfg->redis_url, &t, err, sizeof err) != 0) {
        fprintf(stderr, "auditqctl stats: %s\n", err);
        return CTL_USAGE;
    }
    redisContext *c = redis_connect(&t, cfg->redis_connect_timeout_ms, cfg->redis_timeout_ms, err,
                                    sizeof err, NULL);
    if (!c) {
        fprintf(stderr, "auditqctl stats: %s; check redis_url / AUDITQ_REDIS_URL\n", err);
        return CTL_FAILED;
    }
    if (collect(c, &k, cfg, &s) != 0) {
        fprintf(stderr, "auditqctl stats: reading from Redis failed: %s\n", c->err ? c->errstr : "see above");
        redisFree(c);
        return CTL_FAILED;
    }
    redisFree(c);
    if (json)
        print_json(&s, cfg->namespace_);
    else
        print_table(&s, cfg->namespace_);
    return CTL_OK;
}
