/* ctl_dlq_record.h -- reading dead-letter records ({ns}:dead elements,
 * docs/PROTOCOL.md section 8) and matching them against `auditqctl dlq`
 * filters.
 *
 * A record is a msgpack map written either by the worker (queue_dead_record:
 * job as bin) or by the recover script through Redis' cmsgpack (job as str,
 * arbitrary key order). Anything else may also sit in the list -- whoever
 * can LPUSH can put garbage there -- so the reader is bounded like
 * codec_decode: every length is checked against the bytes present, nothing
 * is allocated, and a record that is not a flat map of scalars is refused
 * with a reason instead of being guessed at.
 */
#ifndef AQ_CTL_DLQ_RECORD_H
#define AQ_CTL_DLQ_RECORD_H
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define DLQ_MAX_FIELDS 32

enum { DLQ_NIL, DLQ_BOOL, DLQ_INT, DLQ_FLOAT, DLQ_STR, DLQ_BIN };

/* One value, pointing into the record bytes. */
typedef struct dlq_value {
    int type;          /* DLQ_* */
    long long i;       /* DLQ_INT, DLQ_BOOL */
    double d;          /* DLQ_FLOAT */
    const char *s;     /* DLQ_STR, DLQ_BIN */
    size_t len;
} dlq_value;

typedef struct dlq_field {
    const char *key;
    size_t klen;
    dlq_value v;
} dlq_field;

/* A parsed record. Every pointer points into the buffer given to
 * dlq_record_parse, which must outlive the record. A known field that is
 * absent (or of the wrong type) has a NULL pointer / has_* = 0. */
typedef struct dlq_record {
    dlq_field f[DLQ_MAX_FIELDS]; /* every entry, in record order */
    int nf;
    const char *job;             /* NULL: no job in the record */
    size_t job_len;
    int job_is_str;              /* 1: packed as str (recover script), 0: bin */
    const char *reason, *priority, *worker, *sqlstate;
    size_t reason_len, priority_len, worker_len, sqlstate_len;
    long long attempts, failed_at_ms;
    int has_attempts, has_failed_at;
    int prio;                    /* priority as 0..3, -1 when absent or unknown */
} dlq_record;

/* Parses one record. Returns 0, or -1 with the reason in err ("not a
 * msgpack map at offset 0", "truncated string at offset 17", ...). */
int dlq_record_parse(const char *buf, size_t len, dlq_record *r, char *err, size_t errlen);

/* The event id a job carries, read leniently: a job is dead-lettered
 * because it failed to decode (a bad outcome, invalid UTF-8 in a field,
 * too big), and the operator still needs its event_id to find it. Scans
 * the job's top-level msgpack map for the key "event_id" with a string
 * value in UUID form, stopping at anything it cannot step over (a nested
 * container, a truncated value). Returns 1 with id[16] filled, else 0. */
int dlq_job_event_id(const char *job, size_t len, uint8_t id[16]);

/* The filters of `auditqctl dlq`. Zero-initialise, then set what applies. */
typedef struct dlq_filter {
    const char *reason;       /* case-sensitive substring of reason */
    const char *sqlstate;     /* exact */
    int priority;             /* 0..3; -1 = any (set by dlq_filter_init) */
    long long older_than_ms;  /* age (now - failed_at) > this; -1 = unset */
    long long newer_than_ms;  /* age < this; -1 = unset */
    int has_event_id;
    uint8_t event_id[16];
} dlq_filter;

void dlq_filter_init(dlq_filter *f);
/* 1 if any filter is set. */
int dlq_filter_active(const dlq_filter *f);
/* 1 if the record matches every filter that is set. r is NULL for a record
 * that did not parse: it matches only when no filter is set. job is the
 * decoded job or NULL (undecodable): then an event-id filter does not
 * match. now_ms is the reference time for the age filters. */
int dlq_filter_match(const dlq_filter *f, const dlq_record *r, const aq_job *job, long long now_ms);
#endif
