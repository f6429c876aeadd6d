/* codec.h -- the job wire format (docs/PROTOCOL.md): one msgpack map.
 *
 * Encoding uses msgpack-c's packer. Decoding does NOT use msgpack-c's
 * unpacker: it trusts declared lengths and can be made to allocate gigabytes
 * by a 5-byte header. codec_decode is a bounded, zero-copy reader for exactly
 * the types a job may hold; every length is checked against the bytes
 * present before it is used, and nothing is allocated.
 */
#ifndef AQ_CODEC_H
#define AQ_CODEC_H
#include <stddef.h>
#include <stdint.h>
#include "auditq.h"

/* Limits on field lengths in bytes (also enforced by the producer). */
#define CODEC_MAX_ID_FIELD     256   /* tenant/actor/entity/request/session ids, entity_type */
#define CODEC_MAX_ACTION       256
#define CODEC_MAX_SOURCE_IP    128   /* an IPv6 text, or an "hmac-sha256:<hex>" (76, protect_fields) */
#define CODEC_MAX_USER_AGENT   1024
#define CODEC_DEFAULT_MAX_JOB  65536
#define CODEC_MAX_KEYS         64    /* map entries, including unknown keys */
#define AQ_PRIORITIES_N        4

/* A byte range inside the decoded buffer (not NUL-terminated). p == NULL
 * means the field is absent (or nil). */
typedef struct aq_str {
    const char *p;
    uint32_t len;
} aq_str;

/* A job, as fields. For codec_encode the caller fills it; for codec_decode
 * the aq_str fields point into the decoded buffer, which must outlive it. */
typedef struct aq_job {
    uint32_t version;            /* AUDITQ_SCHEMA_VERSION */
    uint8_t id[16];              /* event_id, binary */
    int64_t occurred_at_us;      /* microseconds since the Unix epoch */
    int priority;                /* auditq_priority */
    uint32_t attempts;           /* write attempts so far (worker-managed) */
    uint8_t clock_flag;          /* CLOCKSKEW_* (worker/clockskew.h), set by the worker
                                    after decode; never on the wire, 0 = plain */
    aq_str f[AUDITQ_FIELD_COUNT];/* text fields, by auditq_field; f[AUDITQ_EVENT_ID] unused */
} aq_job;

/* A growable output buffer. Zero-initialise; free data with free(). */
typedef struct aq_buf {
    char *data;
    size_t len;
    size_t cap;
} aq_buf;
/* Appends; returns 0 or -1 on OOM (buffer unchanged). */
int aq_buf_append(aq_buf *b, const void *p, size_t n);
/* Makes room for `extra` more bytes after len (for in-place writers);
 * returns 0 or -1 on OOM (buffer unchanged). */
int aq_buf_reserve(aq_buf *b, size_t extra);
/* printf onto the end of b (NUL kept after len); 0, or -1 on OOM. */
int aq_buf_printf(aq_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Names on the wire and in SQL. */
const char *codec_priority_name(int priority);        /* "critical".."low", or NULL */
int codec_priority_parse(const char *s, size_t len);   /* 0..3 or -1 */
const char *codec_field_key(auditq_field f);           /* wire key of a text field */

/* Checks one text field's value against its rules (UTF-8, no NUL, length,
 * enums, JSON object for changes/metadata). Returns an auditq_rc; on error
 * writes a reason naming the field into err. Shared by producer and worker
 * so that a job the library accepts is a job the worker accepts. */
auditq_rc codec_check_field(auditq_field f, const char *p, size_t len, char *err, size_t errlen);

/* Appends the msgpack encoding of j to out (fields with p == NULL are
 * omitted; attempts is written only when > 0). Does not validate: callers
 * check fields first. Returns 0, or -1 on OOM. */
int codec_encode(const aq_job *j, aq_buf *out);

/* ---- the bounded msgpack reader --------------------------------------
 * One reader for all msgpack the tree reads from untrusted bytes: jobs
 * (codec_decode) and dead-letter records (tools/ctl_dlq_record.c). No I/O,
 * no allocation, no recursion: every declared length is checked against
 * the bytes present before it is used, and a container is only reported,
 * never entered (a 5-byte header declaring 4 G elements costs nothing).
 * Each caller decides which types it accepts. */
enum { MP_NIL, MP_BOOL, MP_INT, MP_UINT, MP_STR, MP_BIN, MP_MAP, MP_ARRAY, MP_FLOAT, MP_EXT, MP_NEVER };

typedef struct mp_reader {
    const uint8_t *p, *end, *start; /* position, end, first byte (offsets count from it) */
    char *err;                      /* failures: "<what> at offset N" */
    size_t errlen;
    const char *unit;               /* what the bytes are, in messages: "job", "record" */
    int len_detail;                 /* 1: "truncated string (declared length exceeds job)" */
} mp_reader;

/* One value. s points into the reader's buffer, which must outlive it. */
typedef struct mp_value {
    int type;       /* MP_* */
    int64_t i;      /* MP_INT (negative fixint, int8..int64) */
    uint64_t u;     /* MP_UINT (positive fixint, uint8..uint64), MP_BOOL (0/1) */
    const char *s;  /* MP_STR, MP_BIN */
    uint32_t len;
    size_t off;     /* offset of the value's first byte */
} mp_value;

void mp_reader_init(mp_reader *r, const char *buf, size_t len, const char *unit, int len_detail, char *err,
                    size_t errlen);
/* Writes "<what> at offset <off>" into r->err; returns -1. */
int mp_fail(mp_reader *r, size_t off, const char *what);
/* A map header: 0 with *n entries; 1 if the next byte starts no map (or
 * there is none), nothing consumed and no error written; -1 with "truncated
 * map header at offset N". */
int mp_read_map(mp_reader *r, uint32_t *n);
/* Reads one value. nil, bool, int, str and bin are consumed; for MP_MAP,
 * MP_ARRAY, MP_FLOAT, MP_EXT and MP_NEVER (byte 0xc1) only type and off are
 * set and nothing is consumed. -1 when the bytes end inside the value:
 * "truncated <unit>: value expected", "truncated integer", "truncated
 * length", "truncated string" / "truncated binary" (+ len_detail). */
int mp_read(mp_reader *r, mp_value *v);
/* Consumes the float mp_read reported as MP_FLOAT; -1 with "truncated float". */
int mp_read_float(mp_reader *r, double *d);

/* A worker's retry re-encodes a job with attempts set (and priority always
 * written), which can make it up to 34 bytes longer than the bytes that were
 * pushed (docs/PROTOCOL.md, section 3). A job with attempts >= 1 may
 * therefore exceed max_bytes by this much, so a job accepted once is not
 * refused as oversized on its retry. */
#define CODEC_REENCODE_SLACK   64

/* Decodes and validates one job. Returns 0 and fills *j (pointing into buf)
 * or -1 with a precise reason in err ("truncated string (declared length
 * exceeds job) at offset 17", "missing required key action", ...): printable
 * UTF-8, input bytes echoed only escaped (text_escape). Never allocates,
 * never recurses, never reads past buf + len. Refuses len > max_bytes
 * (len > max_bytes + CODEC_REENCODE_SLACK before reading anything; within
 * the slack only when attempts is 0). */
int codec_decode(const char *buf, size_t len, size_t max_bytes, aq_job *j, char *err, size_t errlen);
#endif
