/*
 * send_c.c -- the C reference of bench.js (scripts/bench-node.sh): the same
 * event as bench.js, N auditq_send_async calls each timed with
 * CLOCK_MONOTONIC, then auditq_flush. Two modes:
 *   prebuilt   one auditq_event built before the clock, sent N times
 *   build      each call builds the event (new, 11 fields, 2 JSON, priority),
 *              sends and frees it: the work the Node binding does per send()
 * Prints one JSON line. Usage: send_c prebuilt|build N REDIS_URL
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auditq.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static auditq_event *build(void)
{
    auditq_event *ev = auditq_event_new("page.update");
    auditq_event_set(ev, AUDITQ_TENANT_ID, "acme");
    auditq_event_set(ev, AUDITQ_ACTOR_ID, "u-42");
    auditq_event_set(ev, AUDITQ_ACTOR_TYPE, "user");
    auditq_event_set(ev, AUDITQ_ENTITY_TYPE, "page");
    auditq_event_set(ev, AUDITQ_ENTITY_ID, "p-7");
    auditq_event_set(ev, AUDITQ_OUTCOME, "success");
    auditq_event_set(ev, AUDITQ_REQUEST_ID, "req-1");
    auditq_event_set_json(ev, AUDITQ_CHANGES, "{\"title\":[\"Old\",\"New\"]}");
    auditq_event_set_json(ev, AUDITQ_METADATA, "{\"ip_country\":\"DE\",\"plan\":\"pro\"}");
    auditq_event_set_priority(ev, AUDITQ_PRIORITY_NORMAL);
    return ev;
}

int main(int argc, char **argv)
{
    auditq_config *cfg;
    auditq *q = NULL;
    auditq_event *pre = NULL;
    double *ns, t0, t1, t2;
    char nbuf[32];
    int i, n, per_call;

    if (argc != 4 || (strcmp(argv[1], "prebuilt") && strcmp(argv[1], "build"))) {
        fprintf(stderr, "usage: send_c prebuilt|build N REDIS_URL\n");
        return 2;
    }
    per_call = !strcmp(argv[1], "build");
    n = atoi(argv[2]);
    ns = calloc((size_t)n, sizeof *ns);
    cfg = auditq_config_new();
    snprintf(nbuf, sizeof nbuf, "%d", n);
    if (!ns || !cfg || auditq_config_set(cfg, "redis_url", argv[3]) || auditq_config_set(cfg, "namespace", "benchnode") ||
        auditq_config_set(cfg, "buffer_events", nbuf) || auditq_config_set(cfg, "flush_interval_ms", "10") ||
        auditq_config_set(cfg, "full_policy", "error") || auditq_open(cfg, &q)) {
        fprintf(stderr, "send_c: %s\n", auditq_last_error());
        return 1;
    }
    auditq_config_free(cfg);
    if (!per_call)
        pre = build();
    t0 = now_ns();
    for (i = 0; i < n; i++) {
        double a = now_ns();
        auditq_event *ev = per_call ? build() : pre;
        auditq_rc rc = auditq_send_async(q, ev, NULL);
        if (per_call)
            auditq_event_free(ev);
        ns[i] = now_ns() - a;
        if (rc != AUDITQ_OK) {
            fprintf(stderr, "send_c: event %d: %s: %s\n", i, auditq_strerror(rc), auditq_last_error());
            return 1;
        }
    }
    t1 = now_ns();
    if (auditq_flush(q, 120000) != AUDITQ_OK) {
        fprintf(stderr, "send_c: flush: %s\n", auditq_last_error());
        return 1;
    }
    t2 = now_ns();
    auditq_event_free(pre);
    auditq_close(q);
    qsort(ns, (size_t)n, sizeof *ns, cmp);
    printf("{\"mode\":\"C auditq_send_async, event %s\",\"events\":%d,\"p50_us\":%.3f,\"p99_us\":%.3f,"
           "\"max_us\":%.3f,\"calls_per_s\":%.0f,\"events_per_s\":%.0f}\n",
           per_call ? "built per call" : "prebuilt", n, ns[n / 2] / 1e3, ns[(size_t)(n * 0.99)] / 1e3,
           ns[n - 1] / 1e3, n / ((t1 - t0) / 1e9), n / ((t2 - t0) / 1e9));
    free(ns);
    return 0;
}
