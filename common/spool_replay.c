/* spool_replay.c -- replaying a spool: reading records back in bounded
 * chunks (spool_read_chunk) and pushing them to their priority queues in
 * one pipelined round trip (spool_pusher, spool_push, spool_push_chunk). */
#include "spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- replay -------------------------------------------------------------- */

void spool_chunk_free(spool_chunk *c)
{
    if (!c)
        return;
    free(c->data.data);
    free(c->items);
    memset(c, 0, sizeof *c);
}

int spool_read_chunk(int fd, uint64_t start, uint64_t limit, size_t max_records, size_t max_bytes,
                     spool_chunk *c, char *err, size_t errlen)
{
    spool_reader r = {0};
    spool_rec rec;
    int rc = 0;

    c->n = 0;
    c->data.len = 0;
    c->bytes = 0;
    c->start = c->end = start;
    c->bad_kind = SPOOL_RECORD;
    spool_reader_fd(&r, fd, start, limit);
    while (c->n < max_records && c->data.len < max_bytes) {
        spool_status st = spool_reader_next(&r, &rec);
        if (st == SPOOL_END)
            break;
        if (st == SPOOL_IOERR) {
            snprintf(err, errlen, "%s", rec.why);
            rc = -1;
            break;
        }
        if (st != SPOOL_RECORD) {
            c->bad_kind = st;
            c->bad = rec;
            c->end = rec.end;
            break;
        }
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 64;
            spool_item *ni = realloc(c->items, ncap * sizeof *ni);
            if (!ni) {
                snprintf(err, errlen, "out of memory reading the spool");
                rc = -1;
                break;
            }
            c->items = ni;
            c->cap = ncap;
        }
        if (aq_buf_append(&c->data, rec.data, rec.len) != 0) {
            snprintf(err, errlen, "out of memory reading the spool");
            rc = -1;
            break;
        }
        c->items[c->n].len = rec.len;
        c->items[c->n].prio = rec.prio;
        c->n++;
        c->bytes += rec.len;
        c->end = rec.end;
    }
    spool_reader_free(&r);
    /* Payloads are back to back; point at them now that data stopped moving. */
    const char *p = c->data.data;
    for (size_t i = 0; i < c->n; i++) {
        c->items[i].data = p;
        p += c->items[i].len;
    }
    return rc;
}

int spool_pusher_init(spool_pusher *pp, size_t max_items)
{
    pp->cap = max_items;
    pp->argv = malloc((max_items + 2 * AQ_PRIORITIES) * sizeof *pp->argv);
    pp->argl = malloc((max_items + 2 * AQ_PRIORITIES) * sizeof *pp->argl);
    if (!pp->argv || !pp->argl) {
        spool_pusher_free(pp);
        return -1;
    }
    return 0;
}

void spool_pusher_free(spool_pusher *pp)
{
    free(pp->argv);
    free(pp->argl);
    pp->argv = NULL;
    pp->argl = NULL;
    pp->cap = 0;
}

/* The failure text of one non-integer reply to the LPUSH of key. */
static void push_refusal(const redisReply *r, const char *key, const aq_redis_target *t, const char *role,
                         const char *wrongtype_effect, char *err, size_t errlen)
{
    char wt[360];

    if (r->type != REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "LPUSH answered with reply type %d, expected an integer", r->type);
    } else if (wrongtype_effect && redis_is_wrongtype(r->str)) {
        redis_explain_wrongtype(key, NULL, "list", wrongtype_effect, wt, sizeof wt);
        snprintf(err, errlen, "Redis refused LPUSH: %s", wt);
    } else if (!t || redis_explain_refusal(t, role, "LPUSH", key, r->str, err, errlen) == REDIS_REFUSED_NONE) {
        snprintf(err, errlen, "Redis refused LPUSH: %.*s", (int)r->len, r->str);
    }
}

int spool_push(redisContext *c, spool_pusher *pp, const aq_keys *k, const aq_redis_target *t, const char *role,
               const char *wrongtype_effect, const spool_item *items, size_t n, int done[AQ_PRIORITIES],
               int *conn_broken, char *err, size_t errlen)
{
    size_t count[AQ_PRIORITIES] = {0}, at[AQ_PRIORITIES], seg[AQ_PRIORITIES];
    int sent[AQ_PRIORITIES], nsent = 0, rc = 0;

    *conn_broken = 0;
    if (n > pp->cap) {
        snprintf(err, errlen, "%zu jobs for a sender sized for %zu", n, pp->cap);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (!done[items[i].prio])
            count[items[i].prio]++;
    /* One argv segment per priority: LPUSH key job job ... */
    size_t off = 0;
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        seg[p] = off;
        at[p] = off + 2;
        if (count[p]) {
            pp->argv[off] = "LPUSH";
            pp->argl[off] = 5;
            pp->argv[off + 1] = k->queue[p];
            pp->argl[off + 1] = strlen(k->queue[p]);
        }
        off += count[p] + 2;
    }
    for (size_t i = 0; i < n; i++) {
        int p = items[i].prio;
        if (done[p])
            continue;
        pp->argv[at[p]] = items[i].data;
        pp->argl[at[p]] = items[i].len;
        at[p]++;
    }
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        if (!count[p])
            continue;
        if (redisAppendCommandArgv(c, (int)(count[p] + 2), pp->argv + seg[p], pp->argl + seg[p]) != REDIS_OK) {
            snprintf(err, errlen, "out of memory queueing LPUSH");
            *conn_broken = 1;
            return -1;
        }
        sent[nsent++] = p;
    }
    for (int i = 0; i < nsent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            snprintf(err, errlen, "connection to Redis lost: %s", c->errstr[0] ? c->errstr : "no reply");
            *conn_broken = 1;
            return -1;
        }
        if (r->type == REDIS_REPLY_INTEGER) {
            done[sent[i]] = 1;
        } else if (redis_mark_if_demoted(c, r)) {
            /* READONLY/LOADING/NOREPLICAS: connect again (Sentinel: to
             * the new master); the groups not done are sent again. */
            if (rc == 0)
                snprintf(err, errlen, "connection to Redis dropped: %s", c->errstr);
            *conn_broken = 1;
            rc = -1;
        } else if (rc == 0) {
            /* e.g. OOM, NOPERM, WRONGTYPE: the first one is reported; keep
             * reading, the pipeline must be drained. */
            push_refusal(r, k->queue[sent[i]], t, role, wrongtype_effect, err, errlen);
            rc = -1;
        }
        freeReplyObject(r);
    }
    return rc;
}

int spool_push_chunk(redisContext *c, const aq_keys *k, const spool_chunk *ch, int min_replicas, int wait_ms,
                     int *conn_broken, char *err, size_t errlen)
{
    spool_pusher pp;
    int done[AQ_PRIORITIES] = {0};

    *conn_broken = 0;
    if (ch->n == 0)
        return 0;
    if (spool_pusher_init(&pp, ch->n) != 0) {
        snprintf(err, errlen, "out of memory building the replay commands");
        return -1;
    }
    int rc = spool_push(c, &pp, k, NULL, "", NULL, ch->items, ch->n, done, conn_broken, err, errlen);
    spool_pusher_free(&pp);
    if (rc == 0 && min_replicas > 0) {
        int w = redis_wait_replicas(c, min_replicas, wait_ms, err, errlen);
        if (w != 0) {
            *conn_broken = w < 0;
            rc = -1;
        }
    }
    return rc;
}
