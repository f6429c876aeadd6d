/* pgw_internal.h -- pgw.c's encoders, exposed for tests/unit/test_pgw.c only.
 * Not part of the worker's contract: nothing but pgw.c and its test include it.
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

/* Appends one job as a COPY text line for auditq_stage (16 columns, tab
 * separated, LF terminated). Returns 0 or -1 on OOM. */
int pgw_copy_row(aq_buf *b, const aq_job *j);

/* Appends one element of a text[] array literal: p == NULL gives NULL;
 * otherwise the bytes double-quoted with " and \ backslash-escaped.
 * The caller must have rejected NUL bytes (a text parameter cannot carry
 * them). Returns 0 or -1 on OOM. */
int pgw_array_elem(aq_buf *b, const char *p, size_t len);
#endif
