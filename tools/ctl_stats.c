/* ctl_stats.c -- `auditqctl stats [--json] [--watch SECS [--count K]]`:
 * queue depths, oldest-job ages (the lag), in-flight / retry / dead counts,
 * live workers and the pipeline totals; with --watch, a live view with
 * rates.
 *
 * Everything is read from Redis (docs/PROTOCOL.md); the workers keep the
 * totals in {ns}:stats, so the numbers cover every worker process. Ages are
 * measured against Redis' clock (TIME), the same clock workers use.
 *
 * Rates. Nothing counts enqueues (producers only LPUSH), so the input rate
 * is derived from a conservation law between two samples: every job that
 * arrived is still waiting (queues, in flight, retry set) or has left
 * (processed, dead-lettered); jobs put back from the dead list by
 * `dlq requeue` re-enter without being new:
 *   in = d(queued + in flight + retry) + d(processed) + d(dead_lettered)
 *        - d(requeued)
 * Each sample is one atomic snapshot (a read-only script), so this holds
 * exactly; only a redelivered duplicate (counted again in processed) or a
 * hand-edited key can make it negative, which is shown as 0.
 * written = d(processed) / elapsed, elapsed taken from Redis' clock.
 *
 * Watch loop. SIGINT/SIGTERM are blocked except while sleeping in pselect,
 * so a signal can neither be lost between the flag test and the sleep nor
 * interrupt a Redis call half-way; the loop then ends and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "ctl.h"
#include "ctl_common.h"
#include "shards.h"
#include "redisconn.h"

const char ctl_stats_synopsis[] =
    "stats [--json] [--watch SECS]    show queue depths and worker statistics";
const char ctl_stats_help[] =
    "Usage: auditqctl [OPTIONS] stats [--json] [--watch SECS [--count K]]\n"
    "\n"
    "Shows the Redis queue depths per priority with the age of the oldest\n"
    "waiting job (the lag), jobs in flight, in the retry set and dead-lettered,\n"
    "live workers, and the totals all workers publish in {ns}:stats.\n"
    "\n"
    "  --json          print one JSON object instead of a table\n"
    "  --watch SECS    refresh every SECS seconds (0.2 to 86400, fractions\n"
    "                  allowed) and add rates: events/s in (enqueued) and\n"
    "                  events/s written to PostgreSQL. On a terminal the view\n"
    "                  is redrawn in place; otherwise one block is printed per\n"
    "                  refresh (with --json: one object per line). Stops on\n"
    "                  Ctrl-C or SIGTERM. If Redis becomes unreachable the\n"
    "                  view shows the error and keeps trying.\n"
    "  --count K       with --watch: stop after K refreshes\n"
    "  -h, --help      show this help\n"
    "\n"
    "With redis_shards > 1 every number is the shards added up (the oldest age:\n"
    "the oldest of them), then one line per shard: its server, queued, in\n"
    "flight, dead, processed (JSON: \"shards\": [{shard, server, queued,\n"
    "inflight, retry, dead, processed, dead_lettered}]).\n"
    "\n"
    "A Redis key of the wrong type (someone SET a queue, a stray tool wrote\n"
    "there) is named, with its type and the fix, after the numbers (JSON:\n"
    "\"wrong_type_keys\"); the numbers read from it show as ? (JSON: null) and\n"
    "every other number is printed.\n"
    "\n"
    "Exit status: 0 ok (also when a watch is stopped by a signal), 1 Redis\n"
    "unreachable at the first sample or error, or a key of the wrong type (the\n"
    "numbers are printed all the same), 2 usage error.\n";

#define STATS_COLS 80
#define STATS_WRONG_MAX 16
/* What auditqctl stats says a wrong-typed key costs (redis_explain_wrongtype). */
#define STATS_WRONG_EFFECT "its numbers show as unknown here; the worker log says what waits meanwhile"

static const char *const prio_names[AQ_PRIORITIES] = {"critical", "high", "normal", "low"};

