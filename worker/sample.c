/* sample.c -- the namespace's queue numbers, read from Redis (sample.h).
 *
 * Round trip 1 (pipelined): TYPE of every fixed key of the namespace and of
 * this worker's hash and in-flight lists; TIME; LLEN + LINDEX -1 of each
 * queue; ZCARD retry; LLEN dead; HGETALL stats; ZRANGE workers WITHSCORES.
 * A key of the wrong type answers WRONGTYPE to its read: that number reads
 * as 0, the key is listed in s->wrong, and the rest of the sample stands.
 * Round trip 2: HKEYS of each registered worker's hash (its src:<thread>
 * fields name the in-flight lists it holds).
 * Round trip 3: LLEN of each of those in-flight lists.
 * The three steps are not one atomic snapshot; a batch settling between
 * them may be counted in a queue and in flight, or in neither, for one
 * sample. The numbers are for dashboards and alerts, not for accounting.
 */
#include "sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "redisconn.h"

/* Records key as holding the wrong type (type "" = unknown). */
static void note_wrong(metrics_queue_sample *s, const char *key, size_t keylen, const char *type,
                       const char *expected)
{
    if (s->nwrong == METRICS_WRONG_MAX)
        return;
    metrics_wrongkey *e = &s->wrong[s->nwrong++];
    snprintf(e->key, sizeof e->key, "%.*s", (int)keylen, key);
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->expected, sizeof e->expected, "%s", expected);
    e->current = 1;
}

/* The TYPE reply for key: notes it if it is neither absent nor expected. */
static void check_type(metrics_queue_sample *s, const redisReply *t, const char *key, const char *expected)
{
    if ((t->type == REDIS_REPLY_STATUS || t->type == REDIS_REPLY_STRING) && strcmp(t->str, "none") != 0 &&
        strcmp(t->str, expected) != 0)
        note_wrong(s, key, strlen(key), t->str, expected);
}

/* Reads n pipelined replies into r[0..n). On failure every reply read so far
 * is freed and err says why (a connection error or the first error reply).
 * A WRONGTYPE error reply is not a failure: it stays in r for the caller
 * (redis_reply_ll reads it as 0), and the TYPE checks name the key. */
static int read_replies(redisContext *c, redisReply **r, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        r[i] = NULL;
        if (redisGetReply(c, (void **)&r[i]) != REDIS_OK || r[i] == NULL) {
            snprintf(err, errlen, "redis: %s", c->err ? c->errstr : "no reply");
            redis_free_replies(r, i);
            /* The pipeline is out of step now: the connection is unusable. */
            if (!c->err)
                c->err = REDIS_ERR_OTHER;
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (r[i]->type == REDIS_REPLY_ERROR && !redis_is_wrongtype(r[i]->str)) {
            snprintf(err, errlen, "redis error: %s", r[i]->str);
            redis_free_replies(r, n);
            return -1;
        }
    }
    return 0;
}

static void take_stats(const redisReply *h, metrics_queue_sample *s)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        { "processed", offsetof(metrics_queue_sample, processed) },
        { "failed", offsetof(metrics_queue_sample, failed) },
        { "retried", offsetof(metrics_queue_sample, retried) },
        { "recovered", offsetof(metrics_queue_sample, recovered) },
        { "dead_lettered", offsetof(metrics_queue_sample, dead_lettered) },
        { "dead_trimmed", offsetof(metrics_queue_sample, dead_trimmed) },
    };
    if (h->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t e = 0; e + 1 < h->elements; e += 2) {
        const redisReply *k = h->element[e];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (strcmp(k->str, fields[f].name) == 0)
                *(long long *)(void *)((char *)s + fields[f].off) = redis_reply_ll(h->element[e + 1]);
    }
}

