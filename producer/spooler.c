/* spooler.c -- the producer spool: where events go while Redis fails, and
 * the thread that replays them. ("Fallback to synchronous on queue
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
 * spool_mu guards the spool handle and the fields next to it in
 * struct auditq; it is a leaf lock (taken with no other auditq lock held).
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
 * (checked under spool_mu, so no append can slip in) the file is cut back
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
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "clock.h"
#include "producer.h"

#define REPLAY_MAX_BYTES (4u << 20)
#define SPOOL_MAX_BYTES_MIN 4096LL
#define SPOOL_MAX_BYTES_MAX (1LL << 50)

int spooler_config_set(auditq_config *cfg, const char *key, const char *value, auditq_rc *rc)
{
    *rc = AUDITQ_OK;
    if (strcmp(key, "spool_path") == 0) {
        if (strlen(value) >= sizeof cfg->spool_path) {
            producer_set_error("spool_path: longer than %zu bytes", sizeof cfg->spool_path - 1);
            *rc = AUDITQ_ERR_CONFIG;
        } else {
            memcpy(cfg->spool_path, value, strlen(value) + 1);
        }
        return 1;
    }
    if (strcmp(key, "spool_fsync") == 0) {
        if (strcmp(value, "always") == 0)
            cfg->spool_fsync = SPOOL_FSYNC_ALWAYS;
        else if (strcmp(value, "interval") == 0)
            cfg->spool_fsync = SPOOL_FSYNC_INTERVAL;
        else if (strcmp(value, "never") == 0)
            cfg->spool_fsync = SPOOL_FSYNC_NEVER;
        else {
            producer_set_error("spool_fsync = '%s': must be always, interval or never", value);
            *rc = AUDITQ_ERR_CONFIG;
        }
        return 1;
    }
    if (strcmp(key, "spool_full_policy") == 0) {
        if (strcmp(value, "error") == 0)
            cfg->spool_full_policy = SPOOL_FULL_ERROR;
        else if (strcmp(value, "block") == 0)
            cfg->spool_full_policy = SPOOL_FULL_BLOCK;
        else {
            producer_set_error("spool_full_policy = '%s': must be error or block", value);
            *rc = AUDITQ_ERR_CONFIG;
        }
        return 1;
    }
    if (strcmp(key, "spool_max_bytes") == 0) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < SPOOL_MAX_BYTES_MIN || v > SPOOL_MAX_BYTES_MAX) {
            producer_set_error("spool_max_bytes = '%s': must be an integer from %lld to %lld (bytes)", value,
                               SPOOL_MAX_BYTES_MIN, SPOOL_MAX_BYTES_MAX);
            *rc = AUDITQ_ERR_CONFIG;
        } else {
            cfg->spool_max_bytes = v;
        }
        return 1;
    }
    return 0;
}

int spooler_backlog(auditq *q)
{
    return q->sp && atomic_load(&q->spool_backlog);
}

static void set_damage(auditq *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a corruption or I/O problem for auditq_spool_problem. Caller
 * holds spool_mu (or is the only thread, at open). */
static void set_damage(auditq *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->spool_damage, sizeof q->spool_damage, fmt, ap);
    va_end(ap);
}

int spooler_put(auditq *q, const spool_item *items, size_t n, int only_if_backlog, int wait_ms)
{
    char err[300];
    int r;
    struct timespec dl = clock_abs_after_ms(wait_ms > 0 ? wait_ms : 0);

    if (n == 0)
        return AUDITQ_OK;
    pthread_mutex_lock(&q->spool_mu);
    if (only_if_backlog && !atomic_load(&q->spool_backlog)) {
        pthread_mutex_unlock(&q->spool_mu);
        return SPOOLER_NO_BACKLOG;
    }
    for (;;) {
        r = spool_append(q->sp, items, n, (uint64_t)q->cfg.spool_max_bytes,
                         q->cfg.spool_fsync == SPOOL_FSYNC_ALWAYS, err, sizeof err);
        if (r != 1 || wait_ms <= 0)
            break;
        /* Full: only the replay emptying the file frees space. */
        if (pthread_cond_timedwait(&q->spool_cv, &q->spool_mu, &dl) == ETIMEDOUT) {
            r = spool_append(q->sp, items, n, (uint64_t)q->cfg.spool_max_bytes,
                             q->cfg.spool_fsync == SPOOL_FSYNC_ALWAYS, err, sizeof err);
            break;
        }
    }
    if (r == 0) {
        if (q->cfg.spool_fsync != SPOOL_FSYNC_ALWAYS)
            q->spool_dirty = 1;
        if (!atomic_load(&q->spool_backlog)) {
            atomic_store(&q->spool_backlog, 1);
            pthread_cond_broadcast(&q->spool_cv);
        }
        pthread_mutex_unlock(&q->spool_mu);
        atomic_fetch_add(&q->st_spooled, n);
        return AUDITQ_OK;
    }
    if (r == 1) {
        uint64_t size = spool_size(q->sp);
        pthread_mutex_unlock(&q->spool_mu);
        producer_set_error("spool %s is full: %" PRIu64 " bytes, spool_max_bytes=%lld%s", q->cfg.spool_path,
                           size, (long long)q->cfg.spool_max_bytes,
                           wait_ms > 0 ? " (waited timeout_ms for the replay)" : "");
        return AUDITQ_ERR_SPOOL_FULL;
    }
    set_damage(q, "spool %s: %s", q->cfg.spool_path, err);
    pthread_mutex_unlock(&q->spool_mu);
    atomic_fetch_add(&q->st_spool_errors, 1);
    producer_set_error("%s", err);
    return AUDITQ_ERR_SPOOL;
}

