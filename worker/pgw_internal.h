/* pgw_internal.h -- pgw.c's encoders and SQL, exposed for tests/unit/test_pgw.c and
 * auditq-bench's `ceiling`. Not part of the worker's contract.
 */
#ifndef AQ_PGW_INTERNAL_H
#define AQ_PGW_INTERNAL_H
#include <stddef.h>
#include "codec.h"

/* Appends one field in COPY text format: p == NULL gives \N; otherwise the
 * bytes with \ -> \\, TAB -> \t, LF -> \n, CR -> \r and NUL -> \000 (which
 * PostgreSQL then rejects as 22021, as it would any other invalid byte).
 * Every other byte is copied as is, so the stored value is byte-exact.
 * b grows (realloc; free b->data with free()). Returns 0 or -1 on OOM. */
int pgw_copy_field(aq_buf *b, const char *p, size_t len);

/* Appends one job as a COPY text line for auditq_stage (18 columns, tab
 * separated, LF terminated): n, its index in the batch (what the savepoint
 * probes select ranges by), then the job's 16 fields, then its clock_flag
 * (\N for a plain event, else "future" or "backfill"). Returns 0 or -1 on
 * OOM. */
int pgw_copy_row(aq_buf *b, const aq_job *j, size_t n);

/* Appends one element of a text[] array literal: p == NULL gives NULL;
 * otherwise the bytes double-quoted with " and \ backslash-escaped.
 * The caller must have rejected NUL bytes (a text parameter cannot carry
 * them). Returns 0 or -1 on OOM. */
int pgw_array_elem(aq_buf *b, const char *p, size_t len);

/* The write path's SQL, shared with auditq-bench's `ceiling` so the ceiling
 * it measures is exactly the statements the worker runs. */
extern const char pgw_setup_sql[];        /* CREATE TEMP TABLE auditq_stage */
extern const char pgw_begin_copy_sql[];   /* BEGIN; COPY auditq_stage FROM STDIN */
extern const char pgw_savepoint_sql[];    /* SAVEPOINT, sent before the INSERT */
extern const char pgw_insert_stage_sql[]; /* INSERT ... SELECT ... ON CONFLICT DO NOTHING */
#endif
