/* retainer.h -- the retention policy on a timer, in a thread of its own
 * (retainer.c): `auditqctl retention run` inside the worker, with
 * retention_interval_s > 0.
 *
 * Lifecycle, on the main thread: retainer_setup once the worker runs (its
 * 1 s timer starts at once), retainer_stop once the loop returned.
 */
#ifndef AQ_RETAINER_H
#define AQ_RETAINER_H
#include <ev.h>

#include "worker.h"

typedef struct retainer retainer;

/* Allocates the module and starts its timer on loop: a run starts shortly
 * after start, then every retention_interval_s (reloadable; 0 = off), never
 * two at a time and never during shutdown. NULL: out of memory. */
retainer *retainer_setup(struct ev_loop *loop, worker *w);

/* Stops the timer. A run still going is not waited for (each of its steps
 * is one transaction, rolled back when the process exits): it is logged as
 * abandoned and r is left to it; otherwise the thread is joined and r
 * freed. NULL-safe. */
void retainer_stop(retainer *r);
#endif
