/* selfevents.c -- the worker's own start, stop, reloads and dead letters,
 * recorded as events in the trail (selfevents.h; PCI DSS 4.0 10.2.1.6,
 * NIST SP 800-53 AU-9; docs/SECURITY.md "Self-audit").
 *
 * DESIGN
 *
 * The events are ordinary jobs: built with codec_encode, LPUSHed onto this
 * namespace's high queue over a Redis connection of this module's own, so
 * they are fetched, written, sealed and verified like any application's
 * event. actor_id = the OS user (osuser_name), actor_type = system, entity
 * auditq.worker / the worker id (host:pid:random), user_agent
 * auditq-worker/<version>; metadata names the worker id, host and pid and:
 *   start        namespace, version, threads
 *   stop         signal, uptime_s, left_in_flight, self_events_failed
 *   reload       changed: {"<setting>": {"old": "..", "new": "..",
 *                "applied": true|false}}, exactly the settings that differ
 *                (values as config_reload spells them: passwords masked)
 *   dead_letter  event_id (null when undecodable), queue, attempts, cause
 *                (undecodable, occurred_at_future, occurred_at_backfill,
 *                oversized: by the fetch script, crash_looping: by recovery,
 *                rejected), sqlstate; never the event's content nor the
 *                dead letter's reason text (PostgreSQL's message may quote
 *                the row: it stays in the dead-letter record, which
 *                `auditqctl dlq show` reads, itself audited).
 *
 * When. start: queued once per process when the writers start, pushed on
 * the first timer tick at which Redis takes our push and a writer thread
 * has a live PostgreSQL connection (the worker is ready). stop: after a
 * graceful SIGTERM/SIGINT, once the writers were joined (so the outcome is
 * known); a kill -9 or a crash leaves no stop event -- the next start and
 * the worker's heartbeat expiring (its batches recovered) are the trace.
 * The stop event is written by whichever worker runs next. reload: only
 * when config_reload reported a difference (nothing for a reload that
 * changed nothing or failed to parse: those are logged and counted in
 * auditq_config_reloads_total).
 *
 * Never on the write path. A writer thread only notes a dead-lettering
 * into its own per-batch array (selfevents_note: a memcpy, no lock) and,
 * after the settle, hands the notes over under one mutex hold
 * (selfevents_commit: no I/O, no encoding). Notes are handed over only
 * when the settle recorded the dead letters: a fenced settle recorded
 * nothing and the worker that recovered the batch dead-letters (and
 * records) it itself; a retried settle that was then fenced may or may
 * not have gone through -- recorded, marked "settle_uncertain": true. The
 * main loop's 100 ms timer encodes them and pushes everything pending in
 * one pipelined LPUSH round trip per 256 events.
 *
 * Redis away. Pending events stay in memory, in order, and are retried
 * with backoff (100 ms doubling to 5 s); the outage is logged once, and
 * once when it ends. Writers are not slowed: they never wait on this
 * module. Each push bounds the main loop's wait by redis_timeout_ms (the
 * heartbeat's own bound, upkeep.c). At most SELFEVENTS_MAX_PENDING events
 * wait; beyond that, or out of memory, or still unsent at the end of the
 * shutdown flush (3 tries), an event is dropped: counted in
 * auditq_self_events_failed_total (the stop event carries the count) and
 * logged with the count -- never silently. A push whose answer was lost
 * is pushed again with the same bytes: the same event_id, stored once.
 *
 * No loops. A dead-lettering is recorded unless the dead-lettered job is
 * itself an auditq.worker.dead_letter event: that one is counted in
 * auditq_self_events_suppressed_total and logged by the writer's own
 * dead-letter line, and produces no event. So one dead-lettering yields at
 * most two events (a start, stop or reload event dead-lettered, then the
 * dead_letter event about it), never a chain. The rule matches the action
 * only: an application that sends its own auditq.worker.dead_letter
 * action gets the same treatment (its dead letter is still in the dead
 * list and counted).
 *
 * Off. worker_self_audit = off (reloadable): writers note nothing, and no
 * start or stop is queued; what was already pending is still pushed. The
 * reload that switches it off or on is recorded (pausing the audit of
 * audit logging is itself an auditable act).
 */
#include "selfevents.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis.h>

#include "auditq.h"
#include "backoff.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "osuser.h"
#include "redisconn.h"
#include "text.h"
#include "uuid7.h"

#define SE_TICK_S       0.1
#define SE_PIPELINE     256    /* LPUSHes per round trip */
#define SE_STOP_TRIES   3

