/* async.c -- the async path: a bounded in-process buffer and one flusher
 * thread that pipelines batches to Redis.
 *
 * Calling thread: validate + encode (outside the lock), then one short
 * critical section to append the bytes to the ring. Nothing on this path
 * talks to Redis, so it costs microseconds whatever Redis is doing.
 *
 * Flusher: takes up to batch_size jobs from the head of the ring, groups
 * them per priority and sends one LPUSH per priority, pipelined (at most
 * four commands per batch). The jobs stay in the ring, counted against its
 * capacity, until Redis acknowledged them; only then are they freed. On any
 * failure (connection lost, timeout, error reply such as OOM) the same
 * groups are retried with backoff until they succeed -- or, only during
 * auditq_close, until close_timeout_ms runs out, which auditq_close reports.
 *
 * Delivery is at-least-once into Redis: a connection lost after Redis
 * executed an LPUSH but before we read the reply resends that group. The
 * worker's ON CONFLICT DO NOTHING on the primary key (event_id, occurred_at) makes the stored
 * result exactly-once.
 *
 * With a spool (spooler.c): while spooled records wait for replay, a batch
 * is appended to the spool behind them instead of being sent; and a batch
 * that fails on a fresh connection, or twice, is appended to the spool
 * (the groups Redis already acknowledged excepted). Either way it then
 * counts as acknowledged and leaves the buffer. A batch the spool refuses
 * (full, I/O error) stays and is retried as above.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "producer.h"

typedef struct group {
    const char **argv;
    size_t *argl;
    int argc;
    int done;
} group;

auditq_rc auditq_send_async(auditq *q, const auditq_event *ev, char *id_out)
{
    int prio = 0;
    auditq_rc rc;
    char *copy;

    producer_clear_error();
    if (!q || !ev) {
        producer_set_error("auditq_send_async: NULL handle or event");
        return AUDITQ_ERR_INVALID_ARG;
    }
    aq_buf *scratch = producer_scratch();
    if (!scratch) {
        producer_set_error("out of memory");
        rc = AUDITQ_ERR_NOMEM;
        goto fail;
    }
    rc = producer_encode(q, ev, scratch, &prio, id_out);
    if (rc != AUDITQ_OK)
        goto fail;
    copy = malloc(scratch->len);
    if (!copy) {
        producer_set_error("out of memory copying the event into the buffer");
        rc = AUDITQ_ERR_NOMEM;
        goto fail;
    }
    memcpy(copy, scratch->data, scratch->len);

    pthread_mutex_lock(&q->mu);
    if (q->count == q->ring_cap && !q->closing) {
        if (q->cfg.full_policy == FULL_ERROR || q->cfg.enqueue_timeout_ms == 0) {
            rc = AUDITQ_ERR_BUFFER_FULL;
        } else {
            struct timespec dl = clock_abs_after_ms(q->cfg.enqueue_timeout_ms);
            while (q->count == q->ring_cap && !q->closing)
                if (pthread_cond_timedwait(&q->space, &q->mu, &dl) == ETIMEDOUT)
                    break;
            if (q->count == q->ring_cap && !q->closing)
                rc = AUDITQ_ERR_BUFFER_FULL;
        }
    }
    if (q->closing)
        rc = AUDITQ_ERR_CLOSED;
    if (rc != AUDITQ_OK) {
        pthread_mutex_unlock(&q->mu);
        free(copy);
        if (rc == AUDITQ_ERR_BUFFER_FULL) {
            atomic_fetch_add(&q->st_rejected_full, 1);
            producer_set_error("async buffer full: %zu events waiting for Redis (buffer_events=%d); "
                               "Redis may be slow or down", q->ring_cap, q->cfg.buffer_events);
        } else {
            producer_set_error("handle is closing");
        }
        goto fail;
    }
    pending *slot = &q->ring[(q->head + q->count) % q->ring_cap];
    slot->data = copy;
    slot->len = (uint32_t)scratch->len;
    slot->prio = (uint8_t)prio;
    q->count++;
    q->queued_seq++;
    /* Wake the flusher only when a full batch is ready; otherwise its
     * flush_interval timer picks the events up. */
    if (q->count == (size_t)q->cfg.batch_size)
        pthread_cond_signal(&q->wake_flusher);
    pthread_mutex_unlock(&q->mu);
    atomic_fetch_add(&q->st_queued_async, 1);
    return AUDITQ_OK;
