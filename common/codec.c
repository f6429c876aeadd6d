/* codec.c -- job wire format: msgpack-c packer out, bounded reader in.
 *
 * Why a hand-written reader: msgpack_unpack() allocates what a header
 * declares before checking the bytes exist (a 5-byte array32 header asks for
 * 4 G elements), and accepts every type at every depth. A job is a flat map
 * of scalars, so a reader that knows only those types, checks every length
 * against the remaining bytes and allocates nothing is both simpler and
 * safe on hostile input.
 */
#include "codec.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "uuid7.h"

/* 9999-12-31T23:59:59Z in microseconds: the largest timestamp we accept
 * (PostgreSQL goes further, but nothing real does). */
#define CODEC_MAX_TS_US 253402300799999999LL

static const char *const prio_names[AQ_PRIORITIES_N] = {"critical", "high", "normal", "low"};

static const char *const field_keys[AUDITQ_FIELD_COUNT] = {
    "event_id",   "tenant_id",  "actor_id",   "actor_type", "action",
    "entity_type", "entity_id", "outcome",    "source_ip",  "user_agent",
    "request_id", "session_id", "changes",    "metadata",
};
/* strlen of each field_keys entry (the decoder compares lengths first). */
static const uint8_t field_key_len[AUDITQ_FIELD_COUNT] = {
    8, 9, 8, 10, 6, 11, 9, 7, 9, 10, 10, 10, 7, 8,
};

