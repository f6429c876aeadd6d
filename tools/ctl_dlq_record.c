/* ctl_dlq_record.c -- dead-letter records, read with the bounded msgpack
 * reader of codec.h, and the dlq filters (see ctl_dlq_record.h). */
#include "ctl_dlq_record.h"
#include "uuid7.h"

#include <stdio.h>
#include <string.h>

/* Reads one scalar with the shared bounded reader (codec.h); containers
 * and ext are refused (a record has none), and so is an integer beyond
 * int64 (the record's numbers are counts and times). */
static int rec_val(mp_reader *r, dlq_value *v)
{
    mp_value m;

    memset(v, 0, sizeof *v);
    if (mp_read(r, &m) != 0)
        return -1;
    switch (m.type) {
    case MP_NIL: v->type = DLQ_NIL; return 0;
    case MP_BOOL: v->type = DLQ_BOOL; v->i = (long long)m.u; return 0;
    case MP_INT: v->type = DLQ_INT; v->i = (long long)m.i; return 0;
    case MP_UINT:
        if (m.u > INT64_MAX)
            return mp_fail(r, m.off, "integer out of range");
        v->type = DLQ_INT;
        v->i = (long long)m.u;
        return 0;
    case MP_STR: case MP_BIN:
        v->type = m.type == MP_STR ? DLQ_STR : DLQ_BIN;
        v->s = m.s;
        v->len = m.len;
        return 0;
    case MP_FLOAT: /* cmsgpack packs a non-integral Lua number as a float */
        v->type = DLQ_FLOAT;
        return mp_read_float(r, &v->d);
    case MP_MAP: case MP_ARRAY:
        return mp_fail(r, m.off, "nested map or array");
    default:
        return mp_fail(r, m.off, "unsupported msgpack type");
    }
}

static int key_is(const dlq_field *f, const char *name)
{
    return f->klen == strlen(name) && memcmp(f->key, name, f->klen) == 0;
}

static void rec_text(const dlq_value *v, const char **p, size_t *len)
{
    if (v->type == DLQ_STR || v->type == DLQ_BIN) {
        *p = v->s;
        *len = v->len;
    }
}

int dlq_record_parse(const char *buf, size_t len, dlq_record *r, char *err, size_t errlen)
{
    mp_reader rd;
    uint32_t n;
    int m;

    memset(r, 0, sizeof *r);
    r->prio = -1;
    if (len == 0) {
        snprintf(err, errlen, "empty record");
        return -1;
    }
    mp_reader_init(&rd, buf, len, "record", 0, err, errlen);
    m = mp_read_map(&rd, &n);
    if (m < 0)
        return -1;
    if (m > 0)
        return mp_fail(&rd, 0, "not a msgpack map");
    if (n > DLQ_MAX_FIELDS) {
        snprintf(err, errlen, "map declares %u entries, more than the %d a record may have", n,
                 DLQ_MAX_FIELDS);
        return -1;
    }
    for (uint32_t e = 0; e < n; e++) {
        dlq_value k;
        dlq_field *f = &r->f[r->nf];

        if (rec_val(&rd, &k) != 0)
            return -1;
        if (k.type != DLQ_STR)
            return mp_fail(&rd, (size_t)(rd.p - rd.start), "map key is not a string");
        if (rec_val(&rd, &f->v) != 0)
            return -1;
        f->key = k.s;
        f->klen = k.len;
        r->nf++;
    }
    if (rd.p != rd.end) {
        snprintf(err, errlen, "%zu trailing bytes after the record map", (size_t)(rd.end - rd.p));
        return -1;
    }
    /* Known fields; for a duplicated key the last one wins, as in msgpack
     * readers generally. */
    for (int i = 0; i < r->nf; i++) {
        const dlq_field *f = &r->f[i];
        if (key_is(f, "job") && (f->v.type == DLQ_BIN || f->v.type == DLQ_STR)) {
            r->job = f->v.s;
            r->job_len = f->v.len;
            r->job_is_str = f->v.type == DLQ_STR;
        } else if (key_is(f, "reason")) {
            rec_text(&f->v, &r->reason, &r->reason_len);
        } else if (key_is(f, "priority")) {
            rec_text(&f->v, &r->priority, &r->priority_len);
        } else if (key_is(f, "worker")) {
            rec_text(&f->v, &r->worker, &r->worker_len);
        } else if (key_is(f, "sqlstate")) {
            rec_text(&f->v, &r->sqlstate, &r->sqlstate_len);
        } else if (key_is(f, "attempts") && f->v.type == DLQ_INT) {
            r->attempts = f->v.i;
            r->has_attempts = 1;
        } else if (key_is(f, "failed_at") && (f->v.type == DLQ_INT || f->v.type == DLQ_FLOAT)) {
            r->failed_at_ms = f->v.type == DLQ_INT ? f->v.i : (long long)f->v.d;
            r->has_failed_at = 1;
        }
    }
    if (r->priority)
        r->prio = codec_priority_parse(r->priority, r->priority_len);
    return 0;
}

