/* queue.h -- the worker's side of the Redis protocol: Lua scripts that make
 * every queue transition atomic. Key layout: common/keys.h, docs/PROTOCOL.md.
 *
 * Each function uses the given connection only (one connection belongs to
 * one thread) and returns 0, or -1 with the reason in err; on -1 the caller
 * checks c->err to know whether the connection must be re-established.
 */
#ifndef AQ_QUEUE_H
#define AQ_QUEUE_H
#include <hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "keys.h"

#define QUEUE_TOKEN_MAX 48

/* Keys a script found holding the wrong type (someone SET a queue, a stray
 * tool wrote there). Each script checks the type of every key it is about
 * to use before it writes anything, so such a key stops only what needs
 * it, never loses a job, and is named here (docs/RELIABILITY.md). */
#define QUEUE_WRONG_MAX 8
typedef struct queue_wrongkey {
    char key[AQ_KEY_MAX + 64];
    char type[16];                  /* what TYPE said; "" = unknown (a WRONGTYPE error) */
    char expected[8];               /* list, hash or zset */
} queue_wrongkey;
typedef struct queue_wrongset {
    size_t n;
    queue_wrongkey k[QUEUE_WRONG_MAX];
} queue_wrongset;

/* Reads a script's flat list of wrong-typed keys ({key, type, expected,
 * ...}) into ws (ws->n = 0 for an empty list). Returns 0, or -1 if list is
 * not such a list (ws->n then counts the entries read before the fault). */
int queue_wrong_parse(const redisReply *list, queue_wrongset *ws);

/* A fetched batch: items point into reply, which the caller frees with
 * queue_batch_free once the batch is settled. */
typedef struct queue_batch {
    redisReply *reply;
    int priority;                   /* the queue the jobs came from */
    char token[QUEUE_TOKEN_MAX];    /* fencing token: "prio:seq" */
    size_t n;
    redisReply **items;             /* n job byte strings */
    size_t dead_oversized;          /* jobs the fetch dead-lettered for their size */
    queue_wrongset wrong;           /* keys the fetch skipped for their type */
} queue_batch;

/* What the fetch script needs to refuse oversized jobs before they leave
 * Redis: jobs longer than max_job_bytes + slack are dead-lettered there. */
typedef struct queue_limits {
    size_t max_job_bytes;
    size_t slack;                   /* CODEC_REENCODE_SLACK */
    int dead_max;                   /* dead_letter_max */
} queue_limits;

void queue_batch_free(queue_batch *b);

/* Reads the fetch script's reply r into b (the reply of queue_fetch; see
 * s_fetch in queue.c). b takes r: on 0 it is freed with the batch, on -1
 * (a malformed reply, reason in err) it is freed here. */
int queue_fetch_parse(redisReply *r, queue_batch *b, char *err, size_t errlen);

/* Atomically moves up to max jobs (oldest first) from one queue into this
 * thread's in-flight list, and records the source priority and a fencing
 * token in the worker hash. The queue: the highest-priority non-empty one
 * (strict), or one drawn among the non-empty queues in proportion to
 * weights[] using r01, a uniform number in [0,1) (weighted). If the
 * in-flight list is not empty (an earlier batch was never settled), that
 * batch is returned again instead. b->n == 0: every queue is empty (or
 * every job fetched was oversized: b->dead_oversized says how many).
 * A queue key of the wrong type is skipped and the others are served; a
 * wrong-typed dead list makes the fetch take only jobs it will not have to
 * dead-letter for their size; a wrong-typed stats hash is not counted
 * into; an in-flight list or worker hash of the wrong type stops this
 * thread's fetching. Each such key is listed in b->wrong (also when b->n
 * is 0). */
int queue_fetch(redisContext *c, const aq_keys *k, const char *wid, int thread, int weighted,
                const int weights[4], double r01, int max, uint64_t seq, const queue_limits *lim,
                queue_batch *b, char *err, size_t errlen);

/* One delayed retry: job bytes (re-encoded with attempts+1) and its delay. */
typedef struct queue_retry {
    int priority;
    const char *job;
    size_t len;
    int64_t delay_ms;
} queue_retry;

/* Acknowledges a batch after PostgreSQL committed it: adds retries to the
 * retry set (due = Redis time + delay), dead-letter records to the dead
 * list (trimmed to dead_letter_max, trimmed count kept in stats), bumps
 * the stats, and deletes the in-flight list -- all in one script. Fenced:
 * if the worker hash no longer holds this batch's token (peers presumed
 * this worker dead and recovered the batch), nothing is added and
 * *fenced = 1: the recovered copy will be processed again, idempotently.
 * Keys of the wrong type are listed in *wrong (may be NULL): the settle
 * writes nothing and returns -1 (the batch stays in flight; the caller
 * retries) when the retry set, the dead list, the in-flight list or the
 * worker hash it needs is one; a wrong-typed stats or recoveries hash is
 * only skipped (the batch is acknowledged, its counts are not kept). */
int queue_settle(redisContext *c, const aq_keys *k, const char *wid, int thread, const char *token,
                 size_t processed, const queue_retry *retries, size_t nretries,
                 const aq_buf *dead, size_t ndead, int dead_letter_max, int *fenced,
                 queue_wrongset *wrong, char *err, size_t errlen);

/* Builds one dead-letter record (msgpack map, docs/PROTOCOL.md) into out. */
int queue_dead_record(aq_buf *out, const char *job, size_t len, int priority, const char *reason,
                      const char *sqlstate, uint32_t attempts, const char *wid);

/* Refreshes this worker's heartbeat and info hash. */
int queue_heartbeat(redisContext *c, const aq_keys *k, const char *wid, const char *host, int pid,
                    int threads, int64_t started_ms, uint64_t processed, uint64_t inflight,
                    char *err, size_t errlen);

/* Returns the in-flight jobs of every worker whose heartbeat is older than
 * heartbeat_timeout_ms to the front of their queues; a job recovered more
 * than max_recoveries times is dead-lettered as crash-looping. With
 * only_wid set, releases that worker's in-flight jobs now, without
 * counting a recovery (graceful exit with abandoned batches). on_dead
 * (may be NULL) is called with each job dead-lettered here (the first
 * 100 of a call), its queue and its recovery count. */
typedef void (*queue_dead_fn)(void *ctx, int priority, uint32_t recoveries, const char *job, size_t len);
int queue_recover(redisContext *c, const aq_keys *k, const aq_config *cfg, const char *only_wid,
                  long long *workers, long long *jobs, long long *dead, queue_dead_fn on_dead, void *ctx,
                  char *err, size_t errlen);

/* Moves due retries back to the front of their queues; *moved counts them. */
int queue_promote(redisContext *c, const aq_keys *k, long long *moved, char *err, size_t errlen);

/* Removes this worker from the registry (clean exit, nothing in flight). */
int queue_deregister(redisContext *c, const aq_keys *k, const char *wid, char *err, size_t errlen);

/* Gives a batch this thread cannot write back to the front of the queue it
 * came from (the end the fetch takes from, fetch order kept), deleting the
 * in-flight list, in one script; the jobs are not counted as recovered.
 * Fenced like queue_settle: if the worker hash no longer holds token,
 * nothing moves and *fenced = 1. *released: jobs moved. */
int queue_release(redisContext *c, const aq_keys *k, const char *wid, int thread, const char *token,
                  long long *released, int *fenced, char *err, size_t errlen);
#endif