typedef struct stats {
    long long depth[AQ_PRIORITIES];
    long long oldest_ms[AQ_PRIORITIES]; /* -1: empty or undecodable */
    long long inflight, retry, dead, workers, workers_registered;
    long long processed, failed, retried, recovered, dead_lettered, dead_trimmed;
    long long requeued, dead_purged;
    long long now_ms;
    /* Keys of the wrong type. Their numbers above are -1 (unknown): a
     * queue's depth, retry, dead, workers, inflight (any worker hash or
     * in-flight list), and with counters_unknown the {ns}:stats totals. */
    int counters_unknown;
    size_t nwrong;
    struct {
        char key[AQ_KEY_MAX + 200];
        char type[16];
        char expected[8];
    } wrong[STATS_WRONG_MAX];
} stats;

/* Rates between two samples; valid = 0 on the first sample. */
typedef struct rates {
    int valid;
    double in_per_s, written_per_s;
} rates;

/* One consistent snapshot, taken atomically by a read-only script, so the
 * conservation law behind the rates holds exactly between two samples (a
 * job is never counted both in its queue and in flight). In flight = the
 * lists every registered worker's hash names in its src:<thread> fields
 * (live or not yet recovered); like the worker's recover script, this one
 * builds those key names from prefixes, all under the {ns} tag.
 * Every key's type is checked before it is read: a key of the wrong type
 * is listed in `wrong` and its numbers are -1 (nil for the oldest job), so
 * one bad key never hides the others' numbers. TYPE refused by an older
 * ACL (docs/SECURITY.md) skips the check.
 * KEYS: q0..q3, retry, dead, stats, workers.  ARGV: worker prefix, in-flight
 * prefix.  Returns {sec, usec, (len, oldest) x 4, retry, dead,
 * {stats hash} or -1, {workers with scores} or -1, in flight,
 * {key, type, expected, ...}}. */
static const char snapshot_src[] =
    "local wrong = {}\n"
    "local function ok(k, want)\n"
    "  local t = redis.pcall('TYPE', k)['ok']\n"
    "  if not t or t == 'none' or t == want then return true end\n"
    "  wrong[#wrong + 1] = k\n"
    "  wrong[#wrong + 1] = t\n"
    "  wrong[#wrong + 1] = want\n"
    "  return false\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local out = {t[1], t[2]}\n"
    "for p = 1, 4 do\n"
    "  if ok(KEYS[p], 'list') then\n"
    "    out[#out + 1] = redis.call('LLEN', KEYS[p])\n"
    "    out[#out + 1] = redis.call('LINDEX', KEYS[p], -1)\n"
    "  else\n"
    "    out[#out + 1] = -1\n"
    "    out[#out + 1] = false\n"
    "  end\n"
    "end\n"
    "out[#out + 1] = ok(KEYS[5], 'zset') and redis.call('ZCARD', KEYS[5]) or -1\n"
    "out[#out + 1] = ok(KEYS[6], 'list') and redis.call('LLEN', KEYS[6]) or -1\n"
    "out[#out + 1] = ok(KEYS[7], 'hash') and redis.call('HGETALL', KEYS[7]) or -1\n"
    "local ws, workers_ok = {}, ok(KEYS[8], 'zset')\n"
    "if workers_ok then\n"
    "  ws = redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES')\n"
    "  out[#out + 1] = ws\n"
    "else\n"
    "  out[#out + 1] = -1\n"
    "end\n"
    "local inflight, known = 0, workers_ok\n"
    "for i = 1, #ws, 2 do\n"
    "  local wk = ARGV[1] .. ws[i]\n"
    "  if ok(wk, 'hash') then\n"
    "    for _, f in ipairs(redis.call('HKEYS', wk)) do\n"
    "      if string.sub(f, 1, 4) == 'src:' then\n"
    "        local ik = ARGV[2] .. ws[i] .. ':' .. string.sub(f, 5)\n"
    "        if ok(ik, 'list') then\n"
    "          inflight = inflight + redis.call('LLEN', ik)\n"
    "        else\n"
    "          known = false\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    known = false\n"
    "  end\n"
    "end\n"
    "out[#out + 1] = known and inflight or -1\n"
    "out[#out + 1] = wrong\n"
    "return out\n";

enum { SNAP_ELEMENTS = 2 + 2 * AQ_PRIORITIES + 6 };

