/* upkeep.c -- the main loop's timers (upkeep.h).
 *
 * DESIGN
 *
 * The main thread runs a libev loop; besides signals (main.c) and the HTTP
 * endpoint (status.c) it runs these timers, all on the main thread's own
 * Redis connection, which is (re)connected at most once per
 * MAIN_REDIS_RETRY_MS so that a Redis that is down does not turn every
 * 100 ms timer into a connect attempt:
 *   heartbeat  every heartbeat_interval_ms: this worker is alive, with its
 *              totals (queue_heartbeat).
 *   recovery   every recovery_interval_ms: the in-flight jobs of workers
 *              whose heartbeat is older than heartbeat_timeout_ms go back to
 *              the front of their queues (queue_recover). This closes the
 *              "crash with jobs in flight" window of writer.c's DESIGN
 *              comment; a job recovered more than max_recoveries times is
 *              dead-lettered (a job that kills every worker that takes it).
 *   promotion  every 100 ms: retries whose delay is over go back to their
 *              queues, 1000 per script call.
 *   sample     every 1 s: the queue numbers for /metrics, /readyz and the
 *              summary, and the sweep of Redis keys of the wrong type.
 *   partitions at start and hourly: the coming months' partitions
 *              (auditq_ensure_partitions), in a thread of its own
 *              (partkeep.c); a failure is logged and harmless.
 *   summary    every summary_interval_ms (reloadable; 0 = off): one logfmt
 *              line of throughput, totals and lag.
 *
 * Shards (redis_shards > 1, common/shards.h): the main thread holds a
 * connection per shard, and every timer above runs on each shard in turn:
 * the heartbeat goes to every shard's registry (so each shard's recovery
 * judges this worker by its own keys alone), recovery and promotion run
 * per shard, and the sample adds the shards up (sample_add). A shard that
 * is down costs its own reconnect attempts only; the others go on.
 *
 * Bounded waits: the loop's Redis calls wait at most redis_timeout_ms each
 * (a connect redis_connect_timeout_ms), like a writer thread's; the hourly
 * partition upkeep does not run on the loop (partkeep.c), so however long
 * its DDL takes it cannot make this worker look dead.
 */
#include "upkeep.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "keyhealth.h"
#include "log.h"
#include "partkeep.h"
#include "queue.h"
#include "redisconn.h"
#include "sample.h"
#include "selfevents.h"

#define SAMPLE_INTERVAL_S 1.0     /* queue numbers from Redis */
#define MAIN_REDIS_RETRY_MS 1000  /* main connection: reconnect at most this often */

struct upkeep {
    worker *w;
    struct ev_loop *loop;
    ev_timer t_heartbeat, t_recover, t_promote, t_maint, t_summary, t_sample;

    partkeep *pk;                      /* partition upkeep, in its thread */
    redisContext *rc[AQ_SHARDS_MAX];   /* main thread's own connection per shard */
    int64_t rc_retry_us[AQ_SHARDS_MAX]; /* monotonic: no reconnect before this */
    int rc_down_logged[AQ_SHARDS_MAX];
    uint64_t recovered;
    metrics_queue_sample sample;       /* last successful Redis sample */
    int sample_have;                   /* sample holds data */
    int sample_ok;                     /* the most recent attempt succeeded */
    int64_t sample_us;                 /* wall clock of the last success */
    char sample_err[256];
    uint64_t last_processed;
    int64_t last_summary_us;
};

/* The main thread's Redis connection, (re)connected at most once per
 * MAIN_REDIS_RETRY_MS: the loop also serves HTTP, and a Redis that is down
 * must not turn every 100 ms timer into a connect attempt. */
static redisContext *main_redis(upkeep *u, int sh)
{
    worker *w = u->w;
    char err[1400], q[1500];
    if (u->rc[sh] && u->rc[sh]->err) {
        redisFree(u->rc[sh]);
        u->rc[sh] = NULL;
    }
    if (u->rc[sh])
        return u->rc[sh];
    int64_t now = clock_mono_us();
    if (now < u->rc_retry_us[sh])
        return NULL;
    u->rc[sh] = shard_connect(&w->shards, sh, w->cfg.redis_connect_timeout_ms, w->cfg.redis_timeout_ms, err,
                              sizeof err, NULL);
    if (!u->rc[sh]) {
        u->rc_retry_us[sh] = now + (int64_t)MAIN_REDIS_RETRY_MS * 1000;
        if (!u->rc_down_logged[sh])
            log_warn("redis unavailable (main)", "%s error=%s", SHARD_KV(w, sh), log_q(q, sizeof q, err));
        u->rc_down_logged[sh] = 1;
    } else if (u->rc_down_logged[sh]) {
        log_info("redis connection restored (main)", "%s", SHARD_KV(w, sh));
        u->rc_down_logged[sh] = 0;
    }
    return u->rc[sh];
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    upkeep *u = tm->data;
    worker *w = u->w;
    char err[256], q[600], why[300];
    metrics_totals tot;
    metrics_sum(w->mt, w->nthreads, &tot);
    for (int sh = 0; sh < w->shards.n; sh++) {
        redisContext *c = main_redis(u, sh);
        if (!c)
            continue;
        if (queue_heartbeat(c, &w->shards.keys[sh], w->id, w->host, w->pid, w->nthreads, w->started_ms,
                            tot.processed, tot.inflight, err, sizeof err) != 0)
            log_warn("heartbeat failed", "%s error=%s", SHARD_KV(w, sh),
                     log_q(q, sizeof q, worker_redis_why(w, "the heartbeat script", err, why, sizeof why)));
    }
}

