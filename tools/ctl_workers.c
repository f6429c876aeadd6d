/* ctl_workers.c -- `auditqctl workers [--json]`: every registered worker
 * process with its host, pid, threads, start time and uptime, heartbeat
 * age, processed and in-flight counters.
 *
 * Source: the {ns}:workers ZSET (member = worker id, score = last heartbeat,
 * Redis clock) and each {ns}:worker:<id> HASH (docs/PROTOCOL.md). A worker
 * whose heartbeat is older than heartbeat_timeout_ms is dead: the next
 * recovery run of any live worker returns its batches to the queues and
 * removes it. Until then it is listed, marked "dead (not yet recovered)" --
 * that is the window in which its in-flight jobs wait.
 *
 * `started` is stamped by the worker host's clock and the heartbeat by
 * Redis', so an uptime on a host with a skewed clock is off by the skew.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_common.h"

const char ctl_workers_synopsis[] =
    "workers [--json]                 list worker processes and their heartbeats";
const char ctl_workers_help[] =
    "Usage: auditqctl [OPTIONS] workers [--json]\n"
    "\n"
    "Lists every worker process registered in Redis: host, pid, threads, when it\n"
    "started (UTC) and its uptime, how long ago its last heartbeat was, the jobs\n"
    "it has processed and the jobs it holds in flight. A worker silent for more\n"
    "than heartbeat_timeout_ms is marked \"dead (not yet recovered)\": a live\n"
    "worker will soon put its in-flight jobs back on the queues and remove it.\n"
    "\n"
    "  --json      print a JSON array with one object per worker: id, host, pid,\n"
    "              threads, started_ms, started, uptime_ms, heartbeat_ms,\n"
    "              heartbeat_age_ms, processed, inflight, state (live | dead)\n"
    "  -h, --help  show this help\n"
    "\n"
    "Exit status: 0 ok, 1 Redis unreachable or error, 2 usage error.\n";

/* Workers read per pipelined round trip. */
#define WORKERS_PIPELINE 100

typedef struct wrec {
    char *id, *host;          /* malloc'd; host is NULL when the hash is gone */
    long long pid, threads, started_ms, heartbeat_ms, processed, inflight;
    int dead;
} wrec;

static void wrecs_free(wrec *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(w[i].id);
        free(w[i].host);
    }
    free(w);
}

static char *dup_reply(const redisReply *r)
{
    char *s = malloc(r->len + 1);
    if (s) {
        memcpy(s, r->str, r->len);
        s[r->len] = '\0';
    }
    return s;
}

/* Fills w from one HGETALL reply. A missing hash (the worker deregistered
 * between ZRANGE and HGETALL) leaves host NULL and the numbers at -1. */
static int wrec_fill(wrec *w, const redisReply *h)
{
    w->pid = w->threads = w->started_ms = w->processed = w->inflight = -1;
    for (size_t e = 0; h->type == REDIS_REPLY_ARRAY && e + 1 < h->elements; e += 2) {
        const char *f = h->element[e]->str;
        const redisReply *v = h->element[e + 1];
        if (strcmp(f, "host") == 0) {
            free(w->host);
            if (!(w->host = dup_reply(v)))
                return -1;
        } else if (strcmp(f, "pid") == 0) {
            w->pid = redis_reply_ll(v);
        } else if (strcmp(f, "threads") == 0) {
            w->threads = redis_reply_ll(v);
        } else if (strcmp(f, "started") == 0) {
            w->started_ms = redis_reply_ll(v);
        } else if (strcmp(f, "processed") == 0) {
            w->processed = redis_reply_ll(v);
        } else if (strcmp(f, "inflight") == 0) {
            w->inflight = redis_reply_ll(v);
        }
    }
    return 0;
}

/* Reads every registered worker. On success *out (caller frees with
 * wrecs_free) holds *n records. */
static int load_workers(redisContext *c, const aq_keys *k, const aq_config *cfg, long long now_ms,
                        wrec **out, size_t *n, char *err, size_t errlen)
{
    redisReply *z = redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", k->workers);
    redisReply *r[WORKERS_PIPELINE];
    wrec *w = NULL;
    size_t nw = 0;
    int rc = -1;

    if (!z || z->type != REDIS_REPLY_ARRAY) {
        char why[300];
        if (z && z->type == REDIS_REPLY_ERROR && redis_refusal_kind(z->str) != REDIS_REFUSED_NONE)
            snprintf(err, errlen, "%s", ctl_redis_why(NULL, z->str, why, sizeof why));
        else
            snprintf(err, errlen, "ZRANGE %s: %s", k->workers,
                     z ? (z->str ? z->str : "unexpected reply") : c->errstr);
        goto out;
    }
    nw = z->elements / 2;
    w = calloc(nw ? nw : 1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory for %zu workers", nw);
        goto out;
    }
    for (size_t i = 0; i < nw; i++) {
        if (!(w[i].id = dup_reply(z->element[2 * i]))) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        w[i].heartbeat_ms = redis_reply_ll(z->element[2 * i + 1]);
        w[i].dead = now_ms - w[i].heartbeat_ms > cfg->heartbeat_timeout_ms;
    }
    for (size_t base = 0; base < nw; base += WORKERS_PIPELINE) {
        int m = (int)(nw - base < WORKERS_PIPELINE ? nw - base : WORKERS_PIPELINE);
        for (int i = 0; i < m; i++)
            redisAppendCommand(c, "HGETALL %s%s", k->worker_prefix, w[base + (size_t)i].id);
        if (ctl_get_replies(c, m, r, err, errlen) != 0)
            goto out;
        for (int i = 0; i < m; i++) {
            if (wrec_fill(&w[base + (size_t)i], r[i]) != 0) {
                snprintf(err, errlen, "out of memory");
                redis_free_replies(r, m);
                goto out;
            }
        }
        redis_free_replies(r, m);
    }
    rc = 0;
out:
    if (z)
        freeReplyObject(z);
    if (rc != 0) {
        wrecs_free(w, nw);
        return -1;
    }
    *out = w;
    *n = nw;
    return 0;
}