static int collect(redisContext *c, const aq_keys *k, const aq_config *cfg, stats *s, char *err,
                   size_t errlen)
{
    static const struct { const char *name; size_t off; } fields[] = {
        {"processed", offsetof(stats, processed)},
        {"failed", offsetof(stats, failed)},
        {"retried", offsetof(stats, retried)},
        {"recovered", offsetof(stats, recovered)},
        {"dead_lettered", offsetof(stats, dead_lettered)},
        {"dead_trimmed", offsetof(stats, dead_trimmed)},
        {"requeued", offsetof(stats, requeued)},
        {"dead_purged", offsetof(stats, dead_purged)},
    };
    redisReply *r = redisCommand(c, "EVAL %s 8 %s %s %s %s %s %s %s %s %s %s", snapshot_src,
                                 k->queue[0], k->queue[1], k->queue[2], k->queue[3], k->retry,
                                 k->dead, k->stats, k->workers, k->worker_prefix, k->inflight_prefix);
    int i;

    memset(s, 0, sizeof *s);
    if (!r) {
        snprintf(err, errlen, "Redis connection: %s", c->errstr[0] ? c->errstr : "lost");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR && redis_refusal_kind(r->str) != REDIS_REFUSED_NONE) {
        char why[300];
        snprintf(err, errlen, "%s", ctl_redis_why("the stats script", r->str, why, sizeof why));
        freeReplyObject(r);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != SNAP_ELEMENTS) {
        snprintf(err, errlen, "Redis: unexpected reply to the stats script%s%.*s",
                 r->type == REDIS_REPLY_ERROR ? ": " : "", r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
        freeReplyObject(r);
        return -1;
    }
    s->now_ms = redis_reply_ll(r->element[0]) * 1000 + redis_reply_ll(r->element[1]) / 1000;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        const redisReply *oldest = r->element[3 + 2 * p];
        aq_job j;
        char derr[160];

        s->depth[p] = redis_reply_ll(r->element[2 + 2 * p]);
        s->oldest_ms[p] = -1;
        if (oldest->type == REDIS_REPLY_STRING &&
            codec_decode(oldest->str, oldest->len, (size_t)cfg->max_job_bytes, &j, derr, sizeof derr) == 0) {
            long long age = s->now_ms - j.occurred_at_us / 1000;
            s->oldest_ms[p] = age < 0 ? 0 : age;
        }
    }
    i = 2 + 2 * AQ_PRIORITIES;
    s->retry = redis_reply_ll(r->element[i++]);
    s->dead = redis_reply_ll(r->element[i++]);
    const redisReply *h = r->element[i++];
    s->counters_unknown = h->type != REDIS_REPLY_ARRAY;
    for (size_t f = 0; s->counters_unknown && f < sizeof fields / sizeof fields[0]; f++)
        *(long long *)((char *)s + fields[f].off) = -1;
    for (size_t e = 0; h->type == REDIS_REPLY_ARRAY && e + 1 < h->elements; e += 2)
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (strcmp(h->element[e]->str, fields[f].name) == 0)
                *(long long *)((char *)s + fields[f].off) = redis_reply_ll(h->element[e + 1]);
    const redisReply *wz = r->element[i++];
    size_t nw = wz->type == REDIS_REPLY_ARRAY ? wz->elements / 2 : 0;
    s->workers_registered = wz->type == REDIS_REPLY_ARRAY ? (long long)nw : -1;
    s->workers = wz->type == REDIS_REPLY_ARRAY ? 0 : -1;
    for (size_t w = 0; w < nw; w++)
        if (s->now_ms - redis_reply_ll(wz->element[2 * w + 1]) <= cfg->heartbeat_timeout_ms)
            s->workers++;
    s->inflight = redis_reply_ll(r->element[i++]);
    const redisReply *wl = r->element[i];
    for (size_t e = 0; wl->type == REDIS_REPLY_ARRAY && e + 2 < wl->elements && s->nwrong < STATS_WRONG_MAX;
         e += 3) {
        snprintf(s->wrong[s->nwrong].key, sizeof s->wrong[0].key, "%s", wl->element[e]->str);
        snprintf(s->wrong[s->nwrong].type, sizeof s->wrong[0].type, "%s", wl->element[e + 1]->str);
        snprintf(s->wrong[s->nwrong].expected, sizeof s->wrong[0].expected, "%s", wl->element[e + 2]->str);
        s->nwrong++;
    }
    freeReplyObject(r);
    return 0;
}

