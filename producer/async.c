/* async.c -- the async path: a bounded in-process buffer and one flusher
 * thread that pipelines batches to Redis (contract: async.h).
 *
 * Calling thread: validate + encode (outside the lock), then one short
 * critical section to append the bytes to the ring. Nothing on this path
 * talks to Redis, so it costs microseconds whatever Redis is doing.
 *
 * Flusher: takes up to batch_size jobs from the head of the ring and sends
 * them with the one sender (common/spool_replay.c spool_push): one LPUSH per
 * priority, pipelined (at most four commands per batch). The jobs stay in the ring, counted against its
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
 *
 * Shards (redis_shards > 1, common/shards.h): with redis_shard_by = spread
 * a whole batch goes to one shard, the next batch to the next shard, and a
 * batch its shard does not take tries the next shard (spooled only once
 * every shard failed it); with
 * tenant an event with a tenant_id carries its shard (the others take the
 * batch's), the batch is split into one group per shard in ring order,
 * and the groups are delivered one after the other, each on that shard's
 * own connection, each as above. The batch leaves the ring once every
 * group was acknowledged (or spooled).
 */
#include "async.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "error.h"

/* One encoded job waiting in the buffer. */
typedef struct pending {
    char *data;     /* malloc'd msgpack bytes, owned by the buffer */
    uint32_t len;
    uint8_t prio;
    int16_t shard;  /* -1: the batch's shard */
} pending;

struct async_buf {
    struct auditq_config cfg;     /* the handle's settings (a copy) */
    aq_shards *shards;            /* the handle's; outlives us */
    spooler *sp;                  /* NULL: no spool; owned by the caller, outlives us */

    /* A ring of pending jobs guarded by mu. Jobs the flusher is sending
     * stay counted in `count` until Redis acknowledged them, so the buffer
     * never holds more than buffer_events jobs in total. */
    pthread_mutex_t mu;
    pthread_cond_t wake_flusher;  /* batch ready, flush asked, or closing */
    pthread_cond_t space;         /* room freed, or closing */
    pthread_cond_t acked;         /* acked_seq advanced */
    pending *ring;
    size_t ring_cap, head, count;
    uint64_t queued_seq;          /* jobs ever accepted */
    uint64_t acked_seq;           /* jobs ever acknowledged (FIFO) */
    int flush_waiters;
    int closing;
    int64_t close_deadline_us;    /* monotonic; flusher gives up after it */
    pthread_t flusher;
    redisContext **flusher_ctx;   /* per shard; the flusher thread's alone */
    unsigned long batch_seq;      /* flusher only: the next batch's shard (spread) */
    /* Why the flusher last failed to deliver (a refused login, NOPERM, a
     * refused connection), for async_flush/async_close to report; "" once
     * a batch got through. Guarded by mu. */
    char async_err[512];

    atomic_uint_fast64_t st_queued, st_sent, st_rejected_full, st_redis_retries;
};

auditq_rc async_put(async_buf *q, const char *data, size_t len, int prio, int shard)
{
    auditq_rc rc = AUDITQ_OK;
    char *copy = malloc(len);

    if (!copy) {
        producer_set_error("out of memory copying the event into the buffer");
        return AUDITQ_ERR_NOMEM;
    }
    memcpy(copy, data, len);

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
        return rc;
    }
    pending *slot = &q->ring[(q->head + q->count) % q->ring_cap];
    slot->data = copy;
    slot->len = (uint32_t)len;
    slot->prio = (uint8_t)prio;
    slot->shard = (int16_t)shard;
    q->count++;
    q->queued_seq++;
    /* Wake the flusher only when a full batch is ready; otherwise its
     * flush_interval timer picks the events up. */
    if (q->count == (size_t)q->cfg.batch_size)
        pthread_cond_signal(&q->wake_flusher);
    pthread_mutex_unlock(&q->mu);
    atomic_fetch_add(&q->st_queued, 1);
    return AUDITQ_OK;
}