fail:
    atomic_fetch_add(&q->st_errors, 1);
    return rc;
}

auditq_rc auditq_flush(auditq *q, int timeout_ms)
{
    auditq_rc rc = AUDITQ_OK;
    producer_clear_error();
    if (!q) {
        producer_set_error("auditq_flush: NULL handle");
        return AUDITQ_ERR_INVALID_ARG;
    }
    struct timespec dl = clock_abs_after_ms(timeout_ms < 0 ? 0 : timeout_ms);
    pthread_mutex_lock(&q->mu);
    uint64_t target = q->queued_seq;
    q->flush_waiters++;
    pthread_cond_signal(&q->wake_flusher);
    while (q->acked_seq < target) {
        if (pthread_cond_timedwait(&q->acked, &q->mu, &dl) == ETIMEDOUT && q->acked_seq < target) {
            producer_set_error("flush: %llu events not yet acknowledged by Redis after %d ms%s%s",
                               (unsigned long long)(target - q->acked_seq), timeout_ms,
                               q->async_err[0] ? "; last error: " : "", q->async_err);
            rc = AUDITQ_ERR_TIMEOUT;
            break;
        }
    }
    q->flush_waiters--;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Records why delivery failed, for auditq_flush/auditq_close. */
static void note_async_err(auditq *q, const char *why)
{
    pthread_mutex_lock(&q->mu);
    snprintf(q->async_err, sizeof q->async_err, "%s", why);
    pthread_mutex_unlock(&q->mu);
}

/* Sends the not-yet-done groups, pipelined. 0 when all are done. */
static int send_groups(auditq *q, group *g)
{
    redisContext *c = q->flusher_ctx;
    int sent[AQ_PRIORITIES];
    int nsent = 0, failed = 0;

    for (int p = 0; p < AQ_PRIORITIES; p++) {
        if (g[p].done || g[p].argc <= 2)
            continue;
        if (redisAppendCommandArgv(c, g[p].argc, g[p].argv, g[p].argl) != REDIS_OK)
            return -1;
        sent[nsent++] = p;
    }
    for (int i = 0; i < nsent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return -1; /* connection state unknown: caller reconnects */
        if (r->type == REDIS_REPLY_INTEGER) {
            g[sent[i]].done = 1;
        } else {
            char why[400], wt[360];
            failed = 1; /* e.g. OOM, NOPERM, WRONGTYPE: keep the group, retry later */
            if (r->type == REDIS_REPLY_ERROR && redis_is_wrongtype(r->str)) {
                redis_explain_wrongtype(g[sent[i]].argv[1], NULL, "list", PRODUCER_WRONGTYPE_EFFECT, wt,
                                        sizeof wt);
                snprintf(why, sizeof why, "Redis refused LPUSH: %s", wt);
            } else if (r->type != REDIS_REPLY_ERROR ||
                       redis_explain_refusal(&q->target, "producer", "LPUSH", g[sent[i]].argv[1], r->str,
                                             why, sizeof why) == REDIS_REFUSED_NONE)
                snprintf(why, sizeof why, "Redis refused LPUSH: %s",
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            note_async_err(q, why);
        }
        freeReplyObject(r);
    }
    return failed ? -1 : 0;
}

/* The batch's entries [head, head + n) not yet acknowledged, in buffer
 * order, as spool items. The entries are the flusher's until it frees them
 * (senders only append behind them). */
static size_t spool_items(auditq *q, size_t n, const group *g, spool_item *it)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        pending *e = &q->ring[(q->head + i) % q->ring_cap];
        if (g[e->prio].done)
            continue;
        it[k].data = e->data;
        it[k].len = e->len;
        it[k].prio = e->prio;
        k++;
    }
    return k;
}

