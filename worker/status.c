/* status.c -- the HTTP endpoint's answers (status.h). Runs on the main
 * loop; reads the writer threads' counters (relaxed atomics, summed by
 * metrics_sum), the main loop's last Redis sample (upkeep.c) and the
 * sequencer's metrics (seal.c). */
#include "status.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "http.h"
#include "keyhealth.h"
#include "metrics.h"
#include "pgw.h"
#include "seal.h"
#include "selfevents.h"

#define READY_SAMPLE_MAX_MS 5000  /* /readyz: last good Redis sample at most this old */

struct status {
    worker *w;
    upkeep *u;
    http_server *http;
};

/* Readiness: not stopping, Redis sampled successfully within
 * READY_SAMPLE_MAX_MS, and at least one writer thread with a live
 * PostgreSQL connection. Returns 1, or 0 with what is down in why.
 * A Redis key of the wrong type does not make the worker unready: it still
 * serves everything that does not use the key (the other queues), and a
 * 503 would only have orchestrators hold back or restart every worker at
 * once, which cannot fix a key. /readyz answers 200 "ready, degraded:
 * <the key, its type and the fix>" instead, and auditq_redis_key_wrong_type
 * is the metric to alert on. */
static int is_ready(status *st, char *why, size_t cap)
{
    worker *w = st->w;
    upkeep_view v;
    size_t n = 0;
    int64_t now = clock_now_us();
    metrics_totals t;

    upkeep_get_view(st->u, &v);
    why[0] = '\0';
    if (atomic_load(&w->stopping))
        n += (size_t)snprintf(why + n, cap - n, "shutting down; ");
    if (n < cap && (!v.sample_ok || now - v.sample_us > (int64_t)READY_SAMPLE_MAX_MS * 1000)) {
        if (v.sample)
            n += (size_t)snprintf(why + n, cap - n, "redis unreachable (last good read %.1f s ago: %s); ",
                                  (double)(now - v.sample_us) / 1e6, v.sample_err);
        else
            n += (size_t)snprintf(why + n, cap - n, "redis unreachable (%s); ",
                                  v.sample_err[0] ? v.sample_err : "not read yet");
    }
    metrics_sum(w->mt, w->nthreads, &t);
    if (n < cap && t.pg_up_threads == 0) {
        /* Name the cause: the one an operator must act on first. */
        static const int rank[PGW_FAULT_COUNT] = {
            [PGW_FAULT_UNREACHABLE] = 1, [PGW_FAULT_SERVER] = 2, [PGW_FAULT_STALLED] = 3,
            [PGW_FAULT_TABLE] = 4, [PGW_FAULT_PRIVILEGE] = 5, [PGW_FAULT_DATABASE] = 6,
            [PGW_FAULT_LOGIN] = 7,
        };
        pgw_fault f = PGW_FAULT_UNREACHABLE;
        for (int i = 0; i < w->nthreads; i++) {
            int tf = atomic_load_explicit(&w->mt[i].pg_fault, memory_order_relaxed);
            if (tf > 0 && tf < PGW_FAULT_COUNT && rank[tf] > rank[f])
                f = (pgw_fault)tf;
        }
        if (f == PGW_FAULT_UNREACHABLE) {
            n += (size_t)snprintf(why + n, cap - n,
                                  "postgresql unreachable (0 of %d writer threads connected); ", w->nthreads);
        } else {
            char fix[300];
            pgw_fault_fix(f, w->pg_role, fix, sizeof fix);
            n += (size_t)snprintf(why + n, cap - n, "postgresql %s (0 of %d writer threads can write)%s%s; ",
                                  pgw_fault_name(f), w->nthreads, fix[0] ? ": " : "", fix);
        }
    }
    if (n >= cap)
        n = cap - 1;
    if (n >= 2 && why[n - 2] == ';')
        why[n - 2] = '\0';
    return why[0] == '\0';
}

static void on_http(void *ctx, const http_request *req, http_response *resp)
{
    status *st = ctx;
    worker *w = st->w;
    char why[700], text[800], deg[2400], ready[3300];
    metrics_wrongkey wrong[METRICS_WRONG_MAX];
    int n;

    if (strcmp(req->path, "/metrics") == 0) {
        size_t nwrong = keyhealth_snapshot(&w->kh, wrong, METRICS_WRONG_MAX);
        upkeep_view uv;
        upkeep_get_view(st->u, &uv);
        metrics_view v = {
            .version = AUDITQ_VERSION, .worker_id = w->id, .namespace_ = w->keys.ns,
            .start_us = w->started_us, .now_us = clock_now_us(), .threads = w->mt,
            .nthreads = w->nthreads, .recovered = uv.recovered, .reloads_ok = w->reloads_ok,
            .reloads_failed = w->reloads_failed, .ready = is_ready(st, why, sizeof why),
            .sample = uv.sample, .sample_ok = uv.sample_ok, .sample_us = uv.sample_us, .wrong = wrong, .nwrong = nwrong,
        };
        if (metrics_render(&v, &resp->body) != 0 || seal_metrics_render(w->seal, &resp->body) != 0 ||
            selfevents_metrics_render(w->se, &resp->body) != 0) {
            resp->status = 500;
            resp->body.len = 0;
            return;
        }
        resp->status = 200;
        resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
        return;
    }
    if (strcmp(req->path, "/healthz") == 0) {
        resp->status = 200;
        (void)aq_buf_append(&resp->body, "ok\n", 3);
        return;
    }
    if (strcmp(req->path, "/readyz") == 0) {
        /* A key of the wrong type degrades, it does not make us unready:
         * see is_ready. */
        int degraded = keyhealth_describe(&w->kh, deg, sizeof deg) > 0;
        if (is_ready(st, why, sizeof why)) {
            resp->status = 200;
            n = snprintf(ready, sizeof ready, "ready%s%s\n", degraded ? ", degraded: " : "", degraded ? deg : "");
        } else {
            resp->status = 503;
            n = snprintf(ready, sizeof ready, "not ready: %s%s%s\n", why, degraded ? "; degraded: " : "",
                         degraded ? deg : "");
        }
        (void)aq_buf_append(&resp->body, ready, n > 0 && (size_t)n < sizeof ready ? (size_t)n : 0);
        return;
    }
    resp->status = 404;
    n = snprintf(text, sizeof text, "not found: %.200s (try /metrics, /healthz or /readyz)\n", req->path);
    (void)aq_buf_append(&resp->body, text, n > 0 && (size_t)n < sizeof text ? (size_t)n : 0);
}

int status_setup(struct ev_loop *loop, worker *w, upkeep *u, status **out, char *err, size_t errlen)
{
    status *st;

    *out = NULL;
    if (!w->cfg.http_listen[0])
        return 0;
    st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->w = w;
    st->u = u;
    st->http = http_start(loop, w->cfg.http_listen, on_http, st, err, errlen);
    if (!st->http) {
        free(st);
        return -1;
    }
    *out = st;
    return 0;
}

const char *status_address(const status *s)
{
    return s ? http_address(s->http) : "off";
}

void status_stop(status *s)
{
    if (!s)
        return;
    http_stop(s->http);
    free(s);
}
