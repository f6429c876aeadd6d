/* clockskew.h -- events whose occurred_at is far from the time they arrive.
 *
 * occurred_at is the producer's clock; the worker compares it with its own
 * (read once per batch, after decode) and classifies each event:
 *   CLOCKSKEW_FUTURE    occurred_at - now >  clock_skew_future_ms
 *   CLOCKSKEW_BACKFILL  now - occurred_at >  backfill_max_age_ms
 *   CLOCKSKEW_NONE      otherwise, and always when the bound is 0 (off)
 * "More than": an event exactly at the bound is plain. clock_skew_policy
 * then decides: flag (store it, clock_flag = 'future' | 'backfill') or
 * dead_letter (with clockskew_reason). Retention never trusts occurred_at
 * alone (it also looks at received_at, the database's clock), so a flagged
 * event is not at risk of being dropped early; the flag is for people and
 * queries ("which events came with a clock we should not believe?").
 */
#ifndef AQ_CLOCKSKEW_H
#define AQ_CLOCKSKEW_H
#include <stddef.h>
#include <stdint.h>

enum { CLOCKSKEW_NONE = 0, CLOCKSKEW_FUTURE = 1, CLOCKSKEW_BACKFILL = 2 };

/* Classifies one event: occurred_us and now_us in microseconds since the
 * Unix epoch, the bounds in milliseconds (0 = that check is off). Pure. */
int clockskew_classify(int64_t occurred_us, int64_t now_us, int64_t future_ms, int64_t backfill_ms);

/* The clock_flag column's value for a class: "future", "backfill", or NULL
 * for CLOCKSKEW_NONE (and anything else). Inline: the writer (worker/pgw.c,
 * also linked into auditq-bench) needs only this. */
static inline const char *clockskew_name(int cls)
{
    return cls == CLOCKSKEW_FUTURE ? "future" : cls == CLOCKSKEW_BACKFILL ? "backfill" : NULL;
}

/* The dead-letter reason for an event of class cls (FUTURE or BACKFILL):
 * "occurred_at 2026-12-04T12:05:00.001000Z is 300001 ms ahead of the
 * worker's clock 2026-12-04T12:00:00.000000Z, more than
 * clock_skew_future_ms=300000 (clock_skew_policy=dead_letter)". Writes
 * into out (NUL-terminated, cut to fit); returns out. */
char *clockskew_reason(char *out, size_t outlen, int cls, int64_t occurred_us, int64_t now_us,
                       int64_t bound_ms);

/* UTC ISO 8601 with microseconds ("2026-12-04T12:00:00.000000Z") of a time
 * in microseconds since the Unix epoch (negative ones too); out needs 40
 * bytes. Returns out. */
char *clockskew_iso(char *out, size_t outlen, int64_t us);
#endif