int aq_buf_reserve(aq_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int aq_buf_printf(aq_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || aq_buf_reserve(b, (size_t)n + 1) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int aq_buf_append(aq_buf *b, const void *p, size_t n)
{
    if (aq_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

const char *codec_priority_name(int priority)
{
    if (priority < 0 || priority >= AQ_PRIORITIES_N)
        return NULL;
    return prio_names[priority];
}

int codec_priority_parse(const char *s, size_t len)
{
    for (int i = 0; i < AQ_PRIORITIES_N; i++)
        if (strlen(prio_names[i]) == len && memcmp(prio_names[i], s, len) == 0)
            return i;
    return -1;
}

const char *codec_field_key(auditq_field f)
{
    if ((int)f < 0 || f >= AUDITQ_FIELD_COUNT)
        return NULL;
    return field_keys[f];
}

static int in_set(const char *p, size_t len, const char *const *set)
{
    for (; *set; set++)
        if (strlen(*set) == len && memcmp(*set, p, len) == 0)
            return 1;
    return 0;
}

auditq_rc codec_check_field(auditq_field f, const char *p, size_t len, char *err, size_t errlen)
{
    static const char *const actor_types[] = {"user", "service", "ai", "system", NULL};
    static const char *const outcomes[] = {"success", "failure", "denied", NULL};
    const char *key = codec_field_key(f);
    size_t bad = 0, max;
    uint8_t id[16];
    char shown[64];

    if (!key) {
        snprintf(err, errlen, "unknown field %d", (int)f);
        return AUDITQ_ERR_INVALID_ARG;
    }
    switch (f) {
    case AUDITQ_ACTION: max = CODEC_MAX_ACTION; break;
    case AUDITQ_SOURCE_IP: max = CODEC_MAX_SOURCE_IP; break;
    case AUDITQ_USER_AGENT: max = CODEC_MAX_USER_AGENT; break;
    case AUDITQ_CHANGES:
    case AUDITQ_METADATA: max = UINT32_MAX; break; /* bounded by max_job_bytes */
    default: max = CODEC_MAX_ID_FIELD; break;
    }
    if (len > max) {
        snprintf(err, errlen, "%s: %zu bytes, longer than the limit of %zu", key, len, max);
        return AUDITQ_ERR_TOO_LARGE;
    }
    if (f == AUDITQ_CHANGES || f == AUDITQ_METADATA) {
        char jerr[128];
        if (json_validate_object(p, len, jerr, sizeof jerr) != 0) {
            snprintf(err, errlen, "%s: invalid JSON object: %s", key, jerr);
            return AUDITQ_ERR_INVALID_JSON;
        }
        return AUDITQ_OK;
    }
    if (!text_utf8_valid(p, len, &bad)) {
        snprintf(err, errlen, "%s: %s at byte %zu", key,
                 p[bad] == '\0' ? "NUL byte" : "invalid UTF-8", bad);
        return AUDITQ_ERR_INVALID_UTF8;
    }
    switch (f) {
    case AUDITQ_ACTION:
        if (len == 0) {
            snprintf(err, errlen, "action: must not be empty");
            return AUDITQ_ERR_MISSING_FIELD;
        }
        break;
    case AUDITQ_ACTOR_TYPE:
        if (!in_set(p, len, actor_types)) {
            text_escape(shown, sizeof shown, p, len, 32);
            snprintf(err, errlen, "actor_type: '%s' is not one of user, service, ai, system", shown);
            return AUDITQ_ERR_INVALID_ARG;
        }
        break;
    case AUDITQ_OUTCOME:
        if (!in_set(p, len, outcomes)) {
            text_escape(shown, sizeof shown, p, len, 32);
            snprintf(err, errlen, "outcome: '%s' is not one of success, failure, denied", shown);
            return AUDITQ_ERR_INVALID_ARG;
        }
        break;
    case AUDITQ_EVENT_ID:
        if (uuid_parse(p, len, id) != 0) {
            snprintf(err, errlen, "event_id: not a UUID in 8-4-4-4-12 hex form");
            return AUDITQ_ERR_INVALID_ARG;
        }
        break;
    default:
        break;
    }
    return AUDITQ_OK;
}

/* ---- encoding ------------------------------------------------------------ */

static int buf_write(void *data, const char *p, size_t n)
{
    return aq_buf_append(data, p, n);
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    if (msgpack_pack_str(pk, n) != 0)
        return -1;
    return msgpack_pack_str_body(pk, s, n);
}

static int pack_key(msgpack_packer *pk, const char *k)
{
    return pack_str(pk, k, strlen(k));
}

int codec_encode(const aq_job *j, aq_buf *out)
{
    msgpack_packer pk;
    size_t start = out->len, n = 4; /* v, event_id, occurred_at, priority */
    char id[37];
    const char *pname = codec_priority_name(j->priority);

    if (!pname)
        pname = "normal";
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++)
        if (j->f[f].p)
            n++;
    if (j->attempts > 0)
        n++;
    uuid_format(j->id, id);
    msgpack_packer_init(&pk, out, buf_write);
    if (msgpack_pack_map(&pk, n) || pack_key(&pk, "v") ||
        msgpack_pack_uint32(&pk, j->version ? j->version : AUDITQ_SCHEMA_VERSION) ||
        pack_key(&pk, "event_id") || pack_str(&pk, id, 36) ||
        pack_key(&pk, "occurred_at") || msgpack_pack_int64(&pk, j->occurred_at_us) ||
        pack_key(&pk, "priority") || pack_str(&pk, pname, strlen(pname)))
        goto oom;
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        if (!j->f[f].p)
            continue;
        if (pack_key(&pk, field_keys[f]) || pack_str(&pk, j->f[f].p, j->f[f].len))
            goto oom;
    }
    if (j->attempts > 0 && (pack_key(&pk, "attempts") || msgpack_pack_uint32(&pk, j->attempts)))
        goto oom;
    return 0;
oom:
    out->len = start;
    return -1;
}

/* ---- the bounded msgpack reader (codec.h) --------------------------------- */

void mp_reader_init(mp_reader *r, const char *buf, size_t len, const char *unit, int len_detail, char *err,
                    size_t errlen)
{
    r->p = r->start = (const uint8_t *)buf;
    r->end = r->start + len;
    r->err = err;
    r->errlen = errlen;
    r->unit = unit;
    r->len_detail = len_detail;
}

int mp_fail(mp_reader *r, size_t off, const char *what)
{
    snprintf(r->err, r->errlen, "%s at offset %zu", what, off);
    return -1;
}

static int mp_need(mp_reader *r, size_t n, const char *what)
{
    if ((size_t)(r->end - r->p) < n)
        return mp_fail(r, (size_t)(r->p - r->start), what);
    return 0;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int mp_read_map(mp_reader *r, uint32_t *n)
{
    if (r->p == r->end)
        return 1;
    uint8_t t = *r->p;
    if (t >= 0x80 && t <= 0x8f) {
        *n = t & 0x0f;
        r->p++;
        return 0;
    }
    if (t != 0xde && t != 0xdf)
        return 1;
    int nb = t == 0xde ? 2 : 4;
    if (mp_need(r, 1 + (size_t)nb, "truncated map header"))
        return -1;
    *n = (uint32_t)be(r->p + 1, nb);
    r->p += 1 + nb;
    return 0;
}

int mp_read(mp_reader *r, mp_value *v)
{
    memset(v, 0, sizeof *v);
    v->off = (size_t)(r->p - r->start);
    if (r->p == r->end) {
        char what[48];
        snprintf(what, sizeof what, "truncated %s: value expected", r->unit);
        return mp_fail(r, v->off, what);
    }
    uint8_t t = *r->p;
    int lenbytes = 0, intbytes = 0, sign = 0;
    if (t <= 0x7f) {
        r->p++;
        v->type = MP_UINT;
        v->u = t;
        return 0;
    }
    if (t >= 0xe0) {
        r->p++;
        v->type = MP_INT;
        v->i = (int8_t)t;
        return 0;
    }
    if (t >= 0xa0 && t <= 0xbf) {
        r->p++;
        v->type = MP_STR;
        v->len = t & 0x1f;
        goto body;
    }
    switch (t) {
    case 0xc0: r->p++; v->type = MP_NIL; return 0;
    case 0xc2: case 0xc3: r->p++; v->type = MP_BOOL; v->u = t == 0xc3; return 0;
    case 0xd9: lenbytes = 1; v->type = MP_STR; break;
    case 0xda: lenbytes = 2; v->type = MP_STR; break;
    case 0xdb: lenbytes = 4; v->type = MP_STR; break;
    case 0xc4: lenbytes = 1; v->type = MP_BIN; break;
    case 0xc5: lenbytes = 2; v->type = MP_BIN; break;
    case 0xc6: lenbytes = 4; v->type = MP_BIN; break;
    case 0xcc: intbytes = 1; break;
    case 0xcd: intbytes = 2; break;
    case 0xce: intbytes = 4; break;
    case 0xcf: intbytes = 8; break;
    case 0xd0: intbytes = 1; sign = 1; break;
    case 0xd1: intbytes = 2; sign = 1; break;
    case 0xd2: intbytes = 4; sign = 1; break;
    case 0xd3: intbytes = 8; sign = 1; break;
    case 0x80 ... 0x8f: case 0xde: case 0xdf: v->type = MP_MAP; return 0;
    case 0x90 ... 0x9f: case 0xdc: case 0xdd: v->type = MP_ARRAY; return 0;
    case 0xca: case 0xcb: v->type = MP_FLOAT; return 0;
    case 0xc7 ... 0xc9: case 0xd4 ... 0xd8: v->type = MP_EXT; return 0;
    default: v->type = MP_NEVER; return 0; /* 0xc1 */
    }
    if (intbytes) {
        if (mp_need(r, 1 + (size_t)intbytes, "truncated integer"))
            return -1;
        uint64_t u = be(r->p + 1, intbytes);
        r->p += 1 + intbytes;
        if (!sign) {
            v->type = MP_UINT;
            v->u = u;
        } else {
            v->type = MP_INT;
            int shift = 64 - 8 * intbytes;
            v->i = (int64_t)(u << shift) >> shift; /* sign-extend */
        }
        return 0;
    }
    if (mp_need(r, 1 + (size_t)lenbytes, "truncated length"))
        return -1;
    v->len = (uint32_t)be(r->p + 1, lenbytes);
    r->p += 1 + lenbytes;
body:
    if ((size_t)(r->end - r->p) < v->len) {
        char what[80];
        snprintf(what, sizeof what, "truncated %s%s%s%s", v->type == MP_STR ? "string" : "binary",
                 r->len_detail ? " (declared length exceeds " : "", r->len_detail ? r->unit : "",
                 r->len_detail ? ")" : "");
        return mp_fail(r, (size_t)(r->p - r->start), what);
    }
    v->s = (const char *)r->p;
    r->p += v->len;
    return 0;
}

int mp_read_float(mp_reader *r, double *d)
{
    int nb = r->p < r->end && *r->p == 0xca ? 4 : 8;
    if (mp_need(r, 1 + (size_t)nb, "truncated float"))
        return -1;
    uint64_t bits = be(r->p + 1, nb);
    if (nb == 4) {
        uint32_t b32 = (uint32_t)bits;
        float fv;
        memcpy(&fv, &b32, sizeof fv);
        *d = fv;
    } else {
        memcpy(d, &bits, sizeof *d);
    }
    r->p += 1 + nb;
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

/* Value types from MP_MAP on are never allowed in a job: mp_read reports
 * them with the offset of their first byte without reading any further (so
 * a declared 4 G-element array costs nothing and nesting can never
 * recurse), and codec_decode refuses the job naming the key. */
static const char *const type_names[] = {
    "nil", "bool", "int", "int", "str", "bin", "map", "array", "float", "ext", "byte 0xc1",
};

typedef mp_value val;

static int as_int64(const val *v, int64_t *out)
{
    if (v->type == MP_INT) {
        *out = v->i;
        return 0;
    }
    if (v->type == MP_UINT && v->u <= INT64_MAX) {
        *out = (int64_t)v->u;
        return 0;
    }
    return -1;
}

static int is_int(const val *v)
{
    return v->type == MP_INT || v->type == MP_UINT;
}

/* An integer value as decimal text (uint64 values above INT64_MAX too). */
static void int_text(const val *v, char *out, size_t cap)
{
    if (v->type == MP_UINT)
        snprintf(out, cap, "%llu", (unsigned long long)v->u);
    else
        snprintf(out, cap, "%lld", (long long)v->i);
}

/* "key K: <want>, got msgpack T at offset X": a value of the wrong type. */
static int fail_type(char *err, size_t errlen, const char *key, const char *want, const val *v)
{
    snprintf(err, errlen, "key %s: %s, got msgpack %s at offset %zu", key, want, type_names[v->type], v->off);
    return -1;
}

/* Pseudo-fields of the `seen` bitmask next to the text fields 0..13. */
enum { BIT_V = 20, BIT_TS, BIT_PRIO, BIT_ATTEMPTS };

/* Bit of a known key, or -1. Compares lengths first: this runs per key of
 * every job. */
static int known_key(const val *k)
{
#define KEY_IS(lit) (k->len == sizeof(lit) - 1 && memcmp(k->s, lit, sizeof(lit) - 1) == 0)
    if (KEY_IS("v"))
        return BIT_V;
    if (KEY_IS("occurred_at"))
        return BIT_TS;
    if (KEY_IS("priority"))
        return BIT_PRIO;
    if (KEY_IS("attempts"))
        return BIT_ATTEMPTS;
#undef KEY_IS
    for (int f = 0; f < AUDITQ_FIELD_COUNT; f++)
        if (field_key_len[f] == k->len && memcmp(field_keys[f], k->s, k->len) == 0)
            return f;
    return -1;
}

int codec_decode(const char *buf, size_t len, size_t max_bytes, aq_job *j, char *err, size_t errlen)
{
    mp_reader r;
    uint32_t n, nunknown = 0;
    uint64_t seen = 0;    /* bit per known key: duplicate detection */
    int have_id = 0;      /* event_id present and not nil */
    aq_str unknown[CODEC_MAX_KEYS]; /* unknown keys so far: duplicate detection */
    char name[64], num[32];
    val k, v;

    memset(j, 0, sizeof *j);
    j->priority = AUDITQ_PRIORITY_NORMAL;
    if (errlen)
        err[0] = '\0';
    /* The cap is checked again once attempts is known (see
     * CODEC_REENCODE_SLACK); this first check bounds the work. */
    if (len > max_bytes && len - max_bytes > CODEC_REENCODE_SLACK) {
        snprintf(err, errlen, "job is %zu bytes, larger than max_job_bytes=%zu", len, max_bytes);
        return -1;
    }
    if (len == 0) {
        snprintf(err, errlen, "empty job");
        return -1;
    }
    mp_reader_init(&r, buf, len, "job", 1, err, errlen);
    int m = mp_read_map(&r, &n);
    if (m < 0)
        return -1;
    if (m > 0)
        return mp_fail(&r, 0, "job is not a msgpack map");
    if (n > CODEC_MAX_KEYS) {
        snprintf(err, errlen, "map declares %u entries, more than the limit of %d", n, CODEC_MAX_KEYS);
        return -1;
    }
    /* Each entry takes at least 2 bytes: refuse early what cannot fit. */
    if ((size_t)n * 2 > (size_t)(r.end - r.p))
        return mp_fail(&r, (size_t)(r.p - r.start), "truncated job: map declares more entries than bytes present");

    for (uint32_t e = 0; e < n; e++) {
        if (mp_read(&r, &k) != 0)
            return -1;
        if (k.type != MP_STR) {
            snprintf(err, errlen, "map key is not a string (msgpack %s) at offset %zu", type_names[k.type], k.off);
            return -1;
        }
        if (mp_read(&r, &v) != 0)
            return -1;
        int bit = known_key(&k);
        if (bit < 0) {
            /* Unknown keys are ignored (forward compatibility), but must be
             * UTF-8, unique and hold a scalar. */
            size_t bad = 0;
            if (!text_utf8_valid(k.s, k.len, &bad)) {
                snprintf(err, errlen, "map key at offset %zu: %s at byte %zu", k.off,
                         k.s[bad] == '\0' ? "NUL byte" : "invalid UTF-8", bad);
                return -1;
            }
            for (uint32_t u = 0; u < nunknown; u++) {
                if (unknown[u].len == k.len && memcmp(unknown[u].p, k.s, k.len) == 0) {
                    text_escape(name, sizeof name, k.s, k.len, 32);
                    snprintf(err, errlen, "duplicate key %s", name);
                    return -1;
                }
            }
            unknown[nunknown].p = k.s;
            unknown[nunknown++].len = k.len;
            if (v.type >= MP_MAP) {
                text_escape(name, sizeof name, k.s, k.len, 32);
                snprintf(err, errlen, "key %s: msgpack %s not allowed (a job holds only nil, bool, int, "
                         "str and bin values) at offset %zu", name, type_names[v.type], v.off);
                return -1;
            }
            continue;
        }
        if (seen & (1ULL << bit)) {
            /* The name is formatted only here: a snprintf per key was a
             * third of the worker's CPU (callgrind, BENCHMARKS.md). */
            snprintf(err, errlen, "duplicate key %.*s", (int)k.len, k.s);
            return -1;
        }
        seen |= 1ULL << bit;
        switch (bit) {
        case BIT_V: {
            /* Any msgpack integer encoding: Go and others write small ints
             * as signed types. */
            int64_t ver;
            if (!is_int(&v))
                return fail_type(err, errlen, "v", "schema version must be a positive integer", &v);
            if (as_int64(&v, &ver) != 0 || ver != AUDITQ_SCHEMA_VERSION) {
                int_text(&v, num, sizeof num);
                if (as_int64(&v, &ver) == 0 && ver <= 0)
                    snprintf(err, errlen, "key v: schema version must be a positive integer, got %s", num);
                else
                    snprintf(err, errlen, "key v: unsupported schema version %s (this worker reads %d)",
                             num, AUDITQ_SCHEMA_VERSION);
                return -1;
            }
            j->version = (uint32_t)ver;
            break;
        }
        case BIT_TS: {
            int64_t ts;
            if (!is_int(&v))
                return fail_type(err, errlen, "occurred_at", "must be an integer (microseconds since epoch)", &v);
            if (as_int64(&v, &ts) != 0 || ts <= 0 || ts > CODEC_MAX_TS_US) {
                int_text(&v, num, sizeof num);
                snprintf(err, errlen, "key occurred_at: %s is outside 1970..9999 (microseconds since epoch)", num);
                return -1;
            }
            j->occurred_at_us = ts;
            break;
        }
        case BIT_PRIO: {
            static const char want[] = "must be one of critical, high, normal, low";
            if (v.type != MP_STR)
                return fail_type(err, errlen, "priority", want, &v);
            int p = codec_priority_parse(v.s, v.len);
            if (p < 0) {
                text_escape(name, sizeof name, v.s, v.len, 32);
                snprintf(err, errlen, "key priority: %s, got '%s'", want, name);
                return -1;
            }
            j->priority = p;
            break;
        }
        case BIT_ATTEMPTS: {
            int64_t att;
            if (!is_int(&v))
                return fail_type(err, errlen, "attempts", "must be an integer 0..1000000", &v);
            if (as_int64(&v, &att) != 0 || att < 0 || att > 1000000) {
                int_text(&v, num, sizeof num);
                snprintf(err, errlen, "key attempts: must be an integer 0..1000000, got %s", num);
                return -1;
            }
            j->attempts = (uint32_t)att;
            break;
        }
        default: { /* a text field */
            int f = bit;
            if (v.type == MP_NIL)
                break; /* explicit nil = absent (a nil event_id is then missing) */
            if (v.type != MP_STR)
                return fail_type(err, errlen, field_keys[f],
                                 f == AUDITQ_CHANGES || f == AUDITQ_METADATA ? "must be a string of JSON text"
                                                                             : "must be a string", &v);
            if (codec_check_field((auditq_field)f, v.s, v.len, err, errlen) != AUDITQ_OK)
                return -1;
            if (f == AUDITQ_EVENT_ID) {
                uuid_parse(v.s, v.len, j->id);
                have_id = 1;
            } else {
                j->f[f].p = v.s;
                j->f[f].len = v.len;
            }
            break;
        }
        }
    }
    if (r.p != r.end) {
        snprintf(err, errlen, "%zu trailing bytes after the job map", (size_t)(r.end - r.p));
        return -1;
    }
    if (!(seen & (1ULL << BIT_V))) {
        snprintf(err, errlen, "missing required key v");
        return -1;
    }
    if (!have_id) {
        snprintf(err, errlen, "missing required key event_id");
        return -1;
    }
    if (!(seen & (1ULL << BIT_TS))) {
        snprintf(err, errlen, "missing required key occurred_at");
        return -1;
    }
    if (!j->f[AUDITQ_ACTION].p) {
        snprintf(err, errlen, "missing required key action");
        return -1;
    }
    if (len > max_bytes && j->attempts == 0) {
        snprintf(err, errlen, "job is %zu bytes, larger than max_job_bytes=%zu", len, max_bytes);
        return -1;
    }
    return 0;
}
