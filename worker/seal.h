/* seal.h -- the sequencer: appends committed evidence to the Merkle tree,
 * signs checkpoints, publishes them (issue 12; docs/INTEGRITY.md).
 *
 * One thread with its own PostgreSQL connection, started by the worker
 * when seal_key_file is set. Every worker process may run one; a
 * PostgreSQL advisory lock taken in each tick's transaction makes exactly
 * one of them append at a time. See the DESIGN comment in seal.c.
 */
#ifndef AQ_SEAL_H
#define AQ_SEAL_H
#include <stddef.h>

#include "codec.h"
#include "config.h"

typedef struct seal seal;

/* Prepares the sequencer from cfg (copied): loads and checks the signing
 * key (seal_key_file) and anchor_dir. *out = NULL when sealing is off
 * (seal_key_file empty). Returns 0, or -1 with the cause and the fix in err
 * (the worker then refuses to start: a configured key that cannot be used
 * must not silently leave the trail unsealed). */
int seal_setup(const aq_config *cfg, seal **out, char *err, size_t errlen);

/* Starts the thread. NULL-safe (sealing off). 0, or -1 with err. */
int seal_start(seal *s, char *err, size_t errlen);

/* Stops the thread and frees s (the key is wiped). Waits for the tick in
 * progress, which is bounded by statement_timeout_ms and the anchor
 * command's timeout; an interrupted tick is rolled back by PostgreSQL.
 * NULL-safe. */
void seal_stop(seal *s);

/* Appends the sequencer's metrics (Prometheus text format) to b.
 * NULL-safe (nothing appended). 0, or -1 on out of memory. */
int seal_metrics_render(seal *s, aq_buf *b);

/* The file name a checkpoint of tree size `size` and origin `origin` gets
 * in anchor_dir: "<origin, [A-Za-z0-9._-] kept, others '_'>-<size, 20
 * digits>.checkpoint" (auditqctl verify reads every *.checkpoint file). */
void seal_anchor_name(const char *origin, unsigned long long size, char *out, size_t cap);
#endif
