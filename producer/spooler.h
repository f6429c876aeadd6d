/* spooler.h -- the producer spool: where events go while Redis fails, and
 * the thread that replays them (DESIGN at the top of spooler.c).
 *
 * Owns: the spool file (common/spool*.c) with its flock, the replay thread
 * and its Redis connection, the spool counters and problem texts. Locks:
 * one mutex + condvar, a leaf lock (taken with no other producer lock
 * held). Called by: auditq.c (sync sends, open/close, stats) and async.c
 * (the flusher spools batches Redis does not take); it calls neither.
 * Calls: error.h, common/spool*.c (the file, and the one LPUSH sender in
 * spool_replay.c). */
#ifndef AQ_PRODUCER_SPOOLER_H
#define AQ_PRODUCER_SPOOLER_H
#include <stdint.h>

#include "auditq.h"
#include "redisconn.h"
#include "settings.h"
#include "shards.h"
#include "spool.h"

typedef struct spooler spooler;

/* Opens and locks cfg's spool_path and starts the replay thread: *out owns
 * it (spooler_close). With no spool_path: AUDITQ_OK and *out = NULL; every
 * call below takes that NULL where it says so. AUDITQ_ERR_SPOOL with the
 * detail when the file is locked, not a spool, or of another namespace. */
auditq_rc spooler_open(const struct auditq_config *cfg, aq_shards *sh, spooler **out);
/* Replays what it can before deadline_us (monotonic), stops the thread,
 * syncs, closes the spool and frees s. NULL-safe. */
void spooler_close(spooler *s, int64_t deadline_us);
/* In a child after fork(): closes the child's copies of the spool's
 * descriptors and of the replay connection and frees s, without the lock,
 * the replay thread (it is not in the child), a sync or a replay.
 * NULL-safe. */
void spooler_abandon(spooler *s);
/* Result of spooler_put beyond auditq_rc values. */
#define SPOOLER_NO_BACKLOG (-1)
/* Appends n encoded jobs to the spool, all or none. only_if_backlog: do it
 * only while unreplayed records wait (returns SPOOLER_NO_BACKLOG otherwise),
 * so the caller goes to Redis directly. wait_ms: how long to wait for space
 * at the cap. Returns AUDITQ_OK, AUDITQ_ERR_SPOOL_FULL, AUDITQ_ERR_SPOOL (with
 * the detail set) or SPOOLER_NO_BACKLOG. Counts spooled / errors itself. */
int spooler_put(spooler *s, const spool_item *items, size_t n, int only_if_backlog, int wait_ms);
/* Whether unreplayed records wait (a hint read without the lock); 0 for a
 * NULL s. */
int spooler_backlog(spooler *s);
/* Counts n events the spool refused at spool_max_bytes (the caller decides
 * when a refusal counts: once per sync event, once per async batch). */
void spooler_count_rejected(spooler *s, uint64_t n);
/* Fills the spool fields of out. */
void spooler_stats(spooler *s, auditq_stats *out);
/* auditq_spool_problem's text (auditq.h). */
void spooler_problem(spooler *s, char *buf, size_t len);
#endif