/* upkeep.h states the contract. */
int upkeep_register(upkeep *u)
{
    worker *w = u->w;
    char err[1400], q[1500], why[300];
    int auth_failed = 0;

    for (int sh = 0; sh < w->shards.n; sh++) {
        u->rc[sh] = shard_connect(&w->shards, sh, w->cfg.redis_connect_timeout_ms, w->cfg.redis_timeout_ms, err,
                                  sizeof err, &auth_failed);
        if (!u->rc[sh]) {
            if (auth_failed) {
                log_error("cannot start: Redis refused the worker's login", "%s error=%s", SHARD_KV(w, sh),
                          log_q(q, sizeof q, err));
                return -1;
            }
            log_warn("redis unavailable (main)", "%s error=%s", SHARD_KV(w, sh), log_q(q, sizeof q, err));
            u->rc_down_logged[sh] = 1;
            u->rc_retry_us[sh] = clock_mono_us() + (int64_t)MAIN_REDIS_RETRY_MS * 1000;
            continue;
        }
        if (queue_heartbeat(u->rc[sh], &w->shards.keys[sh], w->id, w->host, w->pid, w->nthreads, w->started_ms,
                            0, 0, err, sizeof err) != 0) {
            if (redis_explain_refusal(&w->rt, "worker", "the heartbeat script", NULL, err, why, sizeof why) !=
                REDIS_REFUSED_NONE) {
                log_error("cannot start: Redis refused the worker", "%s error=%s", SHARD_KV(w, sh),
                          log_q(q, sizeof q, why));
                redisFree(u->rc[sh]);
                u->rc[sh] = NULL;
                return -1;
            }
            log_warn("heartbeat failed", "%s error=%s", SHARD_KV(w, sh), log_q(q, sizeof q, err));
        }
    }
    return 0;
}

/* A job the recover script dead-lettered as crash-looping: its
 * auditq.worker.dead_letter event (selfevents.c), with its event_id when
 * it decodes. */
typedef struct recover_dead_ctx {
    worker *w;
    selfevents_batch *seb;
} recover_dead_ctx;

static void recover_dead(void *ctx, int priority, uint32_t recoveries, const char *job, size_t len)
{
    recover_dead_ctx *dc = ctx;
    aq_job j;
    char err[256];
    int ok = codec_decode(job, len, (size_t)dc->w->cfg.max_job_bytes, &j, err, sizeof err) == 0;

    selfevents_note(dc->seb, &dc->w->cfg, ok ? &j : NULL, priority, recoveries, NULL, "crash_looping");
}

static void on_recover(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    upkeep *u = tm->data;
    worker *w = u->w;
    char err[256], q[600], why[300];
    for (int sh = 0; sh < w->shards.n; sh++) {
        long long workers = 0, jobs = 0, dead = 0;
        redisContext *c = main_redis(u, sh);
        if (!c)
            continue;
        selfevents_batch seb = {0};
        recover_dead_ctx dc = { w, &seb };
        if (queue_recover(c, &w->shards.keys[sh], &w->cfg, NULL, &workers, &jobs, &dead, recover_dead, &dc, err,
                          sizeof err) != 0) {
            log_warn("recovery check failed", "%s error=%s", SHARD_KV(w, sh),
                     log_q(q, sizeof q, worker_redis_why(w, "the recover script", err, why, sizeof why)));
        } else if (workers > 0) {
            u->recovered += (uint64_t)(jobs > 0 ? jobs : 0);
            log_warn("recovered in-flight jobs of dead workers", "%s workers=%lld jobs=%lld dead_lettered=%lld",
                     SHARD_KV(w, sh), workers, jobs, dead);
        }
        /* The script recorded the dead letters: their events are final. */
        selfevents_commit(w->se, &seb, SELFEVENTS_SETTLED);
        selfevents_batch_free(&seb);
    }
}