/* The replay thread: see DESIGN. */
static void *spooler_main(void *arg)
{
    auditq *q = arg;
    redisContext *c = NULL;
    spool_chunk ch;
    unsigned attempt = 0;
    int gave_up = 0, closing_seen = 0;
    int64_t next_try = 0, last_sync = clock_mono_us();
    int64_t interval_us = (int64_t)q->cfg.spool_fsync_interval_ms * 1000;
    uint64_t rng = (uint64_t)(uintptr_t)q ^ (uint64_t)clock_mono_us() ^ 0x9e3779b97f4a7c15ULL;
    char err[300];
    int fd = spool_fd(q->sp);

    memset(&ch, 0, sizeof ch);
    pthread_mutex_lock(&q->spool_mu);
    for (;;) {
        int64_t now = clock_mono_us();
        if (q->cfg.spool_fsync == SPOOL_FSYNC_INTERVAL && q->spool_dirty && now - last_sync >= interval_us) {
            q->spool_dirty = 0;
            last_sync = now;
            if (spool_sync(q->sp, err, sizeof err) != 0) {
                atomic_fetch_add(&q->st_spool_errors, 1);
                set_damage(q, "spool %s: %s", q->cfg.spool_path, err);
            }
        }
        if (q->spool_closing && !closing_seen) {
            closing_seen = 1;
            next_try = 0; /* one more try now, not after the current backoff */
        }
        int backlog = atomic_load(&q->spool_backlog);
        if (q->spool_closing && (!backlog || gave_up || now >= q->spool_deadline_us))
            break;
        if (!backlog || now < next_try) {
            int64_t wake = 0;
            if (backlog)
                wake = next_try;
            if (q->cfg.spool_fsync == SPOOL_FSYNC_INTERVAL && q->spool_dirty &&
                (!wake || last_sync + interval_us < wake))
                wake = last_sync + interval_us;
            if (q->spool_closing && (!wake || q->spool_deadline_us < wake))
                wake = q->spool_deadline_us;
            if (!wake) {
                pthread_cond_wait(&q->spool_cv, &q->spool_mu);
            } else {
                int64_t ms = (wake - now + 999) / 1000;
                struct timespec dl = clock_abs_after_ms(ms > 0 ? ms : 0);
                pthread_cond_timedwait(&q->spool_cv, &q->spool_mu, &dl);
            }
            continue;
        }
        uint64_t start = spool_pos(q->sp), limit = spool_size(q->sp);
        pthread_mutex_unlock(&q->spool_mu);

        int ok = 0, broken = 0, disk = 0;
        if (!c)
            c = redis_connect(&q->target, q->cfg.connect_timeout_ms, q->cfg.timeout_ms, err, sizeof err, NULL);
        if (c) {
            if (spool_read_chunk(fd, start, limit, (size_t)q->cfg.batch_size, REPLAY_MAX_BYTES, &ch, err,
                                 sizeof err) != 0)
                disk = 1;
            else if (spool_push_chunk(c, &q->keys, &ch, &broken, err, sizeof err) == 0)
                ok = 1;
            else if (broken) {
                redisFree(c);
                c = NULL;
            }
        }

        pthread_mutex_lock(&q->spool_mu);
        if (ok && spool_set_pos(q->sp, ch.end, ch.n, 1, q->cfg.spool_fsync == SPOOL_FSYNC_ALWAYS, err,
                                sizeof err) != 0) {
            ok = 0;
            disk = 1; /* pushed but not recorded: this chunk will be pushed again (window 3) */
        }
        if (ok) {
            atomic_fetch_add(&q->st_replayed, ch.n);
            if (ch.bad_kind != SPOOL_RECORD) {
                atomic_fetch_add(&q->st_spool_corrupt, 1);
                set_damage(q, "spool %s: %s record at offset %" PRIu64 " skipped, not replayed: %s",
                           q->cfg.spool_path, ch.bad_kind == SPOOL_TORN ? "torn" : "corrupt", ch.bad.off,
                           ch.bad.why);
            }
            attempt = 0;
            next_try = 0;
            q->spool_replay_err[0] = '\0';
            if (spool_pos(q->sp) == spool_size(q->sp)) {
                atomic_store(&q->spool_backlog, 0);
                pthread_cond_broadcast(&q->spool_cv); /* block-policy waiters: space again */
            }
        } else {
            if (disk) {
                atomic_fetch_add(&q->st_spool_errors, 1);
                set_damage(q, "spool %s: replay: %s", q->cfg.spool_path, err);
            } else {
                atomic_fetch_add(&q->st_replay_retries, 1);
                snprintf(q->spool_replay_err, sizeof q->spool_replay_err, "%s", err);
            }
            next_try = clock_mono_us() + backoff_delay_ms(++attempt, 50, 1000, &rng) * 1000;
            if (q->spool_closing)
                gave_up = 1; /* closing: Redis is not answering; keep the rest on disk */
        }
    }
    pthread_mutex_unlock(&q->spool_mu);
    if (c)
        redisFree(c);
    spool_chunk_free(&ch);
    return NULL;
}

