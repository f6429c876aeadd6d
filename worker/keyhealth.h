/* keyhealth.h -- Redis keys the worker found holding the wrong type (a
 * hand-typed SET on a queue, a stray tool writing into the namespace).
 *
 * The scripts (worker/queue.c) check the type of every key before they
 * write, skip what a wrong-typed key would break and report it; the main
 * thread's 1 s queue sample (worker/sample.c) checks every key of the
 * namespace it reads. Both report here. A key is logged when first seen,
 * again at most every KEYHEALTH_LOG_EVERY_MS while it stays wrong (not once
 * per fetch), and once when it is fixed; /readyz and /metrics show the keys
 * currently wrong (docs/RELIABILITY.md, "a Redis key of the wrong type").
 *
 * Thread-safe: writer threads and the main thread report concurrently.
 */
#ifndef AQ_KEYHEALTH_H
#define AQ_KEYHEALTH_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "metrics.h"

#define KEYHEALTH_LOG_EVERY_MS 60000
/* A key nobody reported for this long is taken as fixed (the sample
 * reports every wrong key once a second; an idle fetch polls faster). */
#define KEYHEALTH_STALE_MS 3000

typedef struct keyhealth {
    pthread_mutex_t mu;
    const aq_keys *keys;
    size_t n;
    metrics_wrongkey e[METRICS_WRONG_MAX];
    int64_t seen_us[METRICS_WRONG_MAX];    /* monotonic: last report */
    int64_t logged_us[METRICS_WRONG_MAX];  /* monotonic: last log line */
} keyhealth;

void keyhealth_init(keyhealth *h, const aq_keys *keys);

/* One report: key holds type (what TYPE said; "" = unknown), expected is
 * what auditq needs. who ("fetch", "settle", "sample") goes into the log
 * line. Logs as described above. */
void keyhealth_report(keyhealth *h, const char *key, const char *type, const char *expected,
                      const char *who);

/* Marks keys not reported for KEYHEALTH_STALE_MS as fixed, logging each.
 * Call after a successful sample (a failed one reports nothing). */
void keyhealth_sweep(keyhealth *h);

/* Copies the table (current and fixed keys) into out; returns how many. */
size_t keyhealth_snapshot(keyhealth *h, metrics_wrongkey *out, size_t cap);

/* The keys currently wrong, for /readyz: "redis key K is a T, expected a
 * L: ...; <what waits>" joined by "; also ". Returns the number of keys. */
size_t keyhealth_describe(keyhealth *h, char *out, size_t cap);

/* What the worker does while key (one of keys' names) is of the wrong type,
 * as the effect clause of redis_explain_wrongtype. */
const char *keyhealth_effect(const aq_keys *keys, const char *key);
#endif
