/* auditq.c -- libauditq's handle: open/close and the send paths.
 *
 * The library is layered so that calls flow one way, top to bottom; each
 * module owns its structure (opaque outside its file) and its locks, and
 * its header says what it owns, which locks, and who calls it:
 *
 *   auditq.c    the handle: open/close, auditq_send (sync, routed through
 *               the spool when one is configured), auditq_send_async,
 *               flush, stats, ping
 *   async.c     the async ring and its flusher thread    -> spooler, sender
 *   spooler.c   the spool file and its replay thread     -> sender
 *   pool.c      the sync path's Redis connections (a pool per shard)
 *   event.c     auditq_event: builder, validation, encoding
 *   protect.c   protect_fields: HMAC/redact/drop before encoding
 *   settings.c  auditq_config: the settings table
 *   error.c     the thread's last error (auditq_last_error, strerror)
 *
 * "sender" is spool_push (common/spool_replay.c): the one pipelined per-priority
 * LPUSH, shared with `auditqctl spool replay`. No module calls back up: the
 * spooler knows nothing of the ring, the ring nothing of the handle.
 *
 * struct auditq holds the parts and the two counters that belong to the
 * calls themselves (sent_sync, errors); it has no lock of its own: the
 * parts are set at open and never change until close.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "clock.h"
#include "error.h"
#include "event.h"
#include "pool.h"
#include "protect.h"
#include "settings.h"
#include "spooler.h"

struct auditq {
    struct auditq_config cfg;
    aq_shards shards;    /* where each shard's queues live (common/shards.h) */
    pool **pool;         /* per shard: auditq_send, auditq_ping */
    atomic_ulong rr;     /* auditq_send's round robin over the shards */
    spooler *sp;         /* NULL: no spool configured */
    async_buf *async;    /* auditq_send_async */
    protect *protect;    /* NULL: protect_fields is empty */
    atomic_uint_fast64_t st_sent_sync, st_errors;
};

/* Frees the sync pools (abandon: in a fork child, pool_abandon). */
static void pools_free(auditq *q, int abandon)
{
    if (!q->pool)
        return;
    for (int i = 0; i < q->shards.n; i++)
        abandon ? pool_abandon(q->pool[i]) : pool_free(q->pool[i]);
    free(q->pool);
    q->pool = NULL;
}

auditq_rc auditq_open(const auditq_config *cfg, auditq **out)
{
    auditq *q = NULL;
    char err[700];
    auditq_rc rc;

    producer_clear_error();
    if (!cfg || !out) {
        producer_set_error("auditq_open: NULL argument");
        return AUDITQ_ERR_INVALID_ARG;
    }
    *out = NULL;
    q = calloc(1, sizeof *q);
    if (!q) {
        producer_set_error("out of memory allocating the handle");
        return AUDITQ_ERR_NOMEM;
    }
    q->cfg = *cfg;
    int src = shards_from_settings(&q->shards, cfg->ns, cfg->shards, cfg->redis_url, cfg->redis_sentinels,
                                   cfg->redis_master_name, cfg->sentinel_user, cfg->sentinel_password,
                                   cfg->shard_urls, cfg->cluster, err, sizeof err);
    if (src != 0) {
        producer_set_error(src == -2 ? "redis_url: %s" : "%s", err);
        free(q);
        return AUDITQ_ERR_CONFIG;
    }
    /* Before any thread starts: a key that cannot be read refuses the
     * handle, so no event is ever sent unprotected. */
    if (protect_parse(cfg->protect_fields, &q->protect, err, sizeof err) != 0) {
        producer_set_error("%s", err);
        free(q);
        return AUDITQ_ERR_CONFIG;
    }
    if (protect_needs_key(q->protect) && protect_set_key(q->protect, cfg->protect_key_file, err, sizeof err) != 0) {
        if (!cfg->protect_key_file[0])
            producer_set_error("protect_fields has an hmac rule ('%s') but protect_key_file is not set: point "
                               "it at a file of at least %d random bytes, e.g. (umask 077; openssl rand -hex "
                               "32 > /etc/auditq/protect.key)", protect_first_hmac_rule(q->protect),
                               PROTECT_KEY_MIN);
        else
            producer_set_error("%s", err);
        protect_free(q->protect);
        shards_free(&q->shards);
        free(q);
        return AUDITQ_ERR_CONFIG;
    }
    q->pool = calloc((size_t)q->shards.n, sizeof *q->pool);
    for (int i = 0; q->pool && i < q->shards.n; i++)
        if (!(q->pool[i] = pool_new(&q->cfg, &q->shards, i)))
            goto nomem;
    if (!q->pool) {
    nomem:
        pools_free(q, 0);
        protect_free(q->protect);
        shards_free(&q->shards);
        free(q);
        return AUDITQ_ERR_NOMEM;
    }
    rc = spooler_open(&q->cfg, &q->shards, &q->sp);
    if (rc != AUDITQ_OK) {
        pools_free(q, 0);
        protect_free(q->protect);
        shards_free(&q->shards);
        free(q);
        return rc;
    }
    rc = async_open(&q->cfg, &q->shards, q->sp, &q->async);
    if (rc != AUDITQ_OK) {
        spooler_close(q->sp, 0);
        pools_free(q, 0);
        protect_free(q->protect);
        shards_free(&q->shards);
        free(q);
        return rc;
    }
    /* No connection yet: a Redis that is down at open is not an error
     * (auditq_ping checks it at start-up, auditq.h). */
    *out = q;
    return AUDITQ_OK;
}

