/* sample.h -- reads the namespace's queue numbers from Redis for /metrics,
 * /readyz and the summary log line (docs/PROTOCOL.md names every key).
 *
 * Called by the main thread on a 1 s timer, on the main thread's own
 * connection; each call is three pipelined round trips whatever the queue
 * sizes, plus nothing per job: depths are LLEN/ZCARD, the oldest job's age
 * is decoded from the queue's tail element alone.
 */
#ifndef AQ_SAMPLE_H
#define AQ_SAMPLE_H
#include <hiredis.h>
#include <stddef.h>

#include "config.h"
#include "keys.h"
#include "metrics.h"

/* At most this many registered workers have their in-flight lists counted
 * (the registry is normally a handful; this bounds one sample's work). */
#define SAMPLE_MAX_WORKERS 1000

/* Fills *s from Redis. Returns 0, or -1 with the reason in err (*s is then
 * unspecified); on -1 the caller checks c->err to know whether the
 * connection must be re-established. cfg supplies heartbeat_timeout_ms
 * (which workers count as live) and max_job_bytes (decoding the oldest).
 * Keys of the wrong type do not fail the sample: their numbers read as 0
 * and s->wrong names them -- every key of the namespace, each registered
 * worker's hash and in-flight lists, and this worker's (wid, nthreads
 * writer threads) hash and in-flight lists. */
int sample_queues(redisContext *c, const aq_keys *k, const aq_config *cfg, const char *wid,
                  int nthreads, metrics_queue_sample *s, char *err, size_t errlen);

/* Adds one shard's sample s into total (first: total = s): depths, in
 * flight, retries, dead letters and stats summed; the oldest age and the
 * worker counts the largest; the wrong-typed keys listed together. */
void sample_add(metrics_queue_sample *total, const metrics_queue_sample *s, int first);
#endif
