/* pool.c -- the sync path's Redis connections: see pool.h. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "error.h"

#define DOWN_WINDOW_US 200000

/* A sync connection slot: one thread uses it at a time. */
typedef struct conn_slot {
    redisContext *ctx;
    int busy;
} conn_slot;

struct pool {
    aq_shards *shards;       /* the handle's; outlives the pool */
    int shard;               /* which of them this pool reaches */
    aq_redis_target target;
    char redis_url[512];     /* shown masked in messages */
    int nconns, connect_timeout_ms, timeout_ms;
    int min_replicas;        /* redis_min_replicas: WAIT after each LPUSH */
    pthread_mutex_t mu;      /* guards slots[].busy and down_until_us */
    pthread_cond_t cv;       /* a slot was returned */
    conn_slot slots[PRODUCER_MAX_CONNS];
    int64_t down_until_us;   /* after a connect timeout: fail fast until then */
};

pool *pool_new(const struct auditq_config *cfg, aq_shards *sh, int shard)
{
    const aq_redis_target *t = &sh->target[shard];
    pool *q = calloc(1, sizeof *q);
    if (!q) {
        producer_set_error("out of memory allocating the handle");
        return NULL;
    }
    q->shards = sh;
    q->shard = shard;
    q->target = *t;
    memcpy(q->redis_url, cfg->redis_url, sizeof q->redis_url);
    q->nconns = cfg->sync_connections;
    q->connect_timeout_ms = cfg->connect_timeout_ms;
    q->timeout_ms = cfg->timeout_ms;
    q->min_replicas = cfg->min_replicas;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

void pool_free(pool *q)
{
    if (!q)
        return;
    for (int i = 0; i < PRODUCER_MAX_CONNS; i++)
        if (q->slots[i].ctx)
            redisFree(q->slots[i].ctx);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

void pool_abandon(pool *q)
{
    if (!q)
        return;
    /* The parent's threads do not exist here and may have held mu at the
     * fork: it is neither taken nor destroyed, only freed with the pool. */
    for (int i = 0; i < PRODUCER_MAX_CONNS; i++)
        if (q->slots[i].ctx)
            redisFree(q->slots[i].ctx);
    free(q);
}

/* Borrows a connected slot. Returns its index, or -1 with *rc set. */
static int slot_get(pool *q, auditq_rc *rc)
{
    int idx = -1;
    struct timespec deadline = clock_abs_after_ms(q->timeout_ms);

    pthread_mutex_lock(&q->mu);
    for (;;) {
        for (int i = 0; i < q->nconns; i++) {
            if (!q->slots[i].busy) {
                idx = i;
                break;
            }
        }
        if (idx >= 0)
            break;
        if (pthread_cond_timedwait(&q->cv, &q->mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&q->mu);
            producer_set_error("all %d sync connections stayed busy for timeout_ms=%d",
                               q->nconns, q->timeout_ms);
            *rc = AUDITQ_ERR_TIMEOUT;
            return -1;
        }
    }
    q->slots[idx].busy = 1;
    int64_t down_until = q->down_until_us;
    pthread_mutex_unlock(&q->mu);

    if (q->slots[idx].ctx)
        return idx;
    if (clock_mono_us() < down_until) {
        char shown[256];
        redis_url_mask(q->redis_url, shown, sizeof shown); /* no password in app logs */
        producer_set_error("Redis at %s timed out on connect moments ago; failing fast", shown);
        *rc = AUDITQ_ERR_CONNECT;
        goto release;
    }
    char err[1400];
    int auth_failed = 0;
    int64_t t0 = clock_mono_us();
    q->slots[idx].ctx = shard_connect(q->shards, q->shard, q->connect_timeout_ms, q->timeout_ms, err,
                                      sizeof err, &auth_failed);
    if (q->slots[idx].ctx)
        return idx;
    producer_set_error("%s", err);
    *rc = auth_failed ? AUDITQ_ERR_AUTH : AUDITQ_ERR_CONNECT;
    if (clock_mono_us() - t0 >= (int64_t)q->connect_timeout_ms * 1000) {
        pthread_mutex_lock(&q->mu);
        q->down_until_us = clock_mono_us() + DOWN_WINDOW_US;
        pthread_mutex_unlock(&q->mu);
        *rc = AUDITQ_ERR_TIMEOUT;
    }
release:
    pthread_mutex_lock(&q->mu);
    q->slots[idx].busy = 0;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return -1;
}

static void slot_put(pool *q, int idx, int broken)
{
    if (broken && q->slots[idx].ctx) {
        /* Unlinked before it is freed: a fork() in between leaves the
         * child a NULL, never a freed context (pool_abandon). */
        redisContext *c = q->slots[idx].ctx;
        q->slots[idx].ctx = NULL;
        redisFree(c);
    }
    pthread_mutex_lock(&q->mu);
    q->slots[idx].busy = 0;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* pool_command; with replicas > 0 a successful command is followed by
 * WAIT on the same connection (redis_min_replicas): fewer replicas in
 * half of timeout_ms is AUDITQ_ERR_REDIS naming the cause, never an OK. */
static auditq_rc pool_run_once(pool *q, int argc, const char **argv, const size_t *argl, redisReply **reply,
                               int replicas, int *redirected);

/* 1 for the replies of a Redis Cluster that did not run the command and
 * want it sent again once the slot's owner is known (MOVED, ASK) or the
 * slot settled (TRYAGAIN, CLUSTERDOWN). */
static int cluster_redirect(const char *e)
{
    return strncmp(e, "MOVED ", 6) == 0 || strncmp(e, "ASK ", 4) == 0 || strncmp(e, "TRYAGAIN", 8) == 0 ||
           strncmp(e, "CLUSTERDOWN", 11) == 0;
}

/* Runs the command; a cluster redirect is followed (the connection was
 * dropped, the next one goes where the slot is now) for up to timeout_ms,
 * 5 ms apart and growing: nothing ran, so sending again is safe. Out of
 * time, it is AUDITQ_ERR_CONNECT: the shard is unreachable for now (a
 * spool takes the event). */
static auditq_rc pool_run(pool *q, int argc, const char **argv, const size_t *argl, redisReply **reply,
                          int replicas)
{
    int64_t deadline = clock_mono_us() + (int64_t)q->timeout_ms * 1000;
    int64_t pause_ms = 5;
    for (;;) {
        int redirected = 0;
        auditq_rc rc = pool_run_once(q, argc, argv, argl, reply, replicas, &redirected);
        if (!redirected)
            return rc;
        if (clock_mono_us() + pause_ms * 1000 >= deadline) {
            char last[300];
            snprintf(last, sizeof last, "%s", auditq_last_error());
            producer_set_error("Redis Cluster kept redirecting %s for shard %d for timeout_ms=%d (%s): a "
                               "fail-over or slot migration is under way", argv[0], q->shard, q->timeout_ms,
                               last);
            return AUDITQ_ERR_CONNECT;
        }
        clock_sleep_ms(pause_ms);
        pause_ms = pause_ms * 2 > 200 ? 200 : pause_ms * 2;
    }
}

static auditq_rc pool_run_once(pool *q, int argc, const char **argv, const size_t *argl, redisReply **reply,
                               int replicas, int *redirected)
{
    auditq_rc rc = AUDITQ_OK;
    int idx = slot_get(q, &rc);
    if (idx < 0)
        return rc;
    redisContext *c = q->slots[idx].ctx;
    redisReply *r = redisCommandArgv(c, argc, argv, argl);
    if (!r) {
        rc = producer_redis_error(c, argv[0]);
        slot_put(q, idx, 1);
        return rc;
    }
    if (replicas > 0 && r->type != REDIS_REPLY_ERROR) {
        char why[400];
        int wt = q->timeout_ms / 2 > 0 ? q->timeout_ms / 2 : 1;
        int w = redis_wait_replicas(c, replicas, wt, why, sizeof why);
        if (w != 0) {
            producer_set_error("%s", why);
            slot_put(q, idx, w < 0);
            freeReplyObject(r);
            return AUDITQ_ERR_REDIS;
        }
    }
    /* READONLY, LOADING, NOREPLICAS: drop it, the next send connects
     * again (with Sentinel: to the master it names now). */
    slot_put(q, idx, redis_mark_if_demoted(c, r));
    if (r->type == REDIS_REPLY_ERROR && q->shards->cluster && cluster_redirect(r->str)) {
        producer_set_error("Redis Cluster answered %s with %.*s", argv[0], (int)(r->len > 120 ? 120 : r->len),
                           r->str);
        *redirected = 1;
        freeReplyObject(r);
        return AUDITQ_ERR_REDIS;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char why[400];
        /* An ACL refusal names the user, the command and the fix. */
        if (redis_explain_refusal(&q->target, "producer", argv[0], argc > 1 ? argv[1] : NULL, r->str,
                                  why, sizeof why) != REDIS_REFUSED_NONE) {
            producer_set_error("%s", why);
            rc = AUDITQ_ERR_AUTH;
        } else if (argc > 1 && redis_is_wrongtype(r->str)) {
            /* A queue key someone overwrote (SET, a stray tool): name it. */
            redis_explain_wrongtype(argv[1], NULL, "list", PRODUCER_WRONGTYPE_EFFECT, why, sizeof why);
            producer_set_error("Redis refused %s: %s", argv[0], why);
            rc = AUDITQ_ERR_REDIS;
        } else {
            producer_set_error("Redis refused %s: %.*s", argv[0], (int)r->len, r->str);
            rc = AUDITQ_ERR_REDIS;
        }
        freeReplyObject(r);
        return rc;
    }
    *reply = r;
    return AUDITQ_OK;
}

auditq_rc pool_command(pool *q, int argc, const char **argv, const size_t *argl, redisReply **reply)
{
    return pool_run(q, argc, argv, argl, reply, 0);
}

auditq_rc pool_lpush(pool *q, const char *key, const char *data, size_t len)
{
    redisReply *r = NULL;
    const char *argv[3] = {"LPUSH", key, data};
    size_t argl[3] = {5, strlen(key), len};
    auditq_rc rc = pool_run(q, 3, argv, argl, &r, q->min_replicas);
    if (rc == AUDITQ_OK) {
        if (r->type != REDIS_REPLY_INTEGER) {
            producer_set_error("LPUSH answered with reply type %d, expected an integer", r->type);
            rc = AUDITQ_ERR_PROTOCOL;
        }
        freeReplyObject(r);
    }
    return rc;
}