auditq_rc async_flush(async_buf *q, int timeout_ms)
{
    auditq_rc rc = AUDITQ_OK;
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
static void note_async_err(async_buf *q, const char *why)
{
    pthread_mutex_lock(&q->mu);
    snprintf(q->async_err, sizeof q->async_err, "%.511s", why);
    pthread_mutex_unlock(&q->mu);
}

/* Appends the batch's items whose priority Redis has not acknowledged
 * (done) to the spool, compacting items[0..*n) to them first. Returns how
 * many were spooled (*ok = 1), or sets *ok = 0 and counts the refusal (once
 * per batch, *counted) when the spool is full. */
static size_t spool_batch(async_buf *q, spool_item *items, size_t *n, const int *done, int only_if_backlog,
                          int *ok, int *counted)
{
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (!done[items[i].prio])
            items[k++] = items[i];
    *n = k;
    int r = spooler_put(q->sp, items, k, only_if_backlog, 0);
    *ok = r == AUDITQ_OK;
    if (r == AUDITQ_ERR_SPOOL_FULL && !*counted) {
        spooler_count_rejected(q->sp, k);
        *counted = 1;
    }
    return *ok ? k : 0;
}

/* Delivers items[0..*nitems), all bound for shard sh, on that shard's
 * connection: pushed (and WAITed for redis_min_replicas), or spooled.
 * Retries with backoff until then, except while closing past the
 * deadline. Returns 1 when delivered; *spooled counts the spooled ones. */
static int deliver_group(async_buf *q, spool_pusher *pusher, int sh, spool_item *items, size_t *nitems,
                         size_t *spooled, int *counted_full, uint64_t *rng)
{
    unsigned attempt = 0;
    int delivered = 0;
    int done[AQ_PRIORITIES] = {0};
    /* spread: the batch may go to any shard, so after a failure it tries
     * the next one (the priority groups already pushed stay done). */
    int movable = !q->cfg.shard_by_tenant && q->shards->n > 1;
    const aq_keys *keys = &q->shards->keys[sh];
    if (spooler_backlog(q->sp))
        *spooled += spool_batch(q, items, nitems, done, 1, &delivered, counted_full);
    while (!delivered) {
        char err[1400];
        int auth_failed = 0, fresh = 0, broken = 0;
        if (!q->flusher_ctx[sh]) {
            fresh = 1;
            q->flusher_ctx[sh] = shard_connect(q->shards, sh, q->cfg.connect_timeout_ms, q->cfg.timeout_ms, err,
                                               sizeof err, &auth_failed);
            if (!q->flusher_ctx[sh])
                note_async_err(q, err);
        }
        if (q->flusher_ctx[sh]) {
            if (spool_push(q->flusher_ctx[sh], pusher, keys, &q->shards->target[sh], "producer",
                           PRODUCER_WRONGTYPE_EFFECT, items, *nitems, done, &broken, err, sizeof err) == 0) {
                /* redis_min_replicas: the batch counts as delivered
                 * only once WAIT saw it on enough replicas; else it is
                 * pushed again (or spooled) like a failed push. A
                 * second push of events already on the master is
                 * harmless: the worker stores an event_id once. */
                int wt = q->cfg.timeout_ms / 2 > 0 ? q->cfg.timeout_ms / 2 : 1;
                int w = q->cfg.min_replicas > 0
                            ? redis_wait_replicas(q->flusher_ctx[sh], q->cfg.min_replicas, wt, err, sizeof err)
                            : 0;
                if (w == 0)
                    return 1;
                memset(done, 0, sizeof done);
                broken = w < 0;
            }
            /* A refusal (OOM, NOPERM, WRONGTYPE) keeps the groups Redis
             * refused for a retry; a lost connection is not news. */
            if (!broken)
                note_async_err(q, err);
            if (broken || q->flusher_ctx[sh]->err) {
                /* Unlinked first: see async_abandon. */
                redisContext *c = q->flusher_ctx[sh];
                q->flusher_ctx[sh] = NULL;
                redisFree(c);
            }
        }
        if (movable) {
            sh = (sh + 1) % q->shards->n;
            keys = &q->shards->keys[sh];
        }
        /* Failed on a fresh connection, or for the second time: spool. */
        if (q->sp && (movable ? attempt + 1 >= (unsigned)q->shards->n : (fresh || attempt >= 1))) {
            *spooled += spool_batch(q, items, nitems, done, 0, &delivered, counted_full);
            if (delivered)
                break;
        }
        atomic_fetch_add(&q->st_redis_retries, 1);
        int64_t delay = backoff_delay_ms(++attempt, 20, 1000, rng);
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
    return delivered;
}

static void *flusher_main(void *arg)
{
    async_buf *q = arg;
    size_t maxb = (size_t)q->cfg.batch_size;
    int nsh = q->shards->n;
    spool_item *items = calloc(maxb, sizeof *items);
    spool_item *sorted = calloc(maxb, sizeof *sorted);
    int *ish = calloc(maxb, sizeof *ish);
    size_t *from = calloc((size_t)nsh + 1, sizeof *from);
    spool_pusher pusher;
    uint64_t rng = (uint64_t)(uintptr_t)q ^ (uint64_t)clock_mono_us();
    int64_t first_seen = 0;
    int ok = items && sorted && ish && from && spool_pusher_init(&pusher, maxb) == 0;

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
        int rr = (int)(q->batch_seq++ % (unsigned long)nsh);
        for (size_t i = 0; i < n; i++) {
            const pending *e = &q->ring[(q->head + i) % q->ring_cap];
            items[i].data = e->data;
            items[i].len = e->len;
            items[i].prio = e->prio;
            ish[i] = e->shard >= 0 ? e->shard : rr;
        }
        pthread_mutex_unlock(&q->mu);

        /* Entries [head, head+n) are ours until acknowledged: senders only
         * append behind them and the ring never moves. Grouped by shard,
         * ring order kept within each group (a counting sort). */
        memset(from, 0, ((size_t)nsh + 1) * sizeof *from);
        for (size_t i = 0; i < n; i++)
            from[ish[i] + 1]++;
        for (int k = 0; k < nsh; k++)
            from[k + 1] += from[k];
        for (size_t i = 0; i < n; i++)
            sorted[from[ish[i]]++] = items[i];
        /* from[k] is now the end of group k; group k starts at from[k-1]. */
        int delivered = 1, counted_full = 0;
        size_t spooled = 0;
        for (int k = 0; k < nsh && delivered; k++) {
            size_t lo = k ? from[k - 1] : 0, cnt = from[k] - lo;
            if (cnt > 0)
                delivered = deliver_group(q, &pusher, k, sorted + lo, &cnt, &spooled, &counted_full, &rng);
        }

        pthread_mutex_lock(&q->mu);
        if (!delivered)
            break; /* closing and out of time: async_close reports the rest */
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
        atomic_fetch_add(&q->st_sent, n - spooled);
        pthread_cond_broadcast(&q->space);
        pthread_cond_broadcast(&q->acked);
    }
    pthread_mutex_unlock(&q->mu);
    if (ok)
        spool_pusher_free(&pusher);
    free(items);
    free(sorted);
    free(ish);
    free(from);
    return NULL;
}

auditq_rc async_open(const struct auditq_config *cfg, aq_shards *sh, spooler *sp, async_buf **out)
{
    async_buf *q = calloc(1, sizeof *q);

    *out = NULL;
    if (!q) {
        producer_set_error("out of memory allocating the handle");
        return AUDITQ_ERR_NOMEM;
    }
    q->cfg = *cfg;
    q->shards = sh;
    q->sp = sp;
    q->ring_cap = (size_t)cfg->buffer_events;
    q->ring = calloc(q->ring_cap, sizeof *q->ring);
    q->flusher_ctx = calloc((size_t)sh->n, sizeof *q->flusher_ctx);
    if (!q->ring || !q->flusher_ctx) {
        producer_set_error("out of memory allocating buffer_events=%d", cfg->buffer_events);
        free(q->ring);
        free(q->flusher_ctx);
        free(q);
        return AUDITQ_ERR_NOMEM;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->wake_flusher, NULL);
    pthread_cond_init(&q->space, NULL);
    pthread_cond_init(&q->acked, NULL);
    if (pthread_create(&q->flusher, NULL, flusher_main, q) != 0) {
        producer_set_error("cannot start the flusher thread: %s", strerror(errno));
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->wake_flusher);
        pthread_cond_destroy(&q->space);
        pthread_cond_destroy(&q->acked);
        free(q->ring);
        free(q->flusher_ctx);
        free(q);
        return AUDITQ_ERR_NOMEM;
    }
    *out = q;
    return AUDITQ_OK;
}

