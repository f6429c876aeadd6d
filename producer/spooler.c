/* spooler.c -- the producer spool: where events go while Redis fails, and
 * the thread that replays them (contract: spooler.h). ("Fallback to synchronous on queue
 * failure", without putting the database on the request path.)
 *
 * DESIGN
 *
 * Files. spool_path holds the records (format: common/spool.c and
 * docs/PROTOCOL.md), spool_path.pos the replay position. The handle holds
 * an exclusive flock on spool_path from auditq_open to auditq_close, so two
 * handles or processes never share a spool, and `auditqctl spool replay`
 * refuses a spool a live producer owns.
 *
 * Threads and locks. Three kinds of threads touch the spool: application
 * threads in auditq_send, the async flusher (async.c), and one replay
 * thread per handle (spooler_main below, with its own Redis connection).
 * mu guards the spool handle and the fields of struct spooler
 * marked so; it is a leaf lock (taken with no other auditq lock held).
 * Appends and the replay position are changed only under it. The replay
 * thread reads records through the file descriptor without the lock, but
 * only below the file size it saw under the lock: appends only extend the
 * file, and only the replay thread itself ever cuts it back.
 *
 * Routing. spool_backlog is 1 while records wait for replay. Then every new
 * event goes to the spool too (a sync call never touches Redis, an async
 * batch is appended as a whole), so the events of one thread reach Redis
 * in the order it sent them. With no backlog, events go to Redis; on
 * AUDITQ_ERR_CONNECT / AUDITQ_ERR_TIMEOUT (sync) or a batch that fails on a
 * fresh connection or twice (async) they are appended instead and the
 * backlog begins. At spool_max_bytes an event tries Redis directly first
 * (order across the spool is given up for it, availability kept), then
 * spool_full_policy applies: error -> AUDITQ_ERR_SPOOL_FULL at once, block
 * -> wait up to timeout_ms for the replay to empty the spool. Async batches
 * the spool refuses stay in the buffer (full_policy then applies to
 * callers). Nothing is dropped silently; refusals are counted.
 *
 * Replay. The replay thread sleeps until there is a backlog, then: connects
 * (bounded by connect_timeout_ms / timeout_ms -- this is the probe), reads
 * up to batch_size records (<= 4 MiB) from the position, LPUSHes them in
 * one pipelined round trip (one variadic LPUSH per priority, file order
 * kept), and only after Redis acknowledged all of them writes the new
 * position to spool_path.pos. On failure it backs off (50 ms .. 1 s,
 * jittered) and retries the same chunk. When the position reaches the end
 * (checked under mu, so no append can slip in) the file is cut back
 * to a fresh header and the backlog ends. Corrupt or torn regions are
 * skipped, counted in spool_corrupt_records and described by
 * auditq_spool_problem(); they are never replayed.
 *
 * Durability (spool_fsync). always: the record is fdatasync'ed before the
 * call returns AUDITQ_OK (or before the async batch counts as
 * acknowledged), and every replay position too. interval: the replay thread
 * syncs every spool_fsync_interval_ms. never: the kernel decides. With
 * every policy a process crash (kill -9) loses nothing written; only an OS
 * crash or power loss can lose the last interval (interval) or the last
 * ~30 s of writeback (never), and may make a replayed chunk replay again.
 *
 * Failure windows, and what closes each:
 *  1. A sync LPUSH times out after Redis executed it; the event is spooled
 *     and later replayed: two copies in Redis. Both carry the same event_id
 *     and occurred_at, and the worker's INSERT ... ON CONFLICT DO NOTHING
 *     on the primary key (event_id, occurred_at) stores one row.
 *  2. An async pipeline loses its connection after Redis executed some of
 *     its LPUSHes; the batch is spooled: same as 1.
 *  3. The replay pushes a chunk and the process dies before the position
 *     is written: the next open replays that one chunk again: same as 1.
 *  4. The process dies inside an append: the record was not acknowledged;
 *     the torn tail is cut at the next open and counted.
 *  5. The process dies between cutting the replayed file back and writing
 *     the new position: the file has a new id, so the stale position is
 *     ignored and the (empty) file is read from its first record.
 *  6. The process dies with records waiting: the next auditq_open with the
 *     same spool_path replays them, or `auditqctl spool replay FILE` does.
 *  7. Redis keeps failing at close: auditq_close replays until
 *     close_timeout_ms or the first failed probe; the rest stays on disk
 *     (6). Buffered async events are spooled, not lost.
 *  8. The disk fails or fills (EIO, ENOSPC): the partial write is cut off,
 *     sync calls return AUDITQ_ERR_SPOOL (spool_errors), async batches stay
 *     in the buffer and are retried.
 */
#include "spooler.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "error.h"

#define REPLAY_MAX_BYTES (4u << 20)

