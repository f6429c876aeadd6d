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
            snprintf(err, errlen, "actor_type: '%.*s' is not one of user, service, ai, system",
                     (int)(len > 32 ? 32 : len), p);
            return AUDITQ_ERR_INVALID_ARG;
        }
        break;
    case AUDITQ_OUTCOME:
        if (!in_set(p, len, outcomes)) {
            snprintf(err, errlen, "outcome: '%.*s' is not one of success, failure, denied",
                     (int)(len > 32 ? 32 : len), p);
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

/* ---- decoding ------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p, *end, *start;
    char *err;
    size_t errlen;
} rd;

enum { V_NIL, V_BOOL, V_INT, V_UINT, V_STR, V_BIN };

typedef struct val {
    int type;
    int64_t i;
    uint64_t u;
    const char *s;
    uint32_t len;
} val;

static int rd_fail(rd *r, const char *what)
{
    snprintf(r->err, r->errlen, "%s at offset %zu", what, (size_t)(r->p - r->start));
    return -1;
}

static int rd_need(rd *r, size_t n, const char *what)
{
    if ((size_t)(r->end - r->p) < n)
        return rd_fail(r, what);
    return 0;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Reads one scalar. Containers and ext types are refused: a job has none. */
static int rd_val(rd *r, val *v)
{
    if (rd_need(r, 1, "truncated job: value expected"))
        return -1;
    uint8_t t = *r->p;
    int lenbytes = 0, intbytes = 0, sign = 0;
    memset(v, 0, sizeof *v);
    if (t <= 0x7f) {
        r->p++;
        v->type = V_UINT;
        v->u = t;
        return 0;
    }
    if (t >= 0xe0) {
        r->p++;
        v->type = V_INT;
        v->i = (int8_t)t;
        return 0;
    }
    if (t >= 0xa0 && t <= 0xbf) {
        r->p++;
        v->type = V_STR;
        v->len = t & 0x1f;
        goto body;
    }
    switch (t) {
    case 0xc0: r->p++; v->type = V_NIL; return 0;
    case 0xc2: case 0xc3: r->p++; v->type = V_BOOL; v->u = t == 0xc3; return 0;
    case 0xd9: lenbytes = 1; v->type = V_STR; break;
    case 0xda: lenbytes = 2; v->type = V_STR; break;
    case 0xdb: lenbytes = 4; v->type = V_STR; break;
    case 0xc4: lenbytes = 1; v->type = V_BIN; break;
    case 0xc5: lenbytes = 2; v->type = V_BIN; break;
    case 0xc6: lenbytes = 4; v->type = V_BIN; break;
    case 0xcc: intbytes = 1; break;
    case 0xcd: intbytes = 2; break;
    case 0xce: intbytes = 4; break;
    case 0xcf: intbytes = 8; break;
    case 0xd0: intbytes = 1; sign = 1; break;
    case 0xd1: intbytes = 2; sign = 1; break;
    case 0xd2: intbytes = 4; sign = 1; break;
    case 0xd3: intbytes = 8; sign = 1; break;
    case 0x80 ... 0x8f: case 0x90 ... 0x9f: case 0xdc ... 0xdf:
        return rd_fail(r, "nested map or array not allowed");
    case 0xca: case 0xcb:
        return rd_fail(r, "float not allowed");
    default:
        return rd_fail(r, "unsupported msgpack type");
    }
    if (intbytes) {
        if (rd_need(r, 1 + (size_t)intbytes, "truncated integer"))
            return -1;
        uint64_t u = be(r->p + 1, intbytes);
        r->p += 1 + intbytes;
        if (!sign) {
            v->type = V_UINT;
            v->u = u;
        } else {
            v->type = V_INT;
            int shift = 64 - 8 * intbytes;
            v->i = (int64_t)(u << shift) >> shift; /* sign-extend */
        }
        return 0;
    }
    if (rd_need(r, 1 + (size_t)lenbytes, "truncated length"))
        return -1;
    v->len = (uint32_t)be(r->p + 1, lenbytes);
    r->p += 1 + lenbytes;
body:
    if (rd_need(r, v->len, v->type == V_STR ? "truncated string (declared length exceeds job)"
                                             : "truncated binary (declared length exceeds job)"))
        return -1;
    v->s = (const char *)r->p;
    r->p += v->len;
    return 0;
}

static int as_int64(const val *v, int64_t *out)
{
    if (v->type == V_INT) {
        *out = v->i;
        return 0;
    }
    if (v->type == V_UINT && v->u <= INT64_MAX) {
        *out = (int64_t)v->u;
        return 0;
    }
    return -1;
}

int codec_decode(const char *buf, size_t len, size_t max_bytes, aq_job *j, char *err, size_t errlen)
{
    rd r = {(const uint8_t *)buf, (const uint8_t *)buf + len, (const uint8_t *)buf, err, errlen};
    uint32_t n;
    uint64_t seen = 0; /* bit per known key: duplicate detection */
    val k, v;

    memset(j, 0, sizeof *j);
    j->priority = AUDITQ_PRIORITY_NORMAL;
    if (errlen)
        err[0] = '\0';
    if (len > max_bytes) {
        snprintf(err, errlen, "job is %zu bytes, larger than max_job_bytes=%zu", len, max_bytes);
        return -1;
    }
    if (len == 0) {
        snprintf(err, errlen, "empty job");
        return -1;
    }
    uint8_t t = *r.p;
    if (t >= 0x80 && t <= 0x8f) {
        n = t & 0x0f;
        r.p++;
    } else if (t == 0xde || t == 0xdf) {
        int nb = t == 0xde ? 2 : 4;
        if (rd_need(&r, 1 + (size_t)nb, "truncated map header"))
            return -1;
        n = (uint32_t)be(r.p + 1, nb);
        r.p += 1 + nb;
    } else {
        return rd_fail(&r, "job is not a msgpack map");
    }
    if (n > CODEC_MAX_KEYS) {
        snprintf(err, errlen, "map declares %u entries, more than the limit of %d", n, CODEC_MAX_KEYS);
        return -1;
    }
    /* Each entry takes at least 2 bytes: refuse early what cannot fit. */
    if ((size_t)n * 2 > (size_t)(r.end - r.p))
        return rd_fail(&r, "truncated job: map declares more entries than bytes present");

    for (uint32_t e = 0; e < n; e++) {
        if (rd_val(&r, &k) != 0)
            return -1;
        if (k.type != V_STR)
            return rd_fail(&r, "map key is not a string");
        if (rd_val(&r, &v) != 0)
            return -1;
        int bit = -1;
#define KEY_IS(lit) (k.len == sizeof(lit) - 1 && memcmp(k.s, lit, sizeof(lit) - 1) == 0)
        if (KEY_IS("v")) {
            bit = 20;
            /* Any msgpack integer encoding: Go and others write small ints
             * as signed types. */
            int64_t ver;
            if (as_int64(&v, &ver) != 0 || ver <= 0) {
                snprintf(err, errlen, "key v: schema version must be a positive integer");
                return -1;
            }
            if (ver != AUDITQ_SCHEMA_VERSION) {
                snprintf(err, errlen, "key v: unsupported schema version %lld (this worker reads %d)",
                         (long long)ver, AUDITQ_SCHEMA_VERSION);
                return -1;
            }
            j->version = (uint32_t)ver;
        } else if (KEY_IS("occurred_at")) {
            bit = 21;
            int64_t ts;
            if (as_int64(&v, &ts) != 0) {
                snprintf(err, errlen, "key occurred_at: must be an integer (microseconds since epoch)");
                return -1;
            }
            if (ts <= 0 || ts > CODEC_MAX_TS_US) {
                snprintf(err, errlen, "key occurred_at: %lld is outside 1970..9999 (microseconds since epoch)",
                         (long long)ts);
                return -1;
            }
            j->occurred_at_us = ts;
        } else if (KEY_IS("priority")) {
            bit = 22;
            int p = v.type == V_STR ? codec_priority_parse(v.s, v.len) : -1;
            if (p < 0) {
                snprintf(err, errlen, "key priority: must be one of critical, high, normal, low");
                return -1;
            }
            j->priority = p;
        } else if (KEY_IS("attempts")) {
            bit = 23;
            int64_t att;
            if (as_int64(&v, &att) != 0 || att < 0 || att > 1000000) {
                snprintf(err, errlen, "key attempts: must be an integer 0..1000000");
                return -1;
            }
            j->attempts = (uint32_t)att;
        } else {
            for (int f = 0; f < AUDITQ_FIELD_COUNT; f++) {
                if (field_key_len[f] != k.len || memcmp(field_keys[f], k.s, k.len) != 0)
                    continue;
                bit = f;
                if (v.type == V_NIL) {
                    if (f == AUDITQ_EVENT_ID)
                        bit = 24; /* nil id = no id: refused below as missing */
                    break;        /* explicit nil = absent */
                }
                if (v.type != V_STR) {
                    snprintf(err, errlen, "key %s: must be a string", field_keys[f]);
                    return -1;
                }
                if (codec_check_field((auditq_field)f, v.s, v.len, err, errlen) != AUDITQ_OK)
                    return -1;
                if (f == AUDITQ_EVENT_ID)
                    uuid_parse(v.s, v.len, j->id);
                else {
                    j->f[f].p = v.s;
                    j->f[f].len = v.len;
                }
                break;
            }
            if (bit < 0) {
                /* Unknown keys are ignored (forward compatibility), but only
                 * scalars: rd_val already refused containers. */
                bit = 63;
                if (!text_utf8_valid(k.s, k.len, NULL)) {
                    snprintf(err, errlen, "map key is not valid UTF-8");
                    return -1;
                }
                continue;
            }
        }
#undef KEY_IS
        if (seen & (1ULL << bit)) {
            /* The name is formatted only here: a snprintf per key was a
             * third of the worker's CPU (callgrind, BENCHMARKS.md). */
            snprintf(err, errlen, "duplicate key %.*s", (int)(k.len > 20 ? 20 : k.len), k.s);
            return -1;
        }
        seen |= 1ULL << bit;
    }
    if (r.p != r.end) {
        snprintf(err, errlen, "%zu trailing bytes after the job map", (size_t)(r.end - r.p));
        return -1;
    }
    static const struct { int bit; const char *name; } required[] = {
        {20, "v"}, {AUDITQ_EVENT_ID, "event_id"}, {21, "occurred_at"}, {AUDITQ_ACTION, "action"}};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!(seen & (1ULL << required[i].bit)) ||
            (required[i].bit == AUDITQ_ACTION && !j->f[AUDITQ_ACTION].p)) {
            snprintf(err, errlen, "missing required key %s", required[i].name);
            return -1;
        }
    }
    return 0;
}
