/* partkeep.h -- the worker's partition upkeep, in a thread of its own
 * (partkeep.c): auditq_ensure_partitions at start and hourly.
 *
 * Lifecycle, on the main thread: partkeep_new with the upkeep module,
 * partkeep_kick from its hourly timer, partkeep_free once the loop
 * returned.
 */
#ifndef AQ_PARTKEEP_H
#define AQ_PARTKEEP_H
#include "worker.h"

/* How long one upkeep may take (connect aside): partition DDL takes
 * 1.1-1.3 s on an idle Citus cluster, longer behind batches, and holds a
 * lock on DEFAULT only while it runs. */
#define PARTKEEP_LIMIT_MS 60000

typedef struct partkeep partkeep;

partkeep *partkeep_new(worker *w);   /* NULL: out of memory */
/* Starts an upkeep in its thread unless one is still going (then: nothing,
 * logged at debug). Never during shutdown. */
void partkeep_kick(partkeep *p);
/* A run still going is not waited for (its one transaction is rolled back
 * when the process exits; the next start redoes it): p is left to it;
 * otherwise the thread is joined and p freed. NULL-safe. */
void partkeep_free(partkeep *p);
#endif
