/* ctl_dlq_record.c -- bounded reader for dead-letter records and the dlq
 * filters (see ctl_dlq_record.h). */
#include "ctl_dlq_record.h"

#include <stdio.h>
#include <string.h>

typedef struct rec_rd {
    const unsigned char *p, *end, *start;
    char *err;
    size_t errlen;
} rec_rd;

static int rec_fail(rec_rd *r, const char *what)
{
    snprintf(r->err, r->errlen, "%s at offset %zu", what, (size_t)(r->p - r->start));
    return -1;
}

static int rec_need(rec_rd *r, size_t n, const char *what)
{
    return (size_t)(r->end - r->p) < n ? rec_fail(r, what) : 0;
}

static uint64_t rec_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads one scalar; containers and ext are refused (a record has none). */
static int rec_val(rec_rd *r, dlq_value *v)
{
    int lenbytes = 0, intbytes = 0, sign = 0;
    unsigned char t;

    memset(v, 0, sizeof *v);
    if (rec_need(r, 1, "truncated record: value expected"))
        return -1;
    t = *r->p;
    if (t <= 0x7f || t >= 0xe0) {
        v->type = DLQ_INT;
        v->i = t <= 0x7f ? t : (int8_t)t;
        r->p++;
        return 0;
    }
    if (t >= 0xa0 && t <= 0xbf) {
        v->type = DLQ_STR;
        v->len = t & 0x1f;
        r->p++;
        goto body;
    }
    switch (t) {
    case 0xc0: r->p++; v->type = DLQ_NIL; return 0;
    case 0xc2: case 0xc3: r->p++; v->type = DLQ_BOOL; v->i = t == 0xc3; return 0;
    case 0xd9: lenbytes = 1; v->type = DLQ_STR; break;
    case 0xda: lenbytes = 2; v->type = DLQ_STR; break;
    case 0xdb: lenbytes = 4; v->type = DLQ_STR; break;
    case 0xc4: lenbytes = 1; v->type = DLQ_BIN; break;
    case 0xc5: lenbytes = 2; v->type = DLQ_BIN; break;
    case 0xc6: lenbytes = 4; v->type = DLQ_BIN; break;
    case 0xcc: intbytes = 1; break;
    case 0xcd: intbytes = 2; break;
    case 0xce: intbytes = 4; break;
    case 0xcf: intbytes = 8; break;
    case 0xd0: intbytes = 1; sign = 1; break;
    case 0xd1: intbytes = 2; sign = 1; break;
    case 0xd2: intbytes = 4; sign = 1; break;
    case 0xd3: intbytes = 8; sign = 1; break;
    case 0xca: case 0xcb: {
        /* cmsgpack packs a non-integral Lua number as a float. */
        int nb = t == 0xca ? 4 : 8;
        if (rec_need(r, 1 + (size_t)nb, "truncated float"))
            return -1;
        uint64_t bits = rec_be(r->p + 1, nb);
        if (nb == 4) {
            uint32_t b32 = (uint32_t)bits;
            float fv;
            memcpy(&fv, &b32, sizeof fv);
            v->d = fv;
        } else {
            memcpy(&v->d, &bits, sizeof v->d);
        }
        v->type = DLQ_FLOAT;
        r->p += 1 + nb;
        return 0;
    }
    case 0x80 ... 0x8f: case 0x90 ... 0x9f: case 0xdc ... 0xdf:
        return rec_fail(r, "nested map or array");
    default:
        return rec_fail(r, "unsupported msgpack type");
    }
    if (intbytes) {
        if (rec_need(r, 1 + (size_t)intbytes, "truncated integer"))
            return -1;
        uint64_t u = rec_be(r->p + 1, intbytes);
        if (sign) {
            int shift = 64 - 8 * intbytes;
            v->i = (long long)((int64_t)(u << shift) >> shift);
        } else if (u > INT64_MAX) {
            return rec_fail(r, "integer out of range");
        } else {
            v->i = (long long)u;
        }
        v->type = DLQ_INT;
        r->p += 1 + intbytes;
        return 0;
    }
    if (rec_need(r, 1 + (size_t)lenbytes, "truncated length"))
        return -1;
    v->len = (size_t)rec_be(r->p + 1, lenbytes);
    r->p += 1 + lenbytes;
body:
    if (rec_need(r, v->len, v->type == DLQ_BIN ? "truncated binary" : "truncated string"))
        return -1;
    v->s = (const char *)r->p;
    r->p += v->len;
    return 0;
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
    rec_rd rd = {(const unsigned char *)buf, (const unsigned char *)buf + len,
                 (const unsigned char *)buf, err, errlen};
    uint32_t n;
    unsigned char t;

    memset(r, 0, sizeof *r);
    r->prio = -1;
    if (len == 0) {
        snprintf(err, errlen, "empty record");
        return -1;
    }
    t = *rd.p;
    if (t >= 0x80 && t <= 0x8f) {
        n = t & 0x0f;
        rd.p++;
    } else if (t == 0xde || t == 0xdf) {
        int nb = t == 0xde ? 2 : 4;
        if (rec_need(&rd, 1 + (size_t)nb, "truncated map header"))
            return -1;
        n = (uint32_t)rec_be(rd.p + 1, nb);
        rd.p += 1 + nb;
    } else {
        return rec_fail(&rd, "not a msgpack map");
    }
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
            return rec_fail(&rd, "map key is not a string");
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