int dlq_job_event_id(const char *job, size_t len, uint8_t id[16])
{
    char err[128];
    mp_reader rd;
    uint32_t n;

    if (job == NULL || len == 0)
        return 0;
    mp_reader_init(&rd, job, len, "job", 0, err, sizeof err);
    if (mp_read_map(&rd, &n) != 0)
        return 0;
    for (uint32_t e = 0; e < n; e++) {
        mp_value k, v;

        /* mp_read consumes scalars only: a container or float ends the scan. */
        if (mp_read(&rd, &k) != 0 || (k.type != MP_STR && k.type != MP_BIN && k.type != MP_INT &&
                                       k.type != MP_UINT && k.type != MP_NIL && k.type != MP_BOOL))
            return 0;
        if (mp_read(&rd, &v) != 0 || (v.type != MP_STR && v.type != MP_BIN && v.type != MP_INT &&
                                       v.type != MP_UINT && v.type != MP_NIL && v.type != MP_BOOL))
            return 0;
        if (k.type == MP_STR && k.len == 8 && memcmp(k.s, "event_id", 8) == 0 && v.type == MP_STR)
            return uuid_parse(v.s, v.len, id) == 0;
    }
    return 0;
}

void dlq_filter_init(dlq_filter *f)
{
    memset(f, 0, sizeof *f);
    f->priority = -1;
    f->older_than_ms = -1;
    f->newer_than_ms = -1;
}

int dlq_filter_active(const dlq_filter *f)
{
    return f->reason || f->sqlstate || f->priority >= 0 || f->older_than_ms >= 0 ||
           f->newer_than_ms >= 0 || f->has_event_id;
}

int dlq_filter_match(const dlq_filter *f, const dlq_record *r, const aq_job *job, long long now_ms)
{
    if (!r)
        return !dlq_filter_active(f);
    if (f->reason) {
        size_t n = strlen(f->reason);
        if (!r->reason || !memmem(r->reason, r->reason_len, f->reason, n))
            return 0;
    }
    if (f->sqlstate && (!r->sqlstate || r->sqlstate_len != strlen(f->sqlstate) ||
                        memcmp(r->sqlstate, f->sqlstate, r->sqlstate_len) != 0))
        return 0;
    if (f->priority >= 0 && r->prio != f->priority)
        return 0;
    if (f->older_than_ms >= 0 || f->newer_than_ms >= 0) {
        if (!r->has_failed_at)
            return 0;
        long long age = now_ms - r->failed_at_ms;
        if (f->older_than_ms >= 0 && !(age > f->older_than_ms))
            return 0;
        if (f->newer_than_ms >= 0 && !(age < f->newer_than_ms))
            return 0;
    }
    if (f->has_event_id && (!job || memcmp(job->id, f->event_id, 16) != 0))
        return 0;
    return 1;
}
