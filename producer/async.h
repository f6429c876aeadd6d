/* async.h -- the async path: a bounded buffer and the flusher thread that
 * pipelines it to Redis (DESIGN at the top of async.c).
 *
 * Owns: the ring of encoded jobs (buffer_events), the flusher thread and
 * its Redis connection per shard, the async counters. Locks: one mutex with three
 * condvars (wake_flusher, space, acked); the flusher never holds it while
 * talking to Redis or to the spooler. Called by: auditq.c only. Calls:
 * error.h, spooler.h (a batch Redis does not take goes to the spool),
 * common/spool_replay.c's sender (spool_push). */
#ifndef AQ_PRODUCER_ASYNC_H
#define AQ_PRODUCER_ASYNC_H
#include "auditq.h"
#include "redisconn.h"
#include "settings.h"
#include "shards.h"
#include "spooler.h"

typedef struct async_buf async_buf;

/* Allocates the buffer and starts the flusher; *out owns it (async_close).
 * sh and sp (sp may be NULL) must outlive it. */
auditq_rc async_open(const struct auditq_config *cfg, aq_shards *sh, spooler *sp, async_buf **out);
/* Copies one encoded job into the buffer. With full_policy=block a full
 * buffer waits up to enqueue_timeout_ms; then AUDITQ_ERR_BUFFER_FULL
 * (counted in rejected_full). AUDITQ_ERR_CLOSED once closing. shard: the
 * event's shard (redis_shard_by = tenant), or -1 for the batch's. */
auditq_rc async_put(async_buf *a, const char *data, size_t len, int prio, int shard);
/* Waits until every job buffered before the call is acknowledged (by Redis
 * or the spool), at most timeout_ms; AUDITQ_ERR_TIMEOUT with the flusher's
 * last failure otherwise. */
auditq_rc async_flush(async_buf *a, int timeout_ms);
/* Drains (bounded by close_timeout_ms), stops the flusher and frees a;
 * AUDITQ_ERR_TIMEOUT with the detail if jobs were left (they are lost). */
auditq_rc async_close(async_buf *a);
/* In a child after fork(): frees a and closes the child's copy of the
 * flusher's socket without taking the lock, joining the flusher (it is not
 * in the child) or sending the jobs buffered in the parent. */
void async_abandon(async_buf *a);
/* Fills the async fields of out (queued, sent, rejected, retries, buffered). */
void async_stats(async_buf *a, auditq_stats *out);
#endif