auditq_rc spooler_open(auditq *q)
{
    spool_open_info info;
    char err[600];

    pthread_mutex_init(&q->spool_mu, NULL);
    pthread_cond_init(&q->spool_cv, NULL);
    atomic_store(&q->spool_backlog, 0);
    if (!q->cfg.spool_path[0])
        return AUDITQ_OK;
    q->sp = spool_open(q->cfg.spool_path, q->cfg.ns, SPOOL_OPEN_CREATE | SPOOL_OPEN_REPAIR, &info, NULL, err,
                       sizeof err);
    if (!q->sp) {
        producer_set_error("spool_path: %s", err);
        goto fail;
    }
    if (info.torn_bytes) {
        atomic_store(&q->st_spool_corrupt, 1);
        set_damage(q, "spool %s: cut off a damaged tail at offset %" PRIu64 " (%" PRIu64 " bytes): %s",
                    q->cfg.spool_path, info.torn_off, info.torn_bytes, info.torn_why);
    }
    atomic_store(&q->spool_backlog, spool_pos(q->sp) < spool_size(q->sp));
    if (pthread_create(&q->spooler, NULL, spooler_main, q) != 0) {
        producer_set_error("cannot start the spool replay thread: %s", strerror(errno));
        spool_close(q->sp);
        q->sp = NULL;
        goto fail;
    }
    q->spooler_started = 1;
    return AUDITQ_OK;
fail:
    pthread_mutex_destroy(&q->spool_mu);
    pthread_cond_destroy(&q->spool_cv);
    return AUDITQ_ERR_SPOOL;
}

void spooler_close(auditq *q, int64_t deadline_us)
{
    char err[300];
    if (q->sp) {
        pthread_mutex_lock(&q->spool_mu);
        q->spool_closing = 1;
        q->spool_deadline_us = deadline_us;
        pthread_cond_broadcast(&q->spool_cv);
        pthread_mutex_unlock(&q->spool_mu);
        if (q->spooler_started)
            pthread_join(q->spooler, NULL);
        if (q->cfg.spool_fsync == SPOOL_FSYNC_INTERVAL && q->spool_dirty)
            (void)spool_sync(q->sp, err, sizeof err);
        spool_close(q->sp);
        q->sp = NULL;
    }
    pthread_mutex_destroy(&q->spool_mu);
    pthread_cond_destroy(&q->spool_cv);
}

auditq_rc auditq_spool_problem(auditq *q, char *buf, size_t len)
{
    producer_clear_error();
    if (!q || !buf || len == 0) {
        producer_set_error("auditq_spool_problem: NULL handle or empty buffer");
        return AUDITQ_ERR_INVALID_ARG;
    }
    pthread_mutex_lock(&q->spool_mu);
    if (q->spool_damage[0] && q->spool_replay_err[0])
        snprintf(buf, len, "%s; replay waiting for Redis: %s", q->spool_damage, q->spool_replay_err);
    else if (q->spool_replay_err[0])
        snprintf(buf, len, "spool %s: replay waiting for Redis: %s", q->cfg.spool_path, q->spool_replay_err);
    else
        snprintf(buf, len, "%s", q->spool_damage);
    pthread_mutex_unlock(&q->spool_mu);
    return AUDITQ_OK;
}
