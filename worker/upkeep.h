/* upkeep.h -- the main loop's timers: heartbeat, recovery of dead workers,
 * promotion of due retries, the queue sample, partition upkeep and the
 * summary line (upkeep.c). They share the main thread's own Redis
 * connection, which this module owns.
 *
 * Lifecycle, all on the main thread: upkeep_setup (nothing started),
 * upkeep_register (before the writer threads take work), upkeep_start
 * (the timers run from the next loop iteration), upkeep_reload after each
 * applied SIGHUP, upkeep_stop once the loop returned.
 */
#ifndef AQ_UPKEEP_H
#define AQ_UPKEEP_H
#include <ev.h>
#include <stdint.h>

#include "metrics.h"
#include "worker.h"

typedef struct upkeep upkeep;

/* Allocates the module's state and prepares its timers on loop, without
 * starting them or connecting. NULL: out of memory. */
upkeep *upkeep_setup(struct ev_loop *loop, worker *w);

/* Connects and registers (a first heartbeat) before the threads take
 * work, so their in-flight lists are never unowned. Redis refusing our
 * login, or an ACL without the commands the heartbeat needs, is a
 * configuration error that no retry can fix: logs it and returns -1 (exit
 * status 1). A Redis that is down is not: 0, and the threads and timers
 * wait for it, as always. */
int upkeep_register(upkeep *u);

/* Starts the timers. */
void upkeep_start(upkeep *u);

/* After a reload applied: re-arms the summary timer (summary_interval_ms
 * is reloadable; 0 turns the line off). */
void upkeep_reload(upkeep *u);

/* What the status endpoints show, main thread only; valid until the next
 * loop iteration. */
typedef struct upkeep_view {
    const metrics_queue_sample *sample; /* last successful Redis sample; NULL: none yet */
    int sample_ok;                      /* the most recent attempt succeeded */
    int64_t sample_us;                  /* wall clock of the last success */
    const char *sample_err;             /* why the last attempt failed ("" if it did not) */
    uint64_t recovered;                 /* jobs recovered from dead workers by this process */
} upkeep_view;
void upkeep_get_view(const upkeep *u, upkeep_view *v);

/* Once the loop has returned: stops the timers, logs the last summary line
 * and leaves Redis tidy -- with abandoned set (a writer left a batch in
 * flight) releases this worker's batches to their queues at once, else
 * deregisters -- then closes the main connection and frees u. NULL-safe. */
void upkeep_stop(upkeep *u, int abandoned);
#endif