/* Appends the batch's unacknowledged entries to the spool. Returns how
 * many were spooled (*ok = 1), or sets *ok = 0 and counts the refusal (once
 * per batch, *counted) when the spool is full. */
static size_t spool_batch(auditq *q, size_t n, const group *g, spool_item *it, int only_if_backlog,
                          int *ok, int *counted)
{
    size_t k = spool_items(q, n, g, it);
    int r = spooler_put(q, it, k, only_if_backlog, 0);
    *ok = r == AUDITQ_OK;
    if (r == AUDITQ_ERR_SPOOL_FULL && !*counted) {
        atomic_fetch_add(&q->st_spool_rejected_full, k);
        *counted = 1;
    }
    return *ok ? k : 0;
}

static void *flusher_main(void *arg)
{
    auditq *q = arg;
    size_t maxb = (size_t)q->cfg.batch_size;
    spool_item *items = NULL;
    group g[AQ_PRIORITIES];
    uint64_t rng = (uint64_t)(uintptr_t)q ^ (uint64_t)clock_mono_us();
    int64_t first_seen = 0;
    int ok = 1;

    memset(g, 0, sizeof g);
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        g[p].argv = calloc(maxb + 2, sizeof *g[p].argv);
        g[p].argl = calloc(maxb + 2, sizeof *g[p].argl);
        if (!g[p].argv || !g[p].argl)
            ok = 0;
    }
    if (q->sp && !(items = calloc(maxb, sizeof *items)))
        ok = 0;
    pthread_mutex_lock(&q->mu);
    while (ok) {
        size_t avail = q->count;
        if (avail == 0) {
            if (q->closing)
                break;
            first_seen = 0;
            pthread_cond_wait(&q->wake_flusher, &q->mu);
            continue;
        }
        if (avail < maxb && !q->closing && q->flush_waiters == 0) {
            int64_t now = clock_mono_us();
            if (!first_seen)
                first_seen = now;
            int64_t left_us = first_seen + (int64_t)q->cfg.flush_interval_ms * 1000 - now;
            if (left_us > 0) {
                struct timespec dl = clock_abs_after_ms((left_us + 999) / 1000);
                pthread_cond_timedwait(&q->wake_flusher, &q->mu, &dl);
                continue;
            }
        }
        size_t n = avail < maxb ? avail : maxb;
        for (int p = 0; p < AQ_PRIORITIES; p++) {
            g[p].argc = 2;
            g[p].done = 0;
            g[p].argv[0] = "LPUSH";
            g[p].argl[0] = 5;
            g[p].argv[1] = q->keys.queue[p];
            g[p].argl[1] = strlen(q->keys.queue[p]);
        }
        for (size_t i = 0; i < n; i++) {
            pending *e = &q->ring[(q->head + i) % q->ring_cap];
            group *gr = &g[e->prio];
            gr->argv[gr->argc] = e->data;
            gr->argl[gr->argc] = e->len;
            gr->argc++;
        }
        pthread_mutex_unlock(&q->mu);

        /* Entries [head, head+n) are ours until acknowledged: senders only
         * append behind them and the ring never moves. */
        unsigned attempt = 0;
        int delivered = 0, counted_full = 0;
        size_t spooled = 0;
        if (spooler_backlog(q))
            spooled = spool_batch(q, n, g, items, 1, &delivered, &counted_full);
        while (!delivered) {
            char err[256];
            int auth_failed = 0, fresh = 0;
            if (!q->flusher_ctx) {
                fresh = 1;
                q->flusher_ctx = redis_connect(&q->target, q->cfg.connect_timeout_ms,
                                               q->cfg.timeout_ms, err, sizeof err, &auth_failed);
                if (!q->flusher_ctx)
                    note_async_err(q, err);
            }
            if (q->flusher_ctx && send_groups(q, g) == 0) {
                delivered = 1;
                break;
            }
            if (q->flusher_ctx && q->flusher_ctx->err) {
                redisFree(q->flusher_ctx);
                q->flusher_ctx = NULL;
            }
            /* Failed on a fresh connection, or for the second time: spool. */
            if (q->sp && (fresh || attempt >= 1)) {
                spooled = spool_batch(q, n, g, items, 0, &delivered, &counted_full);
                if (delivered)
                    break;
            }
            atomic_fetch_add(&q->st_redis_retries, 1);
            int64_t delay = backoff_delay_ms(++attempt, 20, 1000, &rng);
            pthread_mutex_lock(&q->mu);
            if (q->closing && clock_mono_us() >= q->close_deadline_us) {
                pthread_mutex_unlock(&q->mu);
                break;
            }
            if (q->closing && clock_mono_us() + delay * 1000 > q->close_deadline_us)
                delay = (q->close_deadline_us - clock_mono_us()) / 1000 + 1;
            struct timespec dl = clock_abs_after_ms(delay);
            pthread_cond_timedwait(&q->wake_flusher, &q->mu, &dl);
            pthread_mutex_unlock(&q->mu);
        }

        pthread_mutex_lock(&q->mu);
        if (!delivered)
            break; /* closing and out of time: auditq_close reports the rest */
        q->async_err[0] = '\0';
        for (size_t i = 0; i < n; i++) {
            pending *e = &q->ring[q->head];
            free(e->data);
            e->data = NULL;
            q->head = (q->head + 1) % q->ring_cap;
        }
        q->count -= n;
        q->acked_seq += n;
        first_seen = 0;
        atomic_fetch_add(&q->st_sent_async, n - spooled);
        pthread_cond_broadcast(&q->space);
        pthread_cond_broadcast(&q->acked);
    }
    pthread_mutex_unlock(&q->mu);
    for (int p = 0; p < AQ_PRIORITIES; p++) {
        free(g[p].argv);
        free(g[p].argl);
    }
    free(items);
    return NULL;
}

