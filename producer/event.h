/* event.h -- the event builder and encoder.
 *
 * Owns: struct auditq_event (the auditq_event_* calls of auditq.h) and one
 * encode buffer per thread (event_scratch), freed when the thread exits.
 * No locks: an event belongs to one thread at a time (auditq.h).
 * Called by: auditq.c (auditq_send, auditq_send_async) and auditq-bench's
 * PostgreSQL mode (event_fill_job). Calls: error.h, codec, uuid7, protect. */
#ifndef AQ_PRODUCER_EVENT_H
#define AQ_PRODUCER_EVENT_H
#include "auditq.h"
#include "codec.h"
#include "protect.h"

/* Fills j from ev: fields point into ev (valid while ev is unchanged); a
 * new UUIDv7 unless ev has an event_id; occurred_at now unless set.
 * AUDITQ_ERR_MISSING_FIELD without an action. */
auditq_rc event_fill_job(const auditq_event *ev, aq_job *j);
/* Validates and encodes ev, appending the bytes to out; fills id_out (may
 * be NULL; AUDITQ_ID_SIZE bytes) and *prio. The fields pr protects (NULL:
 * none) are encoded only in their protected form (protect.h).
 * AUDITQ_ERR_TOO_LARGE over max_job_bytes. */
auditq_rc event_encode(const auditq_event *ev, int max_job_bytes, const protect *pr, aq_buf *out, int *prio,
                       char *id_out);
/* The calling thread's encode buffer, emptied (NULL on OOM). Owned by the
 * thread: valid until its next event_scratch call or its exit. (Protected
 * fields are rewritten into a second per-thread buffer of the same kind.) */
aq_buf *event_scratch(void);

/* Field f of ev as set (*len its length), or NULL when unset. */
const char *event_field(const auditq_event *ev, auditq_field f, size_t *len);
#endif
