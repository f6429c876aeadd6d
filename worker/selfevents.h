/* selfevents.h -- the worker records its own start, graceful stop, reloads
 * and dead letters as events in the trail (issue 13 part 1; the DESIGN
 * comment is in selfevents.c; docs/SECURITY.md "Self-audit").
 *
 * Owns: one Redis connection (main thread only), the events not yet
 * acknowledged by Redis and the counters of /metrics.
 * Locks: an internal mutex guards the dead letters writer threads hand over
 * (selfevents_commit); everything else is the main thread's.
 * Called by: main.c (setup, start, reload, stop, free), writer.c (a batch's
 * dead letters: selfevents_note, selfevents_commit), status.c (/metrics).
 */
#ifndef AQ_SELFEVENTS_H
#define AQ_SELFEVENTS_H
#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "worker.h"

#define SELFEVENTS_START       "auditq.worker.start"
#define SELFEVENTS_STOP        "auditq.worker.stop"
#define SELFEVENTS_RELOAD      "auditq.worker.reload"
#define SELFEVENTS_DEAD_LETTER "auditq.worker.dead_letter"

/* At most this many events wait for Redis (handed over by the writers plus
 * queued by the main thread); beyond it an event is dropped, counted in
 * auditq_self_events_failed_total and logged. */
#define SELFEVENTS_MAX_PENDING 10000

/* One dead-lettering, as a writer thread notes it. Never the content. */
typedef struct se_note {
    char event_id[37];     /* "" when the job could not be decoded */
    int priority;          /* the queue it was taken from */
    uint32_t attempts;     /* write attempts, 0 when never written */
    char sqlstate[6];      /* "" unless PostgreSQL refused the row */
    const char *cause;     /* static: undecodable, occurred_at_future, occurred_at_backfill, rejected,
                              oversized (fetch script), crash_looping (recovery) */
    int64_t at_us;         /* wall clock when it was decided */
    int uncertain;         /* set by selfevents_commit (SELFEVENTS_UNCERTAIN) */
} se_note;

/* A writer thread's notes for the batch in hand. Zero-initialise; the
 * thread alone touches it. */
typedef struct selfevents_batch {
    se_note *v;
    size_t n, cap;
    uint64_t dropped;      /* notes lost to the cap or out of memory */
    uint64_t suppressed;   /* dead letters of auditq.worker.dead_letter events (loop rule) */
} selfevents_batch;

typedef struct selfevents selfevents;

/* Main thread, before the writers start. Its timer starts with
 * selfevents_start. NULL: out of memory. */
selfevents *selfevents_setup(struct ev_loop *loop, worker *w);

/* Main thread, once the writers run: queues auditq.worker.start (if
 * worker_self_audit is on), pushed once Redis and PostgreSQL are both
 * reachable, and starts the 100 ms timer that pushes what is pending. */
void selfevents_start(selfevents *se);

/* Main thread, after a reload that changed n > 0 settings (ch: as
 * config_reload reported them, passwords masked). was_on: worker_self_audit
 * before the reload; the event is queued when it was on before or is on
 * now, so switching it off or on is itself recorded. */
void selfevents_reload(selfevents *se, int was_on, const config_change *ch, int n);

/* Writer thread (or the main loop's recovery): notes one dead-lettering of
 * the batch in hand (job NULL:
 * undecodable). Nothing when c->worker_self_audit is off, and nothing but
 * a count (suppressed) when job is itself an auditq.worker.dead_letter
 * event. Never blocks, never touches Redis. */
void selfevents_note(selfevents_batch *b, const aq_config *c, const aq_job *job, int priority,
                     uint32_t attempts, const char *sqlstate, const char *cause);

enum { SELFEVENTS_DISCARD = 0, SELFEVENTS_SETTLED = 1, SELFEVENTS_UNCERTAIN = 2 };

/* Writer thread, after the batch's settle: SETTLED hands the notes over to
 * the main thread (one mutex hold, no I/O); DISCARD drops them (the batch
 * was fenced or left in flight: whoever settles it records them);
 * UNCERTAIN hands them over marked settle_uncertain (a retried settle was
 * fenced: the first may have gone through). Empties b. se may be NULL. */
void selfevents_commit(selfevents *se, selfevents_batch *b, int how);

/* Frees a batch's notes. */
void selfevents_batch_free(selfevents_batch *b);

/* Main thread, at shutdown after the writers were joined: queues
 * auditq.worker.stop (signal: "SIGTERM"/"SIGINT"; left_in_flight: a batch
 * stayed in flight) and pushes everything pending, bounded (3 tries, each
 * within the Redis timeouts); what is left is counted as failed and
 * logged. */
void selfevents_stop(selfevents *se, const char *signal, int left_in_flight);

/* Appends the auditq_self_events_* families to b (main thread). 0, -1 on
 * out of memory. se may be NULL (nothing). */
int selfevents_metrics_render(selfevents *se, aq_buf *b);

/* Main thread; NULL-safe. */
void selfevents_free(selfevents *se);
#endif