/* Shards (redis_shards > 1): the namespace's numbers are the shards'
 * added up; -1 (unknown) in any shard makes the sum unknown. */
static long long sum_known(long long a, long long b)
{
    return a < 0 || b < 0 ? -1 : a + b;
}

static void stats_add(stats *t, const stats *s, int first)
{
    if (first) {
        *t = *s;
        return;
    }
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        t->depth[p] = sum_known(t->depth[p], s->depth[p]);
        if (s->oldest_ms[p] > t->oldest_ms[p])
            t->oldest_ms[p] = s->oldest_ms[p];
    }
    long long *tf[] = {&t->inflight, &t->retry, &t->dead, &t->processed, &t->failed, &t->retried,
                       &t->recovered, &t->dead_lettered, &t->dead_trimmed, &t->requeued, &t->dead_purged};
    const long long sf[] = {s->inflight, s->retry, s->dead, s->processed, s->failed, s->retried,
                            s->recovered, s->dead_lettered, s->dead_trimmed, s->requeued, s->dead_purged};
    for (size_t i = 0; i < sizeof sf / sizeof sf[0]; i++)
        *tf[i] = sum_known(*tf[i], sf[i]);
    /* Every worker heartbeats to every shard: the registries agree. */
    t->workers = t->workers < 0 || s->workers < 0 ? -1 : (s->workers > t->workers ? s->workers : t->workers);
    t->workers_registered = t->workers_registered < 0 || s->workers_registered < 0
                                ? -1
                                : (s->workers_registered > t->workers_registered ? s->workers_registered
                                                                                 : t->workers_registered);
    if (s->now_ms > t->now_ms)
        t->now_ms = s->now_ms;
    t->counters_unknown |= s->counters_unknown;
    for (size_t i = 0; i < s->nwrong && t->nwrong < STATS_WRONG_MAX; i++)
        memcpy(&t->wrong[t->nwrong++], &s->wrong[i], sizeof s->wrong[i]);
}

/* A connection and the last numbers per shard. */
typedef struct shardset {
    int n;
    redisContext *c[AQ_SHARDS_MAX];
    aq_keys k[AQ_SHARDS_MAX];
    stats per[AQ_SHARDS_MAX];
} shardset;

static void shardset_close(shardset *ss)
{
    for (int i = 0; i < ss->n; i++)
        if (ss->c[i])
            redisFree(ss->c[i]);
    free(ss);
}

/* Reads every shard (reconnecting a lost connection) into ss->per and
 * their sum into *t. Returns 0, or -1 with the failing shard and the
 * reason in err. */
static int collect_all(shardset *ss, const aq_config *cfg, stats *t, char *err, size_t errlen)
{
    char e[1400];
    for (int i = 0; i < ss->n; i++) {
        if (!ss->c[i] && !(ss->c[i] = ctl_shard_connect(cfg, i, e, sizeof e))) {
            snprintf(err, errlen, "%s", e);
            return -1;
        }
        if (collect(ss->c[i], &ss->k[i], cfg, &ss->per[i], e, sizeof e) != 0) {
            if (ss->c[i]->err) { /* connection broken: reconnect next time */
                redisFree(ss->c[i]);
                ss->c[i] = NULL;
            }
            if (ss->n > 1)
                snprintf(err, errlen, "shard %d: %s", i, e);
            else
                snprintf(err, errlen, "%s", e);
            return -1;
        }
        stats_add(t, &ss->per[i], i == 0);
    }
    return 0;
}

static long long queued_total(const stats *s)
{
    long long t = 0;
    for (int p = 0; p < AQ_PRIORITIES; p++)
        t += s->depth[p];
    return t;
}

/* See the header comment for the formula. */
static rates rates_between(const stats *prev, const stats *cur, double nominal_s)
{
    rates r = {1, 0, 0};
    double dt = (double)(cur->now_ms - prev->now_ms) / 1000.0;
    long long in = (queued_total(cur) + cur->inflight + cur->retry) -
                   (queued_total(prev) + prev->inflight + prev->retry) +
                   (cur->processed - prev->processed) + (cur->dead_lettered - prev->dead_lettered) -
                   (cur->requeued - prev->requeued);

    if (prev->nwrong || cur->nwrong)
        return (rates){0, 0, 0}; /* unknown numbers: no conservation law */
    if (dt <= 0)
        dt = nominal_s;
    r.in_per_s = in > 0 ? (double)in / dt : 0;
    r.written_per_s = cur->processed > prev->processed ? (double)(cur->processed - prev->processed) / dt : 0;
    return r;
}

