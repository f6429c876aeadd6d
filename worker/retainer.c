/* retainer.c -- the retention policy on a timer (retainer.h).
 *
 * DESIGN
 *
 * With retention_interval_s > 0 the worker runs `auditqctl retention run`
 * (common/retention.c) itself: a 1 s timer on the main loop starts a run
 * when one is due, in a thread of its own with its own PostgreSQL
 * connection -- an export of a big month takes minutes, and the loop must
 * keep heartbeating meanwhile. The run works on a copy of the settings
 * taken at its start, so a SIGHUP mid-run changes the next run only. Its
 * statements are bounded by PostgreSQL's timeouts only; shutdown does not
 * wait for it: each of its steps is one transaction, which PostgreSQL
 * rolls back when our connection goes with us, and an export's files are
 * only renamed into place when complete -- the next run redoes the step.
 */
#include "retainer.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "clock.h"
#include "log.h"
#include "retention.h"

struct retainer {
    worker *w;
    struct ev_loop *loop;
    ev_timer t_tick;                   /* 1 s tick: is a run due? */
    pthread_t tid;
    int joinable;                      /* tid was started and not joined */
    atomic_int running;
    int64_t last_start_us;             /* monotonic; 0 = never */
    aq_config cfg;                     /* the run's settings, copied at its start */
};

static void retention_log(void *ctx, const retention_event *ev)
{
    char q[600];
    (void)ctx;
    log_q(q, sizeof q, ev->line);
    switch (ev->kind) {
    case RET_EV_WARNING:
        log_warn("retention", " detail=%s", q);
        break;
    case RET_EV_PROGRESS:
        log_debug("retention", " detail=%s", q);
        break;
    default:
        log_info("retention", " detail=%s", q);
        break;
    }
}

static void *retention_main(void *arg)
{
    retainer *r = arg;
    char err[1024], q[1100];
    PGconn *pg = retention_connect(&r->cfg, "auditq-worker/retention", err, sizeof err);

    if (pg == NULL) {
        log_warn("retention run skipped: cannot connect to PostgreSQL", " error=%s", log_q(q, sizeof q, err));
    } else {
        int rc = retention_run(pg, &r->cfg, 0, retention_log, NULL, err, sizeof err);
        if (rc == RETENTION_BUSY)
            log_info("retention run skipped: another run holds the lock", " detail=%s", log_q(q, sizeof q, err));
        else if (rc != RETENTION_OK)
            log_error("retention run failed; the next run continues from here", " error=%s",
                      log_q(q, sizeof q, err));
        PQfinish(pg);
    }
    atomic_store(&r->running, 0);
    return NULL;
}

/* Every second: start a retention run when one is due (the first shortly
 * after start, then every retention_interval_s, which SIGHUP may change)
 * and none is running. Never during shutdown. */
static void on_retention(struct ev_loop *loop, ev_timer *tm, int revents)
{
    (void)loop;
    (void)revents;
    retainer *r = tm->data;
    worker *w = r->w;
    int64_t now = clock_mono_us();

    if (w->cfg.retention_interval_s <= 0 || atomic_load(&w->stopping) || atomic_load(&r->running))
        return;
    if (r->last_start_us != 0 &&
        now - r->last_start_us < (int64_t)w->cfg.retention_interval_s * 1000000)
        return;
    if (r->joinable) {
        pthread_join(r->tid, NULL);
        r->joinable = 0;
    }
    pthread_mutex_lock(&w->cfg_mu);
    r->cfg = w->cfg;
    pthread_mutex_unlock(&w->cfg_mu);
    r->last_start_us = now;
    atomic_store(&r->running, 1);
    if (pthread_create(&r->tid, NULL, retention_main, r) != 0) {
        atomic_store(&r->running, 0);
        log_warn("retention run skipped: cannot start its thread", NULL);
        return;
    }
    r->joinable = 1;
}

retainer *retainer_setup(struct ev_loop *loop, worker *w)
{
    retainer *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->w = w;
    r->loop = loop;
    ev_timer_init(&r->t_tick, on_retention, 1.0, 1.0);
    r->t_tick.data = r;
    ev_timer_start(loop, &r->t_tick);
    return r;
}

void retainer_stop(retainer *r)
{
    if (!r)
        return;
    ev_timer_stop(r->loop, &r->t_tick);
    if (r->joinable) {
        if (atomic_load(&r->running)) {
            /* Not waited for (see DESIGN); the thread keeps r. */
            log_warn("a retention run is still going; it is abandoned and its current step rolled back "
                     "(the next run redoes it)", NULL);
            return;
        }
        pthread_join(r->tid, NULL);
    }
    free(r);
}