/* Round trips 2 and 3: in-flight jobs of the registered workers in wz. */
static int count_inflight(redisContext *c, const aq_keys *k, const redisReply *wz,
                          metrics_queue_sample *s, char *err, size_t errlen)
{
    size_t nw = wz->type == REDIS_REPLY_ARRAY ? wz->elements / 2 : 0;
    redisReply **hk = NULL, **ll = NULL;
    size_t nl = 0;
    int rc = -1;

    if (nw > SAMPLE_MAX_WORKERS)
        nw = SAMPLE_MAX_WORKERS;
    if (nw == 0)
        return 0;
    hk = calloc(nw, sizeof *hk);
    if (hk == NULL)
        goto oom;
    for (size_t w = 0; w < nw; w++) {
        const redisReply *id = wz->element[2 * w];
        redisAppendCommand(c, "HKEYS %s%b", k->worker_prefix, id->str, (size_t)id->len);
    }
    if (read_replies(c, hk, nw, err, errlen) != 0) {
        free(hk);
        return -1;
    }
    for (size_t w = 0; w < nw; w++) {
        const redisReply *id = wz->element[2 * w];
        if (hk[w]->type == REDIS_REPLY_ERROR) { /* WRONGTYPE (read_replies let only that through) */
            char key[AQ_KEY_MAX + 200];
            snprintf(key, sizeof key, "%s%.*s", k->worker_prefix, (int)id->len, id->str);
            note_wrong(s, key, strlen(key), "", "hash");
        }
        for (size_t f = 0; hk[w]->type == REDIS_REPLY_ARRAY && f < hk[w]->elements; f++) {
            const redisReply *fld = hk[w]->element[f];
            if (fld->type != REDIS_REPLY_STRING || fld->len <= 4 || strncmp(fld->str, "src:", 4) != 0)
                continue;
            redisAppendCommand(c, "LLEN %s%b:%b", k->inflight_prefix, id->str, (size_t)id->len,
                               fld->str + 4, (size_t)fld->len - 4);
            nl++;
        }
    }
    if (nl > 0) {
        ll = calloc(nl, sizeof *ll);
        if (ll == NULL) {
            /* Commands are queued: read and drop their replies first. */
            for (size_t i = 0; i < nl; i++) {
                redisReply *r = NULL;
                if (redisGetReply(c, (void **)&r) != REDIS_OK)
                    break;
                freeReplyObject(r);
            }
            goto oom;
        }
        if (read_replies(c, ll, nl, err, errlen) != 0)
            goto out_ll;
        size_t i = 0;
        for (size_t w = 0; w < nw; w++) {
            const redisReply *id = wz->element[2 * w];
            for (size_t f = 0; hk[w]->type == REDIS_REPLY_ARRAY && f < hk[w]->elements; f++) {
                const redisReply *fld = hk[w]->element[f];
                if (fld->type != REDIS_REPLY_STRING || fld->len <= 4 || strncmp(fld->str, "src:", 4) != 0)
                    continue;
                if (ll[i]->type == REDIS_REPLY_ERROR) {
                    char key[AQ_KEY_MAX + 300];
                    snprintf(key, sizeof key, "%s%.*s:%.*s", k->inflight_prefix, (int)id->len, id->str,
                             (int)fld->len - 4, fld->str + 4);
                    note_wrong(s, key, strlen(key), "", "list");
                }
                s->inflight += redis_reply_ll(ll[i++]);
            }
        }
        redis_free_replies(ll, nl);
    }
    rc = 0;
out_ll:
    free(ll);
    redis_free_replies(hk, nw);
    free(hk);
    return rc;
oom:
    snprintf(err, errlen, "out of memory counting in-flight jobs");
    if (hk != NULL) {
        redis_free_replies(hk, nw);
        free(hk);
    }
    return -1;
}