static void on_promote(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    upkeep *u = tm->data;
    worker *w = u->w;
    char err[256], q[600], why[300];
    for (int sh = 0; sh < w->shards.n; sh++) {
        long long moved = 0, total = 0;
        redisContext *c = main_redis(u, sh);
        if (!c)
            continue;
        do {
            if (queue_promote(c, &w->shards.keys[sh], &moved, err, sizeof err) != 0) {
                log_warn("retry promotion failed", "%s error=%s", SHARD_KV(w, sh),
                         log_q(q, sizeof q, worker_redis_why(w, "the promote script", err, why, sizeof why)));
                break;
            }
            total += moved;
        } while (moved == 1000);
        if (total > 0)
            log_debug("retries due, back in their queues", "%s jobs=%lld", SHARD_KV(w, sh), total);
    }
}

/* Reads the queue numbers for /metrics, /readyz and the summary. */
static void on_sample(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    upkeep *u = tm->data;
    worker *w = u->w;
    metrics_queue_sample s, one;
    memset(&s, 0, sizeof s);
    for (int sh = 0; sh < w->shards.n; sh++) {
        redisContext *c = main_redis(u, sh);
        if (!c) {
            u->sample_ok = 0;
            snprintf(u->sample_err, sizeof u->sample_err, "no connection to Redis%s",
                     w->shards.n > 1 ? " for a shard" : "");
            return;
        }
        if (sample_queues(c, &w->shards.keys[sh], &w->cfg, w->id, w->nthreads, &one, u->sample_err,
                          sizeof u->sample_err) != 0) {
            char q[600], why[300];
            if (u->sample_ok)
                log_warn("reading queue numbers from redis failed", "%s error=%s", SHARD_KV(w, sh),
                         log_q(q, sizeof q, worker_redis_why(w, "the queue sample", u->sample_err, why, sizeof why)));
            u->sample_ok = 0;
            return;
        }
        sample_add(&s, &one, sh == 0);
    }
    for (size_t i = 0; i < s.nwrong; i++)
        keyhealth_report(&w->kh, s.wrong[i].key, s.wrong[i].type, s.wrong[i].expected, "sample");
    keyhealth_sweep(&w->kh);
    u->sample = s;
    u->sample_have = 1;
    u->sample_ok = 1;
    u->sample_us = clock_now_us();
    u->sample_err[0] = '\0';
}

/* Creates the coming months' partitions (auditq_ensure_partitions, from
 * the migrations), at start and hourly, in a thread of its own
 * (partkeep.c): a failure is logged and harmless, rows land in the
 * DEFAULT partition meanwhile. */
static void on_maint(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    upkeep *u = tm->data;
    if (u->pk)
        partkeep_kick(u->pk);
}

/* One logfmt line: throughput since the last summary, this process's
 * totals, and the lag (queued jobs, oldest job's age) from the last Redis
 * sample. */
static void on_summary(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    upkeep *u = tm->data;
    worker *w = u->w;
    metrics_totals t;
    char lag[200], rel[40] = "";
    metrics_sum(w->mt, w->nthreads, &t);
    int64_t now = clock_mono_us();
    double secs = (double)(now - u->last_summary_us) / 1e6;
    uint64_t delta = t.processed - u->last_processed;
    long long queued = 0, oldest = -1;

    if (u->sample_have) {
        queued = metrics_queued(&u->sample);
        oldest = metrics_oldest_ms(&u->sample);
    }
    if (!u->sample_have)
        snprintf(lag, sizeof lag, " queued=unknown oldest_age_s=unknown");
    else
        snprintf(lag, sizeof lag, " queued=%lld oldest_age_s=%.3f inflight_all=%lld retry=%lld dead=%lld%s",
                 queued, oldest > 0 ? (double)oldest / 1000.0 : 0.0, u->sample.inflight, u->sample.retry,
                 u->sample.dead, u->sample_ok ? "" : " queue_sample=stale");
    /* Logged at every interval, idle or not: an operator tailing the log
     * reads "written_per_s=0 queued=0" as "idle and caught up", whereas a
     * missing line could as well mean a hung loop. */
    /* Jobs given back unwritten (pg_release_after_ms): only once there are. */
    if (t.released > 0)
        snprintf(rel, sizeof rel, " released=%llu", (unsigned long long)t.released);
    log_info("summary", " written_per_s=%.0f processed=%llu failed=%llu dead_lettered=%llu "
             "inflight=%llu%s%s", secs > 0 ? (double)delta / secs : 0.0,
             (unsigned long long)t.processed, (unsigned long long)t.failed,
             (unsigned long long)t.dead_lettered, (unsigned long long)t.inflight, lag, rel);
    u->last_processed = t.processed;
    u->last_summary_us = now;
}

