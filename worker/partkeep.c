/* partkeep.c -- the worker's partition upkeep (partkeep.h).
 *
 * DESIGN
 *
 * At start and hourly (upkeep.c's timer) the worker runs
 * auditq_ensure_partitions(partitions_ahead), which creates the coming
 * months' partitions and moves their rows out of DEFAULT. It ran on the
 * main loop, bounded by heartbeat_timeout_ms / 2 (2.5 s by default) so as
 * not to stop heartbeats; on Citus the DDL takes 1.1-1.3 s idle and longer
 * behind batches, so it timed out there every hour. Now it runs in a
 * thread of its own, like the retention run (retainer.c): its own
 * connection, a copy of the settings taken under cfg_mu at its start, a
 * limit of PARTKEEP_LIMIT_MS for the statement, never two at a time.
 * Failure windows: a run killed or abandoned at shutdown mid-statement --
 * the function is one transaction, PostgreSQL rolls it back when the
 * connection goes, and rows keep landing in DEFAULT meanwhile (the next
 * run moves them). A failure is logged and harmless for the same reason.
 */
#include "partkeep.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgconn.h"

struct partkeep {
    worker *w;
    pthread_t tid;
    int joinable;                      /* tid was started and not joined */
    atomic_int running;
    aq_config cfg;                     /* the run's settings, copied at its start */
};

static void *partkeep_main(void *arg)
{
    partkeep *p = arg;
    const aq_config *c = &p->cfg;
    char ahead[16], q[600], m[512];
    int timed_out = 0, climit = c->pg_connect_timeout_s * 1000;
    int limit = c->pg_timeout_ms > PARTKEEP_LIMIT_MS ? c->pg_timeout_ms : PARTKEEP_LIMIT_MS;
    const pgconn_opts o = { .conninfo = c->database_url, .component = "auditq-worker/partitions",
                            .connect_timeout_s = c->pg_connect_timeout_s,
                            .tcp_user_timeout_ms = c->pg_timeout_ms };
    pgconn_params params;
    PGconn *pg = NULL;

    snprintf(ahead, sizeof ahead, "%d", c->partitions_ahead);
    if (climit <= 0)
        climit = 10000;
    if (pgconn_params_init(&params, &o, m, sizeof m) == 0) {
        /* The whole connect stays within climit, however many hosts. */
        if (params.connect_timeout_ms > 0 && params.connect_timeout_ms < climit)
            climit = params.connect_timeout_ms;
        pg = pgconn_connect(&params, climit / params.nhosts, PQERRORS_DEFAULT, &timed_out, m, sizeof m);
        if (pg == NULL && !timed_out)
            snprintf(m, sizeof m, "out of memory");
    }
    pgconn_params_free(&params);
    if (PQstatus(pg) != CONNECTION_OK) {
        if (timed_out) {
            snprintf(m, sizeof m, "no answer from PostgreSQL within %d ms", climit);
        } else {
            char one[sizeof m];
            pgconn_reason(one, sizeof one, m);
            snprintf(m, sizeof m, "%s", one);
        }
        log_warn("partition upkeep skipped: cannot connect to PostgreSQL", " error=%s", log_q(q, sizeof q, m));
    } else {
        pgconn_io io;
        const char *args[1] = { ahead };
        PGresult *r = pgconn_io_init(&io, pg, limit) == 0
                          ? pgconn_io_exec(&io, "SELECT auditq_ensure_partitions($1::int)", 1, args)
                          : NULL;
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            log_warn("partition upkeep failed (run 'auditqctl migrate'?)", " error=%s",
                     log_q(q, sizeof q, pgconn_io_error(&io, r, m, sizeof m)));
        else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0)
            log_info("partitions created", " count=%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(pg);
    atomic_store(&p->running, 0);
    return NULL;
}

partkeep *partkeep_new(worker *w)
{
    partkeep *p = calloc(1, sizeof *p);
    if (p)
        p->w = w;
    return p;
}

void partkeep_kick(partkeep *p)
{
    worker *w = p->w;

    if (atomic_load(&w->stopping))
        return;
    if (atomic_load(&p->running)) {
        log_debug("partition upkeep: the previous run is still going", NULL);
        return;
    }
    if (p->joinable) {
        pthread_join(p->tid, NULL);
        p->joinable = 0;
    }
    pthread_mutex_lock(&w->cfg_mu);
    p->cfg = w->cfg;
    pthread_mutex_unlock(&w->cfg_mu);
    atomic_store(&p->running, 1);
    if (pthread_create(&p->tid, NULL, partkeep_main, p) != 0) {
        atomic_store(&p->running, 0);
        log_warn("partition upkeep skipped: cannot start its thread", NULL);
        return;
    }
    p->joinable = 1;
}

void partkeep_free(partkeep *p)
{
    if (!p)
        return;
    if (p->joinable) {
        if (atomic_load(&p->running)) {
            /* Not waited for (see DESIGN); the thread keeps p. */
            log_warn("partition upkeep is still going; it is abandoned and rolled back (the next start "
                     "redoes it)", NULL);
            return;
        }
        pthread_join(p->tid, NULL);
    }
    free(p);
}