/* A JSON number, or null for an unknown (-1) one. */
static void json_num(FILE *out, const char *name, long long v)
{
    if (v >= 0)
        fprintf(out, ",\"%s\":%lld", name, v);
    else
        fprintf(out, ",\"%s\":null", name);
}

/* The fix for one wrong-typed key, as every auditq program words it. */
static void wrong_text(const stats *s, size_t i, char *out, size_t n)
{
    redis_explain_wrongtype(s->wrong[i].key, s->wrong[i].type, s->wrong[i].expected, STATS_WRONG_EFFECT,
                            out, n);
}

static void print_json(FILE *out, const stats *s, const char *ns, const rates *rt, const shardset *ss)
{
    fprintf(out, "{\"namespace\":\"%s\",\"time_ms\":%lld,\"queues\":{", ns, s->now_ms);
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        fprintf(out, "%s\"%s\":{", p ? "," : "", prio_names[p]);
        if (s->depth[p] < 0)
            fprintf(out, "\"depth\":null,\"oldest_age_ms\":");
        else
            fprintf(out, "\"depth\":%lld,\"oldest_age_ms\":", s->depth[p]);
        if (s->oldest_ms[p] < 0)
            fprintf(out, "null}");
        else
            fprintf(out, "%lld}", s->oldest_ms[p]);
    }
    fprintf(out, "}");
    json_num(out, "inflight", s->inflight);
    json_num(out, "retry", s->retry);
    json_num(out, "dead", s->dead);
    json_num(out, "workers", s->workers);
    json_num(out, "workers_registered", s->workers_registered);
    json_num(out, "processed", s->processed);
    json_num(out, "failed", s->failed);
    json_num(out, "retried", s->retried);
    json_num(out, "recovered", s->recovered);
    json_num(out, "dead_lettered", s->dead_lettered);
    json_num(out, "dead_trimmed", s->dead_trimmed);
    json_num(out, "requeued", s->requeued);
    json_num(out, "dead_purged", s->dead_purged);
    fprintf(out, ",\"wrong_type_keys\":[");
    for (size_t i = 0; i < s->nwrong; i++) {
        char fix[600];
        wrong_text(s, i, fix, sizeof fix);
        fprintf(out, "%s{\"key\":", i ? "," : "");
        ctl_json_str(out, s->wrong[i].key, strlen(s->wrong[i].key));
        fprintf(out, ",\"type\":\"%s\",\"expected\":\"%s\",\"fix\":", s->wrong[i].type, s->wrong[i].expected);
        ctl_json_str(out, fix, strlen(fix));
        fprintf(out, "}");
    }
    fprintf(out, "]");
    if (ss && ss->n > 1) {
        fprintf(out, ",\"shards\":[");
        for (int i = 0; i < ss->n; i++) {
            const stats *p = &ss->per[i];
            char where[300];
            ctl_shard_where(i, where, sizeof where);
            fprintf(out, "%s{\"shard\":%d,\"server\":", i ? "," : "", i);
            ctl_json_str(out, where, strlen(where));
            json_num(out, "queued", queued_total(p));
            json_num(out, "inflight", p->inflight);
            json_num(out, "retry", p->retry);
            json_num(out, "dead", p->dead);
            json_num(out, "processed", p->processed);
            json_num(out, "dead_lettered", p->dead_lettered);
            fprintf(out, "}");
        }
        fprintf(out, "]");
    }
    if (rt) {
        if (rt->valid)
            fprintf(out, ",\"in_per_s\":%.1f,\"written_per_s\":%.1f", rt->in_per_s, rt->written_per_s);
        else
            fprintf(out, ",\"in_per_s\":null,\"written_per_s\":null");
    }
    fprintf(out, "}\n");
}

/* Output that keeps every line within STATS_COLS: items are joined by three
 * spaces and wrapped between items. eol ends each line ("\033[K\n" when
 * redrawing in place, so leftovers of a longer previous line are erased). */