auditq_rc auditq_close(auditq *q)
{
    auditq_rc rc;
    producer_clear_error();
    if (!q)
        return AUDITQ_OK;
    /* One budget for both: the buffer drains first (to Redis or the
     * spool), then the replay uses what is left. */
    int64_t deadline = clock_mono_us() + (int64_t)q->cfg.close_timeout_ms * 1000;
    rc = async_close(q->async);
    spooler_close(q->sp, deadline);
    pools_free(q, 0);
    protect_free(q->protect);
    shards_free(&q->shards);
    free(q);
    return rc;
}

auditq_rc auditq_abandon(auditq *q)
{
    producer_clear_error();
    if (!q)
        return AUDITQ_OK;
    /* Child side of fork(), auditq.h. Reverse order of open, as in close;
     * no part takes a lock or signals a thread. */
    async_abandon(q->async);
    spooler_abandon(q->sp);
    pools_free(q, 1);
    protect_free(q->protect); /* plain memory, no lock: safe in the child */
    shards_abandon(&q->shards);
    free(q);
    return AUDITQ_OK;
}

auditq_rc auditq_ping(auditq *q)
{
    redisReply *r = NULL;
    const char *argv[1] = {"PING"};
    size_t argl[1] = {4};
    producer_clear_error();
    if (!q) {
        producer_set_error("auditq_ping: NULL handle");
        return AUDITQ_ERR_INVALID_ARG;
    }
    /* Every shard: a send may go to any of them. */
    for (int i = 0; i < q->shards.n; i++) {
        auditq_rc rc = pool_command(q->pool[i], 1, argv, argl, &r);
        if (rc != AUDITQ_OK) {
            if (q->shards.n > 1) {
                char e[600];
                snprintf(e, sizeof e, "%s", auditq_last_error());
                producer_set_error("shard %d: %s", i, e);
            }
            return rc;
        }
        freeReplyObject(r);
    }
    return AUDITQ_OK;
}

/* The shard an event goes to (redis_shard_by); -1 = the batch's (async,
 * spread). */
static int event_shard(auditq *q, const auditq_event *ev, int async)
{
    size_t tl = 0;
    const char *tenant = q->cfg.shard_by_tenant ? event_field(ev, AUDITQ_TENANT_ID, &tl) : NULL;
    if (q->shards.n == 1)
        return 0;
    if (async && !(tenant && tl))
        return -1;
    return shard_pick(q->shards.n, q->cfg.shard_by_tenant, tenant, tl, atomic_fetch_add(&q->rr, 1));
}

/* LPUSH of one encoded job on the sync pool of its shard. With
 * redis_shard_by = spread an event may go to any shard, so a shard that
 * cannot be reached (connect refused or timed out) passes the event to
 * the next one, each shard tried once; with tenant it may not (the
 * tenant's order), and the error names the shard. */
static auditq_rc sync_push(auditq *q, const aq_buf *job, int prio, int sh)
{
    auditq_rc rc = AUDITQ_OK;
    char first[700] = "";
    for (int k = 0; k < q->shards.n; k++) {
        int s = (sh + k) % q->shards.n;
        rc = pool_lpush(q->pool[s], q->shards.keys[s].queue[prio], job->data, job->len);
        if (rc == AUDITQ_OK || q->cfg.shard_by_tenant || q->shards.n == 1 ||
            (rc != AUDITQ_ERR_CONNECT && rc != AUDITQ_ERR_TIMEOUT))
            break;
        if (k == 0)
            snprintf(first, sizeof first, "%s", auditq_last_error());
    }
    if (rc != AUDITQ_OK && first[0] && !q->cfg.shard_by_tenant) {
        char last[700];
        snprintf(last, sizeof last, "%s", auditq_last_error());
        producer_set_error("no shard of the %d took the event: %s (first: %s)", q->shards.n, last, first);
    }
    if (rc == AUDITQ_OK)
        producer_clear_error();
    return rc;
}