/* Leaves Redis tidy on the way out: releases abandoned batches at once, or
 * deregisters. */
static void finish_in_redis(upkeep *u, int abandoned)
{
    worker *w = u->w;
    char err[256], q[300];
    for (int sh = 0; sh < w->shards.n; sh++) {
        u->rc_retry_us[sh] = 0;
        redisContext *c = main_redis(u, sh);
        if (c && abandoned) {
            long long nw, nj, nd;
            /* Release unfinished batches to their queues now rather than after
             * heartbeat_timeout_ms. A stuck thread's late settle is fenced. */
            if (queue_recover(c, &w->shards.keys[sh], &w->cfg, w->id, &nw, &nj, &nd, NULL, NULL, err,
                              sizeof err) == 0)
                log_warn("released unfinished batches back to their queues", "%s jobs=%lld", SHARD_KV(w, sh), nj);
            else
                log_warn("could not release unfinished batches; peers recover them after heartbeat_timeout_ms",
                         "%s error=%s", SHARD_KV(w, sh), log_q(q, sizeof q, err));
        } else if (c) {
            if (queue_deregister(c, &w->shards.keys[sh], w->id, err, sizeof err) != 0)
                log_warn("could not deregister", "%s error=%s", SHARD_KV(w, sh), log_q(q, sizeof q, err));
        } else {
            log_warn("redis unreachable at exit; in-flight jobs (if any) are recovered by peers after "
                     "heartbeat_timeout_ms", "%s", SHARD_KV(w, sh));
        }
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

upkeep *upkeep_setup(struct ev_loop *loop, worker *w)
{
    upkeep *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->w = w;
    u->loop = loop;
    if ((u->pk = partkeep_new(w)) == NULL) {
        free(u);
        return NULL;
    }
    double hb = w->cfg.heartbeat_interval_ms / 1000.0;
    double rec = w->cfg.recovery_interval_ms / 1000.0;
    ev_timer_init(&u->t_heartbeat, on_heartbeat, hb, hb);
    ev_timer_init(&u->t_recover, on_recover, 0.05, rec);
    ev_timer_init(&u->t_promote, on_promote, 0.1, 0.1);
    ev_timer_init(&u->t_maint, on_maint, 0.2, 3600.0);
    ev_timer_init(&u->t_sample, on_sample, 0.0, SAMPLE_INTERVAL_S);
    ev_timer_init(&u->t_summary, on_summary, 0.0, 0.0);
    u->t_heartbeat.data = u->t_recover.data = u->t_promote.data = u->t_maint.data = u;
    u->t_sample.data = u->t_summary.data = u;
    return u;
}

void upkeep_reload(upkeep *u)
{
    worker *w = u->w;
    ev_timer_stop(u->loop, &u->t_summary);
    if (w->cfg.summary_interval_ms > 0) {
        double s = w->cfg.summary_interval_ms / 1000.0;
        ev_timer_set(&u->t_summary, s, s);
        ev_timer_start(u->loop, &u->t_summary);
    }
}

void upkeep_start(upkeep *u)
{
    u->last_summary_us = clock_mono_us();
    ev_timer_start(u->loop, &u->t_heartbeat);
    ev_timer_start(u->loop, &u->t_recover);
    ev_timer_start(u->loop, &u->t_promote);
    ev_timer_start(u->loop, &u->t_maint);
    ev_timer_start(u->loop, &u->t_sample);
    upkeep_reload(u);
}

void upkeep_get_view(const upkeep *u, upkeep_view *v)
{
    v->sample = u->sample_have ? &u->sample : NULL;
    v->sample_ok = u->sample_ok;
    v->sample_us = u->sample_us;
    v->sample_err = u->sample_err;
    v->recovered = u->recovered;
}

void upkeep_stop(upkeep *u, int abandoned)
{
    if (!u)
        return;
    ev_timer_stop(u->loop, &u->t_heartbeat);
    ev_timer_stop(u->loop, &u->t_recover);
    ev_timer_stop(u->loop, &u->t_promote);
    ev_timer_stop(u->loop, &u->t_maint);
    ev_timer_stop(u->loop, &u->t_sample);
    ev_timer_stop(u->loop, &u->t_summary);
    on_summary(u->loop, &u->t_summary, 0);
    finish_in_redis(u, abandoned);
    for (int sh = 0; sh < AQ_SHARDS_MAX; sh++)
        if (u->rc[sh])
            redisFree(u->rc[sh]);
    partkeep_free(u->pk);
    free(u);
}