struct spooler {
    struct auditq_config cfg;     /* the handle's settings (a copy) */
    aq_shards *shards;            /* the handle's; outlives us */
    int rshard;                   /* the shard the replay pushes to now (replay thread) */
    /* sp is set at open and never changes; everything it points to, and
     * the fields below up to st_*, are guarded by mu -- except that the
     * replay thread reads records through sp's fd below the size it saw
     * under the lock (appends only extend the file). */
    spool *sp;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* records to replay, space freed, closing */
    atomic_int backlog;           /* records wait: new events go to the spool (written under mu) */
    int closing;
    int64_t deadline_us;          /* monotonic; the replay gives up after it */
    int dirty;                    /* appended since the last fdatasync */
    pthread_t thread;             /* the replay thread */
    redisContext *rctx;           /* the replay thread's connection to shard rshard (spooler_abandon
                                     reads it in a child) */
    spool_pusher pusher;          /* the replay thread's LPUSH arguments */
    char damage[1200];            /* last corruption / I/O problem (sticky) */
    char replay_err[600];         /* why the replay is failing now; "" when it works */
    atomic_uint_fast64_t st_spooled, st_replayed, st_rejected_full, st_corrupt, st_errors, st_replay_retries;
};

/* One chunk onto the queues with the sender every producer path uses; an
 * ACL refusal or a WRONGTYPE is explained as for auditq_send. */
static int push_chunk(spooler *q, redisContext *c, const spool_chunk *ch, int *broken, char *err, size_t errlen)
{
    int done[AQ_PRIORITIES] = {0};

    *broken = 0;
    if (ch->n == 0)
        return 0;
    if (spool_push(c, &q->pusher, &q->shards->keys[q->rshard], &q->shards->target[q->rshard], "producer",
                   PRODUCER_WRONGTYPE_EFFECT, ch->items,
                   ch->n, done, broken, err, errlen) != 0)
        return -1;
    /* redis_min_replicas: the chunk leaves the spool (its position is
     * saved past it) only once WAIT saw it on enough replicas, as for an
     * async batch; else it stays and is pushed again -- harmless, the
     * worker stores an event_id once. Without this a fail-over right
     * after the replay lost events the spool had already given up. */
    if (q->cfg.min_replicas > 0) {
        int wt = q->cfg.timeout_ms / 2 > 0 ? q->cfg.timeout_ms / 2 : 1;
        int w = redis_wait_replicas(c, q->cfg.min_replicas, wt, err, errlen);
        if (w != 0) {
            *broken = w < 0;
            return -1;
        }
    }
    return 0;
}

int spooler_backlog(spooler *q)
{
    return q && atomic_load(&q->backlog);
}

void spooler_count_rejected(spooler *q, uint64_t n)
{
    atomic_fetch_add(&q->st_rejected_full, n);
}

static void set_damage(spooler *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a corruption or I/O problem for auditq_spool_problem. Caller
 * holds mu (or is the only thread, at open). */
static void set_damage(spooler *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->damage, sizeof q->damage, fmt, ap);
    va_end(ap);
}

int spooler_put(spooler *q, const spool_item *items, size_t n, int only_if_backlog, int wait_ms)
{
    char err[300];
    int r;
    struct timespec dl = clock_abs_after_ms(wait_ms > 0 ? wait_ms : 0);

    if (n == 0)
        return AUDITQ_OK;
    pthread_mutex_lock(&q->mu);
    if (only_if_backlog && !atomic_load(&q->backlog)) {
        pthread_mutex_unlock(&q->mu);
        return SPOOLER_NO_BACKLOG;
    }
    for (;;) {
        r = spool_append(q->sp, items, n, (uint64_t)q->cfg.spool_max_bytes,
                         q->cfg.spool_fsync == SPOOL_FSYNC_ALWAYS, err, sizeof err);
        if (r != 1 || wait_ms <= 0)
            break;
        /* Full: only the replay emptying the file frees space. */
        if (pthread_cond_timedwait(&q->cv, &q->mu, &dl) == ETIMEDOUT) {
            r = spool_append(q->sp, items, n, (uint64_t)q->cfg.spool_max_bytes,
                             q->cfg.spool_fsync == SPOOL_FSYNC_ALWAYS, err, sizeof err);
            break;
        }
    }
    if (r == 0) {
        if (q->cfg.spool_fsync != SPOOL_FSYNC_ALWAYS)
            q->dirty = 1;
        if (!atomic_load(&q->backlog)) {
            atomic_store(&q->backlog, 1);
            pthread_cond_broadcast(&q->cv);
        }
        pthread_mutex_unlock(&q->mu);
        atomic_fetch_add(&q->st_spooled, n);
        return AUDITQ_OK;
    }
    if (r == 1) {
        uint64_t size = spool_size(q->sp);
        pthread_mutex_unlock(&q->mu);
        producer_set_error("spool %s is full: %" PRIu64 " bytes, spool_max_bytes=%lld%s", q->cfg.spool_path,
                           size, (long long)q->cfg.spool_max_bytes,
                           wait_ms > 0 ? " (waited timeout_ms for the replay)" : "");
        return AUDITQ_ERR_SPOOL_FULL;
    }
    set_damage(q, "spool %s: %s", q->cfg.spool_path, err);
    pthread_mutex_unlock(&q->mu);
    atomic_fetch_add(&q->st_errors, 1);
    producer_set_error("%s", err);
    return AUDITQ_ERR_SPOOL;
}

