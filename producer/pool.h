/* pool.h -- the sync path's Redis connections (auditq_send, auditq_ping).
 *
 * Owns: up to sync_connections redisContexts, connected on first use; a
 * calling thread borrows one for one command and returns it, so a context
 * is never used by two threads at once (hiredis contexts are not
 * thread-safe). Locks: one mutex + condvar around the slot table, held only
 * to borrow and return (never during I/O). Every wait is bounded: a free
 * slot by timeout_ms, a connect by connect_timeout_ms, the command by
 * timeout_ms. After a connect *timeout* (a host that drops packets) calls
 * fail fast for 200 ms instead of each waiting out the timeout again.
 * Called by: auditq.c only. Calls: error.h, common/redisconn. */
#ifndef AQ_PRODUCER_POOL_H
#define AQ_PRODUCER_POOL_H
#include <hiredis.h>

#include "auditq.h"
#include "redisconn.h"
#include "shards.h"
#include "settings.h"

typedef struct pool pool;

/* A pool for cfg's sync_connections and timeouts towards shard `shard`
 * of sh (which must outlive the pool). NULL on OOM (detail set).
 * Connects nothing yet. */
pool *pool_new(const struct auditq_config *cfg, aq_shards *sh, int shard);
/* Closes every connection and frees the pool; no call may be running.
 * NULL-safe. */
void pool_free(pool *q);
/* In a child after fork(): closes the child's copies of the connection
 * sockets (nothing is sent on them) and frees the pool without touching
 * its lock. NULL-safe. */
void pool_abandon(pool *q);
/* Runs one command on a borrowed connection. AUDITQ_OK with *reply (the
 * caller frees it with freeReplyObject), or an error with the detail set:
 * an ACL refusal names the user, the command and the fix (AUDITQ_ERR_AUTH),
 * a WRONGTYPE names the key (AUDITQ_ERR_REDIS). */
auditq_rc pool_command(pool *q, int argc, const char **argv, const size_t *argl, redisReply **reply);
/* LPUSH of one encoded job onto key. */
auditq_rc pool_lpush(pool *q, const char *key, const char *data, size_t len);
#endif
