/* writer.h -- the writer threads: fetch -> decode -> write -> settle.
 *
 * N threads (threads, default one per core), each with one Redis and one
 * PostgreSQL connection of its own. The whole path of a batch -- the Lua
 * scripts in queue.c, the PostgreSQL writes in pgw.c -- is driven from
 * writer.c; its DESIGN comment lists the failure windows and what closes
 * each. Lifecycle, all from the main thread: writers_setup, then
 * writers_check_pg (before anything registers in Redis), writers_start,
 * and at shutdown writers_join and writers_free.
 */
#ifndef AQ_WRITER_H
#define AQ_WRITER_H
#include <stddef.h>
#include <stdint.h>

#include "pgw.h"
#include "worker.h"

typedef struct writers writers;

/* Allocates w->nthreads writer threads (not started) and their metrics,
 * w->mt (nthreads entries, owned by the returned handle). NULL: out of
 * memory. Free with writers_free. */
writers *writers_setup(worker *w);

/* Connects thread 0's writer once before anything starts, and records the
 * role it logs in as in w->pg_role. A refusal no retry can fix -- a refused
 * login, a missing database, a missing privilege (INSERT on audit_events,
 * TEMPORARY on the database), no audit_events table -- is a configuration
 * error: logs it with the fix and returns -1 (the worker exits 1), as a
 * refused Redis login is. A PostgreSQL that is down, stalled or busy is
 * not: 0, and the writer threads wait for it, as always. */
int writers_check_pg(writers *ws);

/* Starts the threads, which take work at once: call it after the worker
 * registered in Redis. Sets w->running. 0, or -1 (logged). */
int writers_start(writers *ws);

/* After the threads stopped (w->running == 0): joins them. Returns 1 if
 * any left a batch in flight at shutdown (upkeep_stop then releases
 * it), else 0. */
int writers_join(writers *ws);

/* Frees the threads' connections and buffers and w->mt. Only once every
 * thread has returned. NULL-safe. */
void writers_free(writers *ws);

/* ---- the bad-row decision (pure) ------------------------------------------ */

typedef enum writer_row_action {
    WRITER_ROW_WRITTEN = 0, /* PostgreSQL took the row (committed, or a duplicate) */
    WRITER_ROW_RETRY,       /* refused: back into its queue after delay_ms */
    WRITER_ROW_DEAD,        /* refused max_attempts times: a dead letter, with reason */
} writer_row_action;

typedef struct writer_row_verdict {
    writer_row_action action;
    uint32_t attempts;      /* RETRY, DEAD: the job's write attempts, this one counted */
    int64_t delay_ms;       /* RETRY: backoff_delay_ms(attempts, base, max) */
    char reason[400];       /* DEAD: the dead letter's reason */
} writer_row_verdict;

/* What happens to one row of a written batch, from PostgreSQL's answer for
 * it (r, as pgw_write left it) and the job's write attempts before this one
 * (prior_attempts; codec_decode bounds it to 0..1000000). Every row-level
 * refusal is a data error, whatever its SQLSTATE (23514, 22P02, 22001, ...):
 * errors that are not the row's fault (the connection, a deadlock, a
 * refused login) fail the whole write and never reach here -- the batch is
 * written again. A refused row is retried with capped exponential backoff
 * (backoff_base_ms doubling to backoff_max_ms, jitter from *rng) until its
 * attempts reach max_attempts (the setting, 1..1000; a job that already
 * carries more, after a reload lowered it, is dead at once); then it is a
 * dead letter whose reason names the count and PostgreSQL's message. */
void writer_row_decide(const pgw_row_result *r, uint32_t prior_attempts, int max_attempts,
                       int64_t backoff_base_ms, int64_t backoff_max_ms, uint64_t *rng,
                       writer_row_verdict *v);
#endif