/* The replay thread: see DESIGN. */
static void *spooler_main(void *arg)
{
    spooler *q = arg;
    spool_chunk ch;
    unsigned attempt = 0;
    int gave_up = 0, closing_seen = 0;
    int64_t next_try = 0, last_sync = clock_mono_us();
    int64_t interval_us = (int64_t)q->cfg.spool_fsync_interval_ms * 1000;
    uint64_t rng = (uint64_t)(uintptr_t)q ^ (uint64_t)clock_mono_us() ^ 0x9e3779b97f4a7c15ULL;
    char err[1024];
    int fd = spool_fd(q->sp);

    memset(&ch, 0, sizeof ch);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        int64_t now = clock_mono_us();
        if (q->cfg.spool_fsync == SPOOL_FSYNC_INTERVAL && q->dirty && now - last_sync >= interval_us) {
            q->dirty = 0;
            last_sync = now;
            if (spool_sync(q->sp, err, sizeof err) != 0) {
                atomic_fetch_add(&q->st_errors, 1);
                set_damage(q, "spool %s: %s", q->cfg.spool_path, err);
            }
        }
        if (q->closing && !closing_seen) {
            closing_seen = 1;
            next_try = 0; /* one more try now, not after the current backoff */
        }
        int backlog = atomic_load(&q->backlog);
        if (q->closing && (!backlog || gave_up || now >= q->deadline_us))
            break;
        if (!backlog || now < next_try) {
            int64_t wake = 0;
            if (backlog)
                wake = next_try;
            if (q->cfg.spool_fsync == SPOOL_FSYNC_INTERVAL && q->dirty &&
                (!wake || last_sync + interval_us < wake))
                wake = last_sync + interval_us;
            if (q->closing && (!wake || q->deadline_us < wake))
                wake = q->deadline_us;
            if (!wake) {
                pthread_cond_wait(&q->cv, &q->mu);
            } else {
                int64_t ms = (wake - now + 999) / 1000;
                struct timespec dl = clock_abs_after_ms(ms > 0 ? ms : 0);
                pthread_cond_timedwait(&q->cv, &q->mu, &dl);
            }
            continue;
        }
        uint64_t start = spool_pos(q->sp), limit = spool_size(q->sp);
        pthread_mutex_unlock(&q->mu);

        int ok = 0, broken = 0, disk = 0;
        if (!q->rctx) {
            q->rctx = shard_connect(q->shards, q->rshard, q->cfg.connect_timeout_ms, q->cfg.timeout_ms, err,
                                    sizeof err, NULL);
            /* Shards: the next attempt tries the next one, so a spool
             * drains while any shard takes writes. */
            if (!q->rctx)
                q->rshard = (q->rshard + 1) % q->shards->n;
        }
        redisContext *c = q->rctx;
        if (c) {
            if (spool_read_chunk(fd, start, limit, (size_t)q->cfg.batch_size, REPLAY_MAX_BYTES, &ch, err,
                                 sizeof err) != 0)
                disk = 1;
            else if (push_chunk(q, c, &ch, &broken, err, sizeof err) == 0)
                ok = 1;
            else if (broken) {
                q->rctx = NULL; /* unlinked first: see spooler_abandon */
                redisFree(c);
                q->rshard = (q->rshard + 1) % q->shards->n;
            }
        }

        pthread_mutex_lock(&q->mu);
        if (ok && spool_set_pos(q->sp, ch.end, ch.n, 1, q->cfg.spool_fsync == SPOOL_FSYNC_ALWAYS, err,
                                sizeof err) != 0) {
            ok = 0;
            disk = 1; /* pushed but not recorded: this chunk will be pushed again (window 3) */
        }
        if (ok) {
            atomic_fetch_add(&q->st_replayed, ch.n);
            if (ch.bad_kind != SPOOL_RECORD) {
                atomic_fetch_add(&q->st_corrupt, 1);
                set_damage(q, "spool %s: %s record at offset %" PRIu64 " skipped, not replayed: %s",
                           q->cfg.spool_path, ch.bad_kind == SPOOL_TORN ? "torn" : "corrupt", ch.bad.off,
                           ch.bad.why);
            }
            attempt = 0;
            next_try = 0;
            q->replay_err[0] = '\0';
            if (spool_pos(q->sp) == spool_size(q->sp)) {
                atomic_store(&q->backlog, 0);
                pthread_cond_broadcast(&q->cv); /* block-policy waiters: space again */
            }
        } else {
            if (disk) {
                atomic_fetch_add(&q->st_errors, 1);
                set_damage(q, "spool %s: replay: %s", q->cfg.spool_path, err);
            } else {
                atomic_fetch_add(&q->st_replay_retries, 1);
                snprintf(q->replay_err, sizeof q->replay_err, "%.599s", err);
            }
            next_try = clock_mono_us() + backoff_delay_ms(++attempt, 50, 1000, &rng) * 1000;
            if (q->closing)
                gave_up = 1; /* closing: Redis is not answering; keep the rest on disk */
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (q->rctx) {
        redisContext *c = q->rctx;
        q->rctx = NULL;
        redisFree(c);
    }
    spool_chunk_free(&ch);
    return NULL;
}

auditq_rc spooler_open(const struct auditq_config *cfg, aq_shards *sh, spooler **out)
{
    spool_open_info info;
    char err[600];
    spooler *q;

    *out = NULL;
    if (!cfg->spool_path[0])
        return AUDITQ_OK;
    q = calloc(1, sizeof *q);
    if (!q) {
        producer_set_error("out of memory allocating the spool");
        return AUDITQ_ERR_NOMEM;
    }
    q->cfg = *cfg;
    q->shards = sh;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    atomic_store(&q->backlog, 0);
    q->sp = spool_open(q->cfg.spool_path, q->cfg.ns, SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err,
                       sizeof err);
    if (!q->sp) {
        producer_set_error("spool_path: %s", err);
        goto fail;
    }
    if (info.torn_bytes) {
        atomic_store(&q->st_corrupt, 1);
        set_damage(q, "spool %s: cut off a damaged tail at offset %" PRIu64 " (%" PRIu64 " bytes): %s",
                    q->cfg.spool_path, info.torn_off, info.torn_bytes, info.torn_why);
    }
    atomic_store(&q->backlog, spool_pos(q->sp) < spool_size(q->sp));
    if (spool_pusher_init(&q->pusher, (size_t)q->cfg.batch_size) != 0) {
        producer_set_error("out of memory allocating the spool replay");
        spool_close(q->sp);
        goto fail;
    }
    if (pthread_create(&q->thread, NULL, spooler_main, q) != 0) {
        producer_set_error("cannot start the spool replay thread: %s", strerror(errno));
        spool_pusher_free(&q->pusher);
        spool_close(q->sp);
        goto fail;
    }
    *out = q;
    return AUDITQ_OK;
fail:
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
    return AUDITQ_ERR_SPOOL;
}

void spooler_close(spooler *q, int64_t deadline_us)
{
    char err[300];
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    q->deadline_us = deadline_us;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    if (q->cfg.spool_fsync == SPOOL_FSYNC_INTERVAL && q->dirty)
        (void)spool_sync(q->sp, err, sizeof err);
    spool_close(q->sp);
    spool_pusher_free(&q->pusher);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

void spooler_abandon(spooler *q)
{
    if (!q)
        return;
    /* spool_close closes the child's descriptors only: the flock belongs
     * to the open file description the parent still holds, so the parent
     * keeps its lock, and the child no longer holds it once the parent
     * closes or exits. Nothing is synced or replayed from here. */
    if (q->rctx)
        redisFree(q->rctx);
    spool_close(q->sp);
    spool_pusher_free(&q->pusher);
    free(q);
}

void spooler_stats(spooler *q, auditq_stats *out)
{
    out->spooled = atomic_load(&q->st_spooled);
    out->replayed = atomic_load(&q->st_replayed);
    out->spool_rejected_full = atomic_load(&q->st_rejected_full);
    out->spool_corrupt_records = atomic_load(&q->st_corrupt);
    out->spool_errors = atomic_load(&q->st_errors);
    out->replay_retries = atomic_load(&q->st_replay_retries);
    pthread_mutex_lock(&q->mu);
    out->spool_records = spool_pending(q->sp);
    out->spool_bytes = spool_size(q->sp);
    pthread_mutex_unlock(&q->mu);
}

void spooler_problem(spooler *q, char *buf, size_t len)
{
    pthread_mutex_lock(&q->mu);
    if (q->damage[0] && q->replay_err[0])
        snprintf(buf, len, "%s; replay waiting for Redis: %s", q->damage, q->replay_err);
    else if (q->replay_err[0])
        snprintf(buf, len, "spool %s: replay waiting for Redis: %s", q->cfg.spool_path, q->replay_err);
    else
        snprintf(buf, len, "%s", q->damage);
    pthread_mutex_unlock(&q->mu);
}