typedef struct se_out {
    aq_buf job;            /* the encoded job */
    int needs_ready;       /* the start event: waits until the worker is ready */
} se_out;

struct selfevents {
    worker *w;
    struct ev_loop *loop;
    ev_timer tick;
    char user[256];

    pthread_mutex_t mu;    /* guards in, nin, capin, in_failed, in_suppressed */
    se_note *in;
    size_t nin, capin;
    uint64_t in_failed, in_suppressed;

    /* main thread only */
    se_note *spare;
    size_t capspare;
    se_out *out;           /* FIFO: out[0] is the oldest */
    size_t nout, capout;
    redisContext *rc;
    int64_t retry_at_us;   /* monotonic: next push attempt after a failure */
    unsigned fails;
    int down_logged;
    uint64_t sent, failed, suppressed;
};

/* ---- writer threads --------------------------------------------------------- */

void selfevents_note(selfevents_batch *b, const aq_config *c, const aq_job *job, int priority,
                     uint32_t attempts, const char *sqlstate, const char *cause)
{
    static const size_t act_len = sizeof SELFEVENTS_DEAD_LETTER - 1;
    se_note *n;

    if (!c->worker_self_audit)
        return;
    if (job != NULL && job->f[AUDITQ_ACTION].len == act_len &&
        memcmp(job->f[AUDITQ_ACTION].p, SELFEVENTS_DEAD_LETTER, act_len) == 0) {
        b->suppressed++;
        return;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        void *p = cap <= SELFEVENTS_MAX_PENDING ? realloc(b->v, cap * sizeof *b->v) : NULL;
        if (p == NULL) {
            b->dropped++;
            return;
        }
        b->v = p;
        b->cap = cap;
    }
    n = &b->v[b->n++];
    memset(n, 0, sizeof *n);
    if (job != NULL)
        uuid_format(job->id, n->event_id);
    n->priority = priority;
    n->attempts = attempts;
    if (sqlstate != NULL)
        snprintf(n->sqlstate, sizeof n->sqlstate, "%s", sqlstate);
    n->cause = cause;
    n->at_us = clock_now_us();
}

void selfevents_commit(selfevents *se, selfevents_batch *b, int how)
{
    if (b->n == 0 && b->dropped == 0 && b->suppressed == 0)
        return;  /* the normal batch: no lock */
    if (se != NULL && how != SELFEVENTS_DISCARD) {
        pthread_mutex_lock(&se->mu);
        se->in_suppressed += b->suppressed;
        se->in_failed += b->dropped;
        size_t room = se->nin < SELFEVENTS_MAX_PENDING ? SELFEVENTS_MAX_PENDING - se->nin : 0;
        size_t take = b->n < room ? b->n : room;
        if (se->nin + take > se->capin) {
            size_t cap = se->nin + take > 2 * se->capin ? se->nin + take : 2 * se->capin;
            void *p = realloc(se->in, cap * sizeof *se->in);
            if (p == NULL) {
                take = 0;
            } else {
                se->in = p;
                se->capin = cap;
            }
        }
        for (size_t i = 0; i < take; i++) {
            b->v[i].uncertain = how == SELFEVENTS_UNCERTAIN;
            se->in[se->nin++] = b->v[i];
        }
        se->in_failed += b->n - take;
        pthread_mutex_unlock(&se->mu);
    }
    b->n = 0;
    b->dropped = 0;
    b->suppressed = 0;
}

void selfevents_batch_free(selfevents_batch *b)
{
    free(b->v);
    memset(b, 0, sizeof *b);
}

/* ---- encoding (main thread) ------------------------------------------------- */

static int buf_sink(void *ctx, const char *p, size_t n)
{
    return aq_buf_append(ctx, p, n);
}

static int j_str(aq_buf *b, const char *s)
{
    return text_json_string(buf_sink, b, s, strlen(s), 0);
}

/* {"worker_id":..,"host":..,"pid":N, -- the caller continues. */
static int meta_head(const worker *w, aq_buf *m)
{
    int rc = aq_buf_append(m, "{\"worker_id\":", 13);
    rc |= j_str(m, w->id);
    rc |= aq_buf_append(m, ",\"host\":", 8);
    rc |= j_str(m, w->host);
    rc |= aq_buf_printf(m, ",\"pid\":%d", w->pid);
    return rc;
}

/* Encodes one event and appends it to the outbox. 0, or -1 (counted as
 * failed and logged by the caller's count). */