/* Adds shard records b (taken over, freed here) into *w: a worker known
 * already keeps the later heartbeat (and its state); a new one is added. */
static int merge_workers(wrec **w, size_t *n, wrec *b, size_t nb)
{
    wrec *g = realloc(*w, (*n + nb + 1) * sizeof *g);
    if (!g) {
        wrecs_free(b, nb);
        return -1;
    }
    *w = g;
    for (size_t i = 0; i < nb; i++) {
        size_t j = 0;
        while (j < *n && strcmp(g[j].id, b[i].id) != 0)
            j++;
        if (j == *n) {
            g[(*n)++] = b[i];
            continue;
        }
        if (b[i].heartbeat_ms > g[j].heartbeat_ms) {
            wrec old = g[j];
            g[j] = b[i];
            b[i] = old;
        }
        free(b[i].id);
        free(b[i].host);
    }
    free(b);
    return 0;
}

/* Host, then pid: a stable order to read. */
static int wrec_cmp(const void *a, const void *b)
{
    const wrec *x = a, *y = b;
    int h = strcmp(x->host ? x->host : "", y->host ? y->host : "");
    if (h)
        return h;
    return (x->pid > y->pid) - (x->pid < y->pid);
}

/* "45s", "12m05s", "5h07m", "3d04h", "123d": at most 6 characters. */
static void fmt_uptime(char *out, size_t n, long long ms)
{
    long long s = ms / 1000;
    if (ms < 0)
        snprintf(out, n, "-");
    else if (s < 60)
        snprintf(out, n, "%llds", s);
    else if (s < 3600)
        snprintf(out, n, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, n, "%lldh%02lldm", s / 3600, s % 3600 / 60);
    else if (s < 100 * 86400LL)
        snprintf(out, n, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
    else
        snprintf(out, n, "%lldd", s / 86400);
}

/* Heartbeat age: "0.4s" under 10 s (heartbeats are sub-second apart), then
 * the compact form. */
static void fmt_hb_age(char *out, size_t n, long long ms)
{
    if (ms >= 0 && ms < 10000)
        snprintf(out, n, "%.1fs", (double)ms / 1000.0);
    else
        ctl_fmt_age_short(out, n, ms);
}

/* Counts get thousands separators; ids (pid) and small numbers do not. */
static void fmt_num(char *out, size_t n, long long v, int grouped)
{
    if (v < 0)
        snprintf(out, n, "-");
    else if (grouped)
        ctl_fmt_count(out, n, v);
    else
        snprintf(out, n, "%lld", v);
}

/* 79 columns: HOST 12, PID 7, THR 3, STARTED 19, UPTIME 6, HB AGO 6,
 * PROCESSED 11, INFLIGHT 8. A longer host name is cut ("..."); --json has
 * it whole, and the worker id. A dead worker's row is followed by a line
 * saying so. */
static void print_table(const wrec *w, size_t n, long long now_ms, const aq_config *cfg)
{
    size_t dead = 0;

    if (n == 0) {
        printf("no workers registered in namespace %s\n", cfg->namespace_);
        return;
    }
    printf("%-12s %7s %3s %-19s %6s %6s %11s %8s\n", "HOST", "PID", "THR", "STARTED (UTC)", "UPTIME",
           "HB AGO", "PROCESSED", "INFLIGHT");
    for (size_t i = 0; i < n; i++) {
        char pid[24], thr[24], started[40], up[48], hb[48], proc[32], infl[32];
        const char *host = w[i].host ? w[i].host : "-";

        fmt_num(pid, sizeof pid, w[i].pid, 0);
        fmt_num(thr, sizeof thr, w[i].threads, 0);
        if (w[i].started_ms > 0) {
            ctl_fmt_iso(started, sizeof started, w[i].started_ms, 0);
            started[10] = ' ';              /* 2026-01-01 12:00:00 */
            started[19] = '\0';
        } else {
            snprintf(started, sizeof started, "-");
        }
        fmt_uptime(up, sizeof up, w[i].started_ms > 0 ? now_ms - w[i].started_ms : -1);
        fmt_hb_age(hb, sizeof hb, now_ms - w[i].heartbeat_ms);
        fmt_num(proc, sizeof proc, w[i].processed, 1);
        fmt_num(infl, sizeof infl, w[i].inflight, 1);
        size_t hc = ctl_put_text(stdout, host, strlen(host), 12);
        printf("%*s %7s %3s %-19s %6s %6s %11s %8s\n", (int)(12 - hc), "", pid, thr, started, up, hb,
               proc, infl);
        if (w[i].dead) {
            char line[512], age[32];
            dead++;
            ctl_fmt_age(age, sizeof age, now_ms - w[i].heartbeat_ms);
            snprintf(line, sizeof line, "  ^ dead (not yet recovered): silent %s, over heartbeat_timeout_ms=%d",
                     age, cfg->heartbeat_timeout_ms);
            ctl_put_text(stdout, line, strlen(line), 79);
            putchar('\n');
        }
    }
    printf("%zu worker%s: %zu live, %zu dead (not yet recovered)\n", n, n == 1 ? "" : "s", n - dead, dead);
}

static void print_json(const wrec *w, size_t n, long long now_ms)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        char iso[40];
        printf("%s\n{\"id\":", i ? "," : "");
        ctl_json_str(stdout, w[i].id, strlen(w[i].id));
        printf(",\"host\":");
        if (w[i].host)
            ctl_json_str(stdout, w[i].host, strlen(w[i].host));
        else
            printf("null");
#define JNUM(name, v) do { if ((v) < 0) printf(",\"" name "\":null"); else printf(",\"" name "\":%lld", (long long)(v)); } while (0)
        JNUM("pid", w[i].pid);
        JNUM("threads", w[i].threads);
        JNUM("started_ms", w[i].started_ms);
        if (w[i].started_ms > 0) {
            ctl_fmt_iso(iso, sizeof iso, w[i].started_ms, 1);
            printf(",\"started\":\"%s\"", iso);
        } else {
            printf(",\"started\":null");
        }
        JNUM("uptime_ms", w[i].started_ms > 0 ? (now_ms > w[i].started_ms ? now_ms - w[i].started_ms : 0) : -1);
        JNUM("heartbeat_ms", w[i].heartbeat_ms);
        JNUM("heartbeat_age_ms", now_ms > w[i].heartbeat_ms ? now_ms - w[i].heartbeat_ms : 0);
        JNUM("processed", w[i].processed);
        JNUM("inflight", w[i].inflight);
#undef JNUM
        printf(",\"state\":\"%s\"}", w[i].dead ? "dead" : "live");
    }
    printf("%s]\n", n ? "\n" : "");
}