typedef struct view {
    FILE *f;
    const char *eol;
    size_t col;
} view;

static void view_line(view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void view_line(view *v, const char *fmt, ...)
{
    char buf[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctl_put_text(v->f, buf, strlen(buf), STATS_COLS);
    fputs(v->eol, v->f);
}

static void view_item(view *v, const char *item)
{
    size_t n = strlen(item);

    if (v->col > 0 && v->col + 3 + n > STATS_COLS) {
        fputs(v->eol, v->f);
        v->col = 0;
    }
    if (v->col > 0) {
        fputs("   ", v->f);
        v->col += 3;
    }
    v->col += ctl_put_text(v->f, item, n, STATS_COLS - v->col);
}

static void view_end(view *v)
{
    if (v->col > 0)
        fputs(v->eol, v->f);
    v->col = 0;
}

/* A count, "?" when unknown (-1: read from a key of the wrong type). */
static void fmt_count(char *out, size_t n, long long v)
{
    if (v < 0)
        snprintf(out, n, "?");
    else
        ctl_fmt_count(out, n, v);
}

static void view_count(view *v, const char *label, long long n)
{
    char num[32], item[80];
    fmt_count(num, sizeof num, n);
    snprintf(item, sizeof item, "%s %s", label, num);
    view_item(v, item);
}

static void fmt_rate(char *out, size_t n, double r)
{
    if (r >= 100) {
        char num[28];
        ctl_fmt_count(num, sizeof num, llround(r));
        snprintf(out, n, "%s/s", num);
    } else {
        snprintf(out, n, "%.1f/s", r);
    }
}

/* The table. With watch (interval_s > 0) a header line with the time and
 * interval and a line of rates come first. */
static void print_table(view *v, const stats *s, const char *ns, double interval_s, const rates *rt,
                        const shardset *ss)
{
    char a[40], b[40];
    long long total = 0;

    if (interval_s > 0) {
        char t[40], item[160];
        ctl_fmt_iso(t, sizeof t, s->now_ms, 0);
        snprintf(item, sizeof item, "auditq  namespace=%s", ns);
        view_item(v, item);
        view_item(v, t);
        snprintf(item, sizeof item, "every %g s", interval_s);
        view_item(v, item);
        view_end(v);
        if (rt->valid) {
            fmt_rate(a, sizeof a, rt->in_per_s);
            fmt_rate(b, sizeof b, rt->written_per_s);
            view_line(v, "events in %s   written %s", a, b);
        } else {
            view_line(v, "events in -   written -   (rates from the next refresh)");
        }
    } else {
        view_line(v, "auditq  namespace=%s", ns);
    }
    view_line(v, "%s", "");
    view_line(v, "%-10s %12s %12s", "queue", "depth", "oldest");
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        fmt_count(a, sizeof a, s->depth[p]);
        ctl_fmt_age(b, sizeof b, s->oldest_ms[p]);
        view_line(v, "%-10s %12s %12s", prio_names[p], a, b);
        total = total < 0 || s->depth[p] < 0 ? -1 : total + s->depth[p];
    }
    fmt_count(a, sizeof a, total);
    view_line(v, "%-10s %12s", "total", a);
    view_line(v, "%s", "");
    view_count(v, "in flight", s->inflight);
    view_count(v, "retry", s->retry);
    view_count(v, "dead", s->dead);
    view_end(v);
    if (s->workers < 0)
        view_line(v, "workers   ?");
    else if (s->workers_registered > s->workers)
        view_line(v, "workers   %lld live (%lld silent, awaiting recovery)", s->workers,
                  s->workers_registered - s->workers);
    else
        view_line(v, "workers   %lld live", s->workers);
    view_line(v, "%s", "");
    view_count(v, "processed", s->processed);
    view_count(v, "failed", s->failed);
    view_count(v, "retried", s->retried);
    view_count(v, "recovered", s->recovered);
    view_count(v, "dead-lettered", s->dead_lettered);
    if (s->requeued)
        view_count(v, "requeued", s->requeued);
    if (s->dead_purged)
        view_count(v, "purged", s->dead_purged);
    if (s->dead_trimmed)
        view_count(v, "dead letters trimmed by dead_letter_max", s->dead_trimmed);
    view_end(v);
    if (ss && ss->n > 1) {
        view_line(v, "%s", "");
        view_line(v, "%-6s %-22s %10s %9s %8s %12s", "shard", "server", "queued", "in flight", "dead", "processed");
        for (int i = 0; i < ss->n; i++) {
            const stats *p = &ss->per[i];
            char where[300], qd[40], inf[40], dd[40], pr[40];
            ctl_shard_where(i, where, sizeof where);
            fmt_count(qd, sizeof qd, queued_total(p));
            fmt_count(inf, sizeof inf, p->inflight);
            fmt_count(dd, sizeof dd, p->dead);
            fmt_count(pr, sizeof pr, p->processed);
            view_line(v, "%-6d %-22.22s %10s %9s %8s %12s", i, where, qd, inf, dd, pr);
        }
    }
    if (s->nwrong)
        view_line(v, "%s", "");
    for (size_t i = 0; i < s->nwrong; i++) {
        /* Long: printed whole, not cut to STATS_COLS (it is the fix). */
        char fix[600];
        wrong_text(s, i, fix, sizeof fix);
        fprintf(v->f, "problem: %s%s", fix, v->eol);
    }
}

/* ---- watch ---------------------------------------------------------------- */

static volatile sig_atomic_t stats_stop;

static void stats_on_signal(int sig)
{
    (void)sig;
    stats_stop = 1;
}

/* Sleeps until the monotonic deadline (us) or a blocked-elsewhere signal. */
static void sleep_until(int64_t deadline_us, const sigset_t *during)
{
    while (!stats_stop) {
        int64_t left = deadline_us - clock_mono_us();
        if (left <= 0)
            return;
        struct timespec ts = {(time_t)(left / 1000000), (long)(left % 1000000) * 1000};
        if (pselect(0, NULL, NULL, NULL, &ts, during) < 0 && errno != EINTR)
            return;
    }
}

typedef struct watch {
    const aq_config *cfg;
    shardset *ss;
    double interval_s;
    long long count;    /* 0: until stopped */
    int json, tty;
} watch;

static void watch_error(const watch *w, long long n, const char *err)
{
    char t[40];
    ctl_fmt_iso(t, sizeof t, clock_now_us() / 1000, 0);
    if (w->json) {
        printf("{\"time_ms\":%lld,\"error\":", (long long)(clock_now_us() / 1000));
        ctl_json_str(stdout, err, strlen(err));
        printf("}\n");
    } else if (w->tty) {
        view v = {stdout, "\033[K\n", 0};
        fputs("\033[H", stdout);
        view_line(&v, "auditq  namespace=%s   %s   every %g s", w->cfg->namespace_, t, w->interval_s);
        view_line(&v, "%s", "");
        view_line(&v, "%s", err);
        view_line(&v, "retrying every %g s; Ctrl-C to stop", w->interval_s);
        fputs("\033[J", stdout);
    } else {
        printf("%s%s  %s; retrying every %g s\n", n > 0 ? "\n" : "", t, err, w->interval_s);
    }
    fflush(stdout);
}

static int run_watch(const watch *w, const stats *first)
{
    stats prev = *first, cur = *first;
    int64_t step = (int64_t)llround(w->interval_s * 1e6), next = clock_mono_us();
    sigset_t block, during;
    char err[512];

    ctl_signals_hold(stats_on_signal, &block, &during);

    for (long long n = 0; !stats_stop && (w->count == 0 || n < w->count); n++) {
        rates rt = {0, 0, 0};

        if (n > 0) {
            /* A sample slower than the interval is followed at once by the
             * next one instead of piling up delay. */
            next += step;
            if (next < clock_mono_us())
                next = clock_mono_us();
            sleep_until(next, &during);
            if (stats_stop)
                break;
            if (collect_all(w->ss, w->cfg, &cur, err, sizeof err) != 0) {
                watch_error(w, n, err);
                continue;
            }
            rt = rates_between(&prev, &cur, w->interval_s);
        }
        if (w->json) {
            print_json(stdout, &cur, w->cfg->namespace_, &rt, w->ss);
        } else if (w->tty) {
            view v = {stdout, "\033[K\n", 0};
            fputs("\033[H", stdout);
            print_table(&v, &cur, w->cfg->namespace_, w->interval_s, &rt, w->ss);
            fputs("\033[J", stdout);
        } else {
            view v = {stdout, "\n", 0};
            if (n > 0)
                fputs("\n", stdout);
            print_table(&v, &cur, w->cfg->namespace_, w->interval_s, &rt, w->ss);
        }
        fflush(stdout);
        prev = cur;
    }
    shardset_close(w->ss);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    return CTL_OK;
}

static int parse_interval(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end != '\0' || !isfinite(v) || v < 0.2 || v > 86400) {
        fprintf(stderr, "auditqctl stats: --watch '%s': give the refresh interval in seconds, "
                "0.2 to 86400 (e.g. --watch 2 or --watch 0.5)\n", s);
        return -1;
    }
    *out = v;
    return 0;
}