static int se_queue(selfevents *se, const char *action, const char *outcome, aq_buf *meta,
                    int64_t at_us, int needs_ready)
{
    worker *w = se->w;
    char ua[64], why[256];
    aq_job j;
    se_out *o;

    if (se->nout >= SELFEVENTS_MAX_PENDING)
        goto fail;
    if (se->nout == se->capout) {
        size_t cap = se->capout ? se->capout * 2 : 16;
        void *p = realloc(se->out, cap * sizeof *se->out);
        if (p == NULL)
            goto fail;
        se->out = p;
        se->capout = cap;
    }
    memset(&j, 0, sizeof j);
    j.version = AUDITQ_SCHEMA_VERSION;
    uuid7_new(j.id);
    j.occurred_at_us = at_us;
    j.priority = AUDITQ_PRIORITY_HIGH;
    snprintf(ua, sizeof ua, "auditq-worker/%s", AUDITQ_VERSION);
#define SET(fld, s) (j.f[fld].p = (s), j.f[fld].len = (uint32_t)strlen(s))
    SET(AUDITQ_ACTION, action);
    SET(AUDITQ_ACTOR_ID, se->user);
    SET(AUDITQ_ACTOR_TYPE, "system");
    SET(AUDITQ_ENTITY_TYPE, "auditq.worker");
    SET(AUDITQ_ENTITY_ID, w->id);
    SET(AUDITQ_OUTCOME, outcome);
    SET(AUDITQ_USER_AGENT, ua);
#undef SET
    j.f[AUDITQ_METADATA].p = meta->data;
    j.f[AUDITQ_METADATA].len = (uint32_t)meta->len;
    /* The job a producer would have been allowed to send, or none. */
    for (int f = 0; f < AUDITQ_FIELD_COUNT; f++)
        if (j.f[f].p != NULL && codec_check_field((auditq_field)f, j.f[f].p, j.f[f].len, why, sizeof why) != AUDITQ_OK) {
            char q[300];
            log_error("self-audit event not valid; not recorded", " action=%s error=%s", action,
                      log_q(q, sizeof q, why));
            goto fail;
        }
    o = &se->out[se->nout];
    memset(o, 0, sizeof *o);
    if (codec_encode(&j, &o->job) != 0) {
        free(o->job.data);
        goto fail;
    }
    o->needs_ready = needs_ready;
    se->nout++;
    return 0;
fail:
    se->failed++;
    return -1;
}

static void se_queue_note(selfevents *se, const se_note *n)
{
    const char *qn = codec_priority_name(n->priority);
    aq_buf m = {0};
    int rc = meta_head(se->w, &m);

    rc |= aq_buf_append(&m, ",\"event_id\":", 12);
    rc |= n->event_id[0] ? j_str(&m, n->event_id) : aq_buf_append(&m, "null", 4);
    rc |= aq_buf_printf(&m, ",\"queue\":\"%s\",\"attempts\":%" PRIu32 ",\"cause\":\"%s\"",
                        qn ? qn : "normal", n->attempts, n->cause);
    if (n->sqlstate[0])
        rc |= aq_buf_printf(&m, ",\"sqlstate\":\"%s\"", n->sqlstate);
    if (n->uncertain)
        rc |= aq_buf_append(&m, ",\"settle_uncertain\":true", 24);
    rc |= aq_buf_append(&m, "}", 1);
    if (rc != 0)
        se->failed++;
    else
        (void)se_queue(se, SELFEVENTS_DEAD_LETTER, "failure", &m, n->at_us, 0);
    free(m.data);
}

/* Takes what the writers handed over (one short mutex hold: pointer swap)
 * and encodes it into the outbox. */
static void se_take(selfevents *se)
{
    se_note *v;
    size_t n, cap;
    uint64_t lost;

    pthread_mutex_lock(&se->mu);
    v = se->in;
    n = se->nin;
    cap = se->capin;
    se->in = se->spare;
    se->capin = se->capspare;
    se->nin = 0;
    se->spare = v;
    se->capspare = cap;
    lost = se->in_failed;
    se->in_failed = 0;
    se->suppressed += se->in_suppressed;
    se->in_suppressed = 0;
    pthread_mutex_unlock(&se->mu);
    se->failed += lost;
    if (lost > 0)
        log_error("self-audit dead_letter events dropped (too many pending, or out of memory)",
                  " dropped=%" PRIu64, lost);
    uint64_t before = se->failed;
    for (size_t i = 0; i < n; i++)
        se_queue_note(se, &v[i]);
    if (se->failed > before)
        log_error("self-audit events dropped: more than SELFEVENTS_MAX_PENDING waiting for Redis",
                  " dropped=%" PRIu64 " pending=%zu", se->failed - before, se->nout);
}

/* ---- pushing (main thread) -------------------------------------------------- */