int ctl_workers(const aq_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int json = 0, o, rc;
    aq_keys k;
    char err[512];
    long long now_ms;
    wrec *w = NULL;
    size_t n = 0;

    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o != 'j') {
            fprintf(stderr, "auditqctl workers: unknown option '%s'; see 'auditqctl workers --help'\n",
                    argv[optind - 1]);
            return CTL_USAGE;
        }
        json = 1;
    }
    if (optind < argc) {
        fprintf(stderr, "auditqctl workers: unexpected argument '%s'; see 'auditqctl workers --help'\n",
                argv[optind]);
        return CTL_USAGE;
    }
    /* Shards: every worker heartbeats to every shard's registry; the
     * union is listed, each worker with its latest heartbeat seen. */
    int nsh = ctl_shards_n(cfg);
    for (int sh = 0; sh < nsh; sh++) {
        wrec *ws = NULL;
        size_t nws = 0;
        redisContext *c = ctl_shard_open(cfg, "workers", sh, &k, &rc);
        if (!c) {
            wrecs_free(w, n);
            return rc;
        }
        if ((sh == 0 && ctl_redis_now_ms(c, &now_ms, err, sizeof err) != 0) ||
            load_workers(c, &k, cfg, now_ms, &ws, &nws, err, sizeof err) != 0) {
            fprintf(stderr, "auditqctl workers: reading from Redis failed%s: %s\n", nsh > 1 ? " (a shard)" : "",
                    err);
            redisFree(c);
            wrecs_free(w, n);
            return CTL_FAILED;
        }
        redisFree(c);
        if (sh == 0) {
            w = ws;
            n = nws;
            continue;
        }
        if (merge_workers(&w, &n, ws, nws) != 0) {
            fprintf(stderr, "auditqctl workers: out of memory\n");
            wrecs_free(w, n);
            return CTL_FAILED;
        }
    }
    qsort(w, n, sizeof *w, wrec_cmp);
    if (json)
        print_json(w, n, now_ms);
    else
        print_table(w, n, now_ms, cfg);
    wrecs_free(w, n);
    return CTL_OK;
}