auditq_rc async_start(auditq *q)
{
    q->ring_cap = (size_t)q->cfg.buffer_events;
    q->ring = calloc(q->ring_cap, sizeof *q->ring);
    if (!q->ring) {
        producer_set_error("out of memory allocating buffer_events=%d", q->cfg.buffer_events);
        return AUDITQ_ERR_NOMEM;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->wake_flusher, NULL);
    pthread_cond_init(&q->space, NULL);
    pthread_cond_init(&q->acked, NULL);
    if (pthread_create(&q->flusher, NULL, flusher_main, q) != 0) {
        producer_set_error("cannot start the flusher thread: %s", strerror(errno));
        free(q->ring);
        return AUDITQ_ERR_NOMEM;
    }
    q->flusher_started = 1;
    return AUDITQ_OK;
}

auditq_rc async_stop(auditq *q)
{
    auditq_rc rc = AUDITQ_OK;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    q->close_deadline_us = clock_mono_us() + (int64_t)q->cfg.close_timeout_ms * 1000;
    pthread_cond_broadcast(&q->wake_flusher);
    pthread_cond_broadcast(&q->space);
    pthread_mutex_unlock(&q->mu);
    if (q->flusher_started)
        pthread_join(q->flusher, NULL);
    if (q->count > 0) {
        producer_set_error("auditq_close: %zu events could not be delivered to Redis within "
                           "close_timeout_ms=%d and are lost%s%s",
                           q->count, q->cfg.close_timeout_ms, q->async_err[0] ? "; last error: " : "",
                           q->async_err);
        rc = AUDITQ_ERR_TIMEOUT;
        for (size_t i = 0; i < q->count; i++)
            free(q->ring[(q->head + i) % q->ring_cap].data);
    }
    if (q->flusher_ctx)
        redisFree(q->flusher_ctx);
    free(q->ring);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->wake_flusher);
    pthread_cond_destroy(&q->space);
    pthread_cond_destroy(&q->acked);
    return rc;
}