static int se_ready(selfevents *se)
{
    metrics_totals t;

    metrics_sum(se->w->mt, se->w->nthreads, &t);
    return t.pg_up_threads > 0;
}

/* Pushes what is pending, oldest first, until the outbox is empty, Redis
 * fails, or the start event waits for readiness (unless force). */
static void se_push(selfevents *se, int force)
{
    worker *w = se->w;
    const char *key = w->keys.queue[AUDITQ_PRIORITY_HIGH];
    char err[512], q[600], why[300];

    while (se->nout > 0) {
        size_t n = 0, ok = 0;
        const char *fail = NULL;

        if (se->out[0].needs_ready && !force && !se_ready(se))
            return;
        if (se->rc == NULL || se->rc->err) {
            redisFree(se->rc);
            se->rc = shard_connect(&w->shards, 0, w->cfg.redis_connect_timeout_ms, w->cfg.redis_timeout_ms,
                                   err, sizeof err, NULL);
            if (se->rc == NULL) {
                fail = err;
                goto failed;
            }
        }
        while (n < se->nout && n < SE_PIPELINE) {
            const char *argv[3] = {"LPUSH", key, se->out[n].job.data};
            size_t argl[3] = {5, strlen(key), se->out[n].job.len};
            if (redisAppendCommandArgv(se->rc, 3, argv, argl) != REDIS_OK)
                break;
            n++;
        }
        for (size_t i = 0; i < n; i++) {
            redisReply *r = NULL;
            if (redisGetReply(se->rc, (void **)&r) != REDIS_OK || r == NULL) {
                fail = se->rc->errstr[0] ? se->rc->errstr : "connection lost";
                snprintf(err, sizeof err, "%s", fail);
                fail = err;
                break;
            }
            if (r->type != REDIS_REPLY_INTEGER && fail == NULL) {
                snprintf(err, sizeof err, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply to LPUSH");
                fail = worker_redis_why(w, "LPUSH of a self-audit event", err, why, sizeof why);
            } else if (fail == NULL) {
                ok++;
            }
            freeReplyObject(r);
        }
        for (size_t i = 0; i < ok; i++)
            free(se->out[i].job.data);
        memmove(se->out, se->out + ok, (se->nout - ok) * sizeof *se->out);
        se->nout -= ok;
        se->sent += ok;
        if (fail == NULL && n > 0) {
            if (se->down_logged)
                log_info("self-audit events pushed again", " pending=%zu", se->nout);
            se->down_logged = 0;
            se->fails = 0;
            continue;
        }
        if (fail == NULL)
            fail = se->rc->errstr[0] ? se->rc->errstr : "cannot send to Redis";
        if (se->rc != NULL && !se->rc->err) {
            /* A refused command leaves the connection usable, but a reply
             * stream we stopped reading does not: start over. */
            redisFree(se->rc);
            se->rc = NULL;
        }
failed:
        if (!se->down_logged)
            log_warn("self-audit events cannot be pushed; kept and retried", " pending=%zu error=%s",
                     se->nout, log_q(q, sizeof q, fail));
        se->down_logged = 1;
        se->retry_at_us = clock_mono_us() + backoff_delay_ms(++se->fails, 100, 5000, NULL) * 1000;
        return;
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    selfevents *se = tm->data;

    se_take(se);
    if (se->nout > 0 && clock_mono_us() >= se->retry_at_us)
        se_push(se, 0);
}

/* ---- main thread API -------------------------------------------------------- */

selfevents *selfevents_setup(struct ev_loop *loop, worker *w)
{
    selfevents *se = calloc(1, sizeof *se);

    if (se == NULL)
        return NULL;
    se->w = w;
    se->loop = loop;
    pthread_mutex_init(&se->mu, NULL);
    osuser_name(se->user, sizeof se->user);
    ev_timer_init(&se->tick, on_tick, SE_TICK_S, SE_TICK_S);
    se->tick.data = se;
    return se;
}

void selfevents_start(selfevents *se)
{
    worker *w = se->w;
    aq_buf m = {0};

    if (w->cfg.worker_self_audit) {
        int rc = meta_head(w, &m);
        rc |= aq_buf_append(&m, ",\"namespace\":", 13);
        rc |= j_str(&m, w->keys.ns);
        rc |= aq_buf_printf(&m, ",\"version\":\"%s\",\"threads\":%d}", AUDITQ_VERSION, w->nthreads);
        if (rc != 0 || se_queue(se, SELFEVENTS_START, "success", &m, clock_now_us(), 1) != 0)
            log_error("self-audit start event not recorded: out of memory", NULL);
        free(m.data);
    }
    ev_timer_start(se->loop, &se->tick);
}

void selfevents_reload(selfevents *se, int was_on, const config_change *ch, int n)
{
    aq_buf m = {0};
    int rc;

    if (se == NULL || n <= 0 || (!was_on && !se->w->cfg.worker_self_audit))
        return;
    rc = meta_head(se->w, &m);
    rc |= aq_buf_append(&m, ",\"changed\":{", 12);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            rc |= aq_buf_append(&m, ",", 1);
        rc |= j_str(&m, ch[i].name);
        rc |= aq_buf_append(&m, ":{\"old\":", 8);
        rc |= j_str(&m, ch[i].old_value);
        rc |= aq_buf_append(&m, ",\"new\":", 7);
        rc |= j_str(&m, ch[i].new_value);
        rc |= aq_buf_printf(&m, ",\"applied\":%s}", ch[i].applied ? "true" : "false");
    }
    rc |= aq_buf_append(&m, "}}", 2);
    if (rc != 0 || se_queue(se, SELFEVENTS_RELOAD, "success", &m, clock_now_us(), 0) != 0)
        log_error("self-audit reload event not recorded", " changed=%d", n);
    free(m.data);
}

void selfevents_stop(selfevents *se, const char *signal, int left_in_flight)
{
    worker *w;
    aq_buf m = {0};

    if (se == NULL)
        return;
    w = se->w;
    ev_timer_stop(se->loop, &se->tick);
    se_take(se);
    if (w->cfg.worker_self_audit) {
        int rc = meta_head(w, &m);
        rc |= aq_buf_printf(&m, ",\"signal\":\"%s\",\"uptime_s\":%lld,\"left_in_flight\":%s,"
                            "\"self_events_failed\":%" PRIu64 "}", signal,
                            (long long)((clock_now_us() - w->started_us) / 1000000),
                            left_in_flight ? "true" : "false", se->failed);
        if (rc != 0 || se_queue(se, SELFEVENTS_STOP, "success", &m, clock_now_us(), 0) != 0)
            log_error("self-audit stop event not recorded: out of memory", NULL);
        free(m.data);
    }
    /* A start still waiting for readiness is pushed now: the process did
     * run, and its stop follows it. */
    for (int i = 0; i < SE_STOP_TRIES && se->nout > 0; i++) {
        if (i > 0)
            usleep(200 * 1000);
        se_push(se, 1);
    }
    if (se->nout > 0) {
        se->failed += se->nout;
        log_error("self-audit events not recorded: Redis did not take them before exit",
                  " lost=%zu", se->nout);
        for (size_t i = 0; i < se->nout; i++)
            free(se->out[i].job.data);
        se->nout = 0;
    }
}

int selfevents_metrics_render(selfevents *se, aq_buf *b)
{
    uint64_t failed, suppressed;

    if (se == NULL)
        return 0;
    pthread_mutex_lock(&se->mu);
    failed = se->failed + se->in_failed;
    suppressed = se->suppressed + se->in_suppressed;
    size_t pending = se->nout + se->nin;
    pthread_mutex_unlock(&se->mu);
    return aq_buf_printf(b,
        "# HELP auditq_self_events_total Self-audit events (auditq.worker.*) this process pushed "
        "and Redis acknowledged.\n"
        "# TYPE auditq_self_events_total counter\nauditq_self_events_total %" PRIu64 "\n"
        "# HELP auditq_self_events_failed_total Self-audit events this process dropped unrecorded "
        "(more than 10000 pending, out of memory, Redis away at exit); each drop is logged.\n"
        "# TYPE auditq_self_events_failed_total counter\nauditq_self_events_failed_total %" PRIu64 "\n"
        "# HELP auditq_self_events_suppressed_total Dead letters of auditq.worker.dead_letter "
        "events, recorded by no further event (the loop rule).\n"
        "# TYPE auditq_self_events_suppressed_total counter\nauditq_self_events_suppressed_total %" PRIu64 "\n"
        "# HELP auditq_self_events_pending Self-audit events waiting for Redis.\n"
        "# TYPE auditq_self_events_pending gauge\nauditq_self_events_pending %zu\n",
        se->sent, failed, suppressed, pending);
}

void selfevents_free(selfevents *se)
{
    if (se == NULL)
        return;
    for (size_t i = 0; i < se->nout; i++)
        free(se->out[i].job.data);
    free(se->out);
    free(se->in);
    free(se->spare);
    redisFree(se->rc);
    pthread_mutex_destroy(&se->mu);
    free(se);
}