/* Sync send with a spool (spooler.c DESIGN, "Routing"). */
static auditq_rc sync_send_spool(auditq *q, const aq_buf *job, int prio, int sh)
{
    spool_item it = {job->data, (uint32_t)job->len, (uint8_t)prio};
    char why[256];
    int r;

    if (spooler_backlog(q->sp)) {
        r = spooler_put(q->sp, &it, 1, 1, 0);
        if (r == AUDITQ_OK)
            return AUDITQ_OK;
        /* No backlog any more, or the spool is full or failing: Redis. */
    }
    auditq_rc rc = sync_push(q, job, prio, sh);
    if (rc == AUDITQ_OK) {
        atomic_fetch_add(&q->st_sent_sync, 1);
        return AUDITQ_OK;
    }
    if (rc != AUDITQ_ERR_CONNECT && rc != AUDITQ_ERR_TIMEOUT)
        return rc;
    snprintf(why, sizeof why, "%s", auditq_last_error());
    r = spooler_put(q->sp, &it, 1, 0, q->cfg.spool_full_policy == SPOOL_FULL_BLOCK ? q->cfg.timeout_ms : 0);
    if (r == AUDITQ_OK)
        return AUDITQ_OK;
    if (r == AUDITQ_ERR_SPOOL_FULL)
        spooler_count_rejected(q->sp, 1);
    char sp[300];
    snprintf(sp, sizeof sp, "%s", auditq_last_error());
    producer_set_error("%s; Redis: %s", sp, why);
    return (auditq_rc)r;
}

auditq_rc auditq_send(auditq *q, const auditq_event *ev, char *id_out)
{
    int prio = 0;
    auditq_rc rc;

    producer_clear_error();
    if (!q || !ev) {
        producer_set_error("auditq_send: NULL handle or event");
        return AUDITQ_ERR_INVALID_ARG;
    }
    aq_buf *scratch = event_scratch();
    if (!scratch) {
        producer_set_error("out of memory");
        atomic_fetch_add(&q->st_errors, 1);
        return AUDITQ_ERR_NOMEM;
    }
    rc = event_encode(ev, q->cfg.max_job_bytes, q->protect, scratch, &prio, id_out);
    if (rc == AUDITQ_OK && q->sp) {
        rc = sync_send_spool(q, scratch, prio, event_shard(q, ev, 0));
    } else if (rc == AUDITQ_OK) {
        rc = sync_push(q, scratch, prio, event_shard(q, ev, 0));
        if (rc == AUDITQ_OK)
            atomic_fetch_add(&q->st_sent_sync, 1);
    }
    if (rc != AUDITQ_OK)
        atomic_fetch_add(&q->st_errors, 1);
    return rc;
}

auditq_rc auditq_send_async(auditq *q, const auditq_event *ev, char *id_out)
{
    int prio = 0;
    auditq_rc rc;

    producer_clear_error();
    if (!q || !ev) {
        producer_set_error("auditq_send_async: NULL handle or event");
        return AUDITQ_ERR_INVALID_ARG;
    }
    /* Validate + encode outside any lock; async_put copies the bytes in. */
    aq_buf *scratch = event_scratch();
    if (!scratch) {
        producer_set_error("out of memory");
        rc = AUDITQ_ERR_NOMEM;
    } else {
        rc = event_encode(ev, q->cfg.max_job_bytes, q->protect, scratch, &prio, id_out);
        if (rc == AUDITQ_OK)
            rc = async_put(q->async, scratch->data, scratch->len, prio, event_shard(q, ev, 1));
    }
    if (rc != AUDITQ_OK)
        atomic_fetch_add(&q->st_errors, 1);
    return rc;
}

auditq_rc auditq_flush(auditq *q, int timeout_ms)
{
    producer_clear_error();
    if (!q) {
        producer_set_error("auditq_flush: NULL handle");
        return AUDITQ_ERR_INVALID_ARG;
    }
    return async_flush(q->async, timeout_ms);
}

auditq_rc auditq_get_stats(auditq *q, auditq_stats *out)
{
    producer_clear_error();
    if (!q || !out) {
        producer_set_error("auditq_get_stats: NULL argument");
        return AUDITQ_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    out->sent_sync = atomic_load(&q->st_sent_sync);
    out->errors = atomic_load(&q->st_errors);
    async_stats(q->async, out);
    if (q->sp)
        spooler_stats(q->sp, out);
    return AUDITQ_OK;
}

auditq_rc auditq_spool_problem(auditq *q, char *buf, size_t len)
{
    producer_clear_error();
    if (!q || !buf || len == 0) {
        producer_set_error("auditq_spool_problem: NULL handle or empty buffer");
        return AUDITQ_ERR_INVALID_ARG;
    }
    if (q->sp)
        spooler_problem(q->sp, buf, len);
    else
        buf[0] = '\0';
    return AUDITQ_OK;
}