int ctl_stats(const aq_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"watch", required_argument, NULL, 'w'},
                                         {"count", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, o, rc;
    double interval = 0;
    long long count = 0;
    char err[1600], *end;
    stats s;

    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        /* The one rule for values (config.h): "--watch --json" is refused. */
        if (optarg != NULL && o != ':' && config_getopt_value(argv, optind, optarg, err, sizeof err) != 0) {
            fprintf(stderr, "auditqctl stats: %s; see 'auditqctl stats --help'\n", err);
            return CTL_USAGE;
        }
        switch (o) {
        case 'j':
            json = 1;
            break;
        case 'w':
            if (parse_interval(optarg, &interval) != 0)
                return CTL_USAGE;
            break;
        case 'n':
            count = strtoll(optarg, &end, 10);
            if (end == optarg || *end != '\0' || count < 1) {
                fprintf(stderr, "auditqctl stats: --count '%s': give a number of refreshes, 1 or more\n", optarg);
                return CTL_USAGE;
            }
            break;
        case ':':
            config_arg_value(argv[optind - 1], NULL, err, sizeof err);
            fprintf(stderr, "auditqctl stats: %s; see 'auditqctl stats --help'\n", err);
            return CTL_USAGE;
        default:
            fprintf(stderr, "auditqctl stats: unknown option '%s'; see 'auditqctl stats --help'\n",
                    argv[optind - 1]);
            return CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "auditqctl stats: unexpected argument '%s'; see 'auditqctl stats --help'\n", argv[optind]);
        return CTL_USAGE;
    }
    if (count > 0 && interval == 0) {
        fprintf(stderr, "auditqctl stats: --count needs --watch SECS\n");
        return CTL_USAGE;
    }
    shardset *ss = calloc(1, sizeof *ss);
    if (!ss) {
        fprintf(stderr, "auditqctl stats: out of memory\n");
        return CTL_FAILED;
    }
    ss->n = 1;
    ss->c[0] = ctl_redis_open(cfg, "stats", &ss->k[0], &rc);
    if (!ss->c[0]) {
        free(ss);
        return rc;
    }
    ss->n = ctl_shards_n(cfg);
    for (int i = 1; i < ss->n; i++) {
        ss->c[i] = ctl_shard_open(cfg, "stats", i, &ss->k[i], &rc);
        if (!ss->c[i]) {
            shardset_close(ss);
            return rc;
        }
    }
    if (collect_all(ss, cfg, &s, err, sizeof err) != 0) {
        fprintf(stderr, "auditqctl stats: reading from Redis failed: %s; check redis_url (AUDITQ_REDIS_URL)\n", err);
        shardset_close(ss);
        return CTL_FAILED;
    }
    if (interval > 0) {
        watch w = {cfg, ss, interval, count, json, isatty(STDOUT_FILENO)};
        return run_watch(&w, &s);
    }
    if (json) {
        print_json(stdout, &s, cfg->namespace_, NULL, ss);
    } else {
        view v = {stdout, "\n", 0};
        print_table(&v, &s, cfg->namespace_, 0, NULL, ss);
    }
    shardset_close(ss);
    if (s.nwrong) {
        /* Every number that could be read is printed above; the exit
         * status tells a script that some could not. */
        fprintf(stderr, "auditqctl stats: %zu Redis key%s of the wrong type (named above, with the fix); "
                "the numbers read from %s are unknown\n", s.nwrong, s.nwrong > 1 ? "s" : "",
                s.nwrong > 1 ? "them" : "it");
        return CTL_FAILED;
    }
    return CTL_OK;
}
