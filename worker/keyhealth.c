/* keyhealth.c -- the table of wrong-typed Redis keys (keyhealth.h). */
#include "keyhealth.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "redisconn.h"

void keyhealth_init(keyhealth *h, const aq_keys *keys)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    h->keys = keys;
}

const char *keyhealth_effect(const aq_keys *k, const char *key)
{
    size_t wl = strlen(k->worker_prefix), il = strlen(k->inflight_prefix);

    for (int p = 0; p < AQ_PRIORITIES; p++)
        if (strcmp(key, k->queue[p]) == 0)
            return "nothing is fetched from it meanwhile; the other queues are served";
    if (strcmp(key, k->dead) == 0)
        return "meanwhile a batch with a dead letter stays in flight and a queue whose next job is "
               "oversized waits; the rest is served";
    if (strcmp(key, k->retry) == 0)
        return "meanwhile a batch with a row to retry stays in flight and due retries wait; the rest "
               "is served";
    if (strcmp(key, k->stats) == 0)
        return "meanwhile events are stored but not counted in it";
    if (strcmp(key, k->workers) == 0)
        return "meanwhile heartbeats are not recorded and dead workers' batches are not recovered";
    if (strncmp(key, k->inflight_prefix, il) == 0)
        return "meanwhile the thread it belongs to fetches nothing and its jobs are not recovered";
    if (strncmp(key, k->worker_prefix, wl) == 0)
        return "meanwhile that worker fetches nothing and its batches are not recovered";
    /* {ns}:recoveries */
    return "meanwhile dead workers' batches are not recovered";
}

static void log_wrong(const keyhealth *h, const metrics_wrongkey *e, const char *who, int again)
{
    char why[600], q[700], kq[300];
    redis_explain_wrongtype(e->key, e->type, e->expected, keyhealth_effect(h->keys, e->key), why,
                            sizeof why);
    log_warn(again ? "redis key still has the wrong type" : "redis key has the wrong type",
             " key=%s type=%s expected=%s seen_by=%s error=%s", log_q(kq, sizeof kq, e->key),
             e->type[0] ? e->type : "unknown", e->expected, who, log_q(q, sizeof q, why));
}

void keyhealth_report(keyhealth *h, const char *key, const char *type, const char *expected,
                      const char *who)
{
    int64_t now = clock_mono_us();
    size_t i;

    pthread_mutex_lock(&h->mu);
    for (i = 0; i < h->n; i++)
        if (strcmp(h->e[i].key, key) == 0)
            break;
    if (i == h->n) {
        if (h->n == METRICS_WRONG_MAX) {
            /* Full: reuse the slot of a fixed key, else drop the report
             * (the keys already listed are enough to act on). */
            for (i = 0; i < h->n && h->e[i].current; i++)
                ;
            if (i == h->n) {
                pthread_mutex_unlock(&h->mu);
                return;
            }
        } else {
            h->n++;
        }
        memset(&h->e[i], 0, sizeof h->e[i]);
        snprintf(h->e[i].key, sizeof h->e[i].key, "%s", key);
    }
    metrics_wrongkey *e = &h->e[i];
    int was = e->current;
    /* "" (a WRONGTYPE error) does not overwrite what TYPE said. */
    if (type[0] || !was)
        snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->expected, sizeof e->expected, "%s", expected);
    e->current = 1;
    h->seen_us[i] = now;
    if (!was || now - h->logged_us[i] >= (int64_t)KEYHEALTH_LOG_EVERY_MS * 1000) {
        h->logged_us[i] = now;
        log_wrong(h, e, who, was);
    }
    pthread_mutex_unlock(&h->mu);
}

void keyhealth_sweep(keyhealth *h)
{
    int64_t now = clock_mono_us();
    char kq[300];

    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++) {
        if (!h->e[i].current || now - h->seen_us[i] < (int64_t)KEYHEALTH_STALE_MS * 1000)
            continue;
        h->e[i].current = 0;
        log_info("redis key is usable again", " key=%s expected=%s", log_q(kq, sizeof kq, h->e[i].key),
                 h->e[i].expected);
    }
    pthread_mutex_unlock(&h->mu);
}

size_t keyhealth_snapshot(keyhealth *h, metrics_wrongkey *out, size_t cap)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->n < cap ? h->n : cap;
    memcpy(out, h->e, n * sizeof *out);
    pthread_mutex_unlock(&h->mu);
    return n;
}

size_t keyhealth_describe(keyhealth *h, char *out, size_t cap)
{
    size_t n = 0, len = 0;

    out[0] = '\0';
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++) {
        char why[600];
        if (!h->e[i].current)
            continue;
        redis_explain_wrongtype(h->e[i].key, h->e[i].type, h->e[i].expected,
                                keyhealth_effect(h->keys, h->e[i].key), why, sizeof why);
        if (len < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", n ? "; also " : "", why);
        n++;
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}