int sample_queues(redisContext *c, const aq_keys *k, const aq_config *cfg, const char *wid,
                  int nthreads, metrics_queue_sample *s, char *err, size_t errlen)
{
    enum { N = 1 + 2 * AQ_PRIORITIES + 4, NT = AQ_PRIORITIES + 5 };
    /* The namespace's keys and their types; then this worker's own hash
     * and in-flight lists (a wrong one stops this worker's fetching). */
    const char *tk[NT] = {k->queue[0], k->queue[1], k->queue[2], k->queue[3], k->retry, k->dead,
                          k->stats, k->workers, NULL};
    static const char *const texp[NT] = {"list", "list", "list", "list", "zset", "list", "hash", "zset",
                                         "hash"};
    char rec[AQ_KEY_MAX + 16], own[AQ_KEY_MAX + 200];
    redisReply *r[N];
    int i, rc;

    memset(s, 0, sizeof *s);
    snprintf(rec, sizeof rec, "%s", k->recoveries);
    tk[NT - 1] = rec;
    for (int t = 0; t < NT; t++)
        redisAppendCommand(c, "TYPE %s", tk[t]);
    redisAppendCommand(c, "TYPE %s%s", k->worker_prefix, wid);
    for (int t = 0; t < nthreads; t++)
        redisAppendCommand(c, "TYPE %s%s:%d", k->inflight_prefix, wid, t);
    redisAppendCommand(c, "TIME");
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        redisAppendCommand(c, "LLEN %s", k->queue[p]);
        redisAppendCommand(c, "LINDEX %s -1", k->queue[p]);
    }
    redisAppendCommand(c, "ZCARD %s", k->retry);
    redisAppendCommand(c, "LLEN %s", k->dead);
    redisAppendCommand(c, "HGETALL %s", k->stats);
    redisAppendCommand(c, "ZRANGE %s 0 -1 WITHSCORES", k->workers);
    /* TYPE replies first. An error reply to TYPE (an ACL without +type,
     * docs/SECURITY.md) only skips that check. */
    for (int t = 0; t < NT + 1 + nthreads; t++) {
        redisReply *one = NULL;
        if (redisGetReply(c, (void **)&one) != REDIS_OK || one == NULL) {
            snprintf(err, errlen, "redis: %s", c->err ? c->errstr : "no reply");
            if (!c->err)
                c->err = REDIS_ERR_OTHER;
            return -1;
        }
        if (t < NT) {
            check_type(s, one, tk[t], texp[t]);
        } else {
            if (t == NT)
                snprintf(own, sizeof own, "%s%s", k->worker_prefix, wid);
            else
                snprintf(own, sizeof own, "%s%s:%d", k->inflight_prefix, wid, t - NT - 1);
            check_type(s, one, own, t == NT ? "hash" : "list");
        }
        freeReplyObject(one);
    }
    if (read_replies(c, r, N, err, errlen) != 0)
        return -1;

    if (r[0]->type == REDIS_REPLY_ARRAY && r[0]->elements == 2)
        s->redis_time_ms = redis_reply_ll(r[0]->element[0]) * 1000 + redis_reply_ll(r[0]->element[1]) / 1000;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        const redisReply *oldest = r[2 + 2 * p];
        aq_job j;
        char why[160];

        s->depth[p] = redis_reply_ll(r[1 + 2 * p]);
        s->oldest_age_ms[p] = -1;
        /* The tail is the next job to be taken (producers LPUSH). A job
         * that does not decode says nothing about age: the worker will
         * dead-letter it when it gets there. */
        if (oldest->type == REDIS_REPLY_STRING &&
            codec_decode(oldest->str, oldest->len, (size_t)cfg->max_job_bytes, &j, why, sizeof why) == 0) {
            long long age = s->redis_time_ms - j.occurred_at_us / 1000;
            s->oldest_age_ms[p] = age < 0 ? 0 : age;
        }
    }
    i = 1 + 2 * AQ_PRIORITIES;
    s->retry = redis_reply_ll(r[i++]);
    s->dead = redis_reply_ll(r[i++]);
    take_stats(r[i++], s);
    const redisReply *wz = r[i++];
    if (wz->type == REDIS_REPLY_ARRAY) {
        s->workers_registered = (long long)(wz->elements / 2);
        for (size_t w = 0; w + 1 < wz->elements; w += 2)
            if (s->redis_time_ms - redis_reply_ll(wz->element[w + 1]) <= cfg->heartbeat_timeout_ms)
                s->workers_live++;
    }
    rc = count_inflight(c, k, wz, s, err, errlen);
    redis_free_replies(r, N);
    return rc;
}

void sample_add(metrics_queue_sample *total, const metrics_queue_sample *s, int first)
{
    if (first) {
        *total = *s;
        return;
    }
    total->redis_time_ms = s->redis_time_ms > total->redis_time_ms ? s->redis_time_ms : total->redis_time_ms;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        total->depth[p] += s->depth[p];
        if (s->oldest_age_ms[p] > total->oldest_age_ms[p])
            total->oldest_age_ms[p] = s->oldest_age_ms[p];
    }
    total->inflight += s->inflight;
    total->retry += s->retry;
    total->dead += s->dead;
    /* Every worker heartbeats to every shard: the registries agree but
     * for one that a worker could not reach, so the larger count. */
    if (s->workers_live > total->workers_live)
        total->workers_live = s->workers_live;
    if (s->workers_registered > total->workers_registered)
        total->workers_registered = s->workers_registered;
    total->processed += s->processed;
    total->failed += s->failed;
    total->retried += s->retried;
    total->recovered += s->recovered;
    total->dead_lettered += s->dead_lettered;
    total->dead_trimmed += s->dead_trimmed;
    for (size_t i = 0; i < s->nwrong && total->nwrong < METRICS_WRONG_MAX; i++)
        total->wrong[total->nwrong++] = s->wrong[i];
}