auditq_rc async_close(async_buf *q)
{
    auditq_rc rc = AUDITQ_OK;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    q->close_deadline_us = clock_mono_us() + (int64_t)q->cfg.close_timeout_ms * 1000;
    pthread_cond_broadcast(&q->wake_flusher);
    pthread_cond_broadcast(&q->space);
    pthread_mutex_unlock(&q->mu);
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
    for (int k = 0; k < q->shards->n; k++)
        if (q->flusher_ctx[k])
            redisFree(q->flusher_ctx[k]);
    free(q->flusher_ctx);
    free(q->ring);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->wake_flusher);
    pthread_cond_destroy(&q->space);
    pthread_cond_destroy(&q->acked);
    free(q);
    return rc;
}

void async_abandon(async_buf *q)
{
    /* Only this thread exists in the child: the flusher, and any thread
     * that held mu at the fork, stayed in the parent. The buffered jobs
     * are the parent's to deliver; here they are only freed. */
    for (size_t i = 0; i < q->count; i++)
        free(q->ring[(q->head + i) % q->ring_cap].data);
    for (int k = 0; k < q->shards->n; k++)
        if (q->flusher_ctx[k])
            redisFree(q->flusher_ctx[k]);
    free(q->flusher_ctx);
    free(q->ring);
    free(q);
}

void async_stats(async_buf *q, auditq_stats *out)
{
    out->queued_async = atomic_load(&q->st_queued);
    out->sent_async = atomic_load(&q->st_sent);
    out->rejected_full = atomic_load(&q->st_rejected_full);
    out->redis_retries = atomic_load(&q->st_redis_retries);
    pthread_mutex_lock(&q->mu);
    out->buffered = q->count;
    pthread_mutex_unlock(&q->mu);
}
