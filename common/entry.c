/* entry.c -- the canonical entries of the Merkle tree (contracts in
 * entry.h, the format in docs/INTEGRITY.md "The canonical form").
 *
 * The framing is deliberately dumb: a type byte, then per field a 4-byte
 * big-endian length or FF FF FF FF for NULL. Lengths make the encoding
 * injective (no two rows give the same bytes: "ab"+"c" and "a"+"bc" differ,
 * NULL differs from ""), and the same bytes come out of PostgreSQL's own
 * functions (int4send, convert_to) in the trigger, so C and SQL need no
 * shared escaping rules.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1 /* SHA256_*: see merkle.c's DESIGN */
#include "entry.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include <openssl/sha.h>

#include "text.h"

const char *const entry_event_fields[ENTRY_EVENT_NFIELDS] = {
    "event_id",   "occurred_at", "received_at", "priority",   "tenant_id",  "actor_id",
    "actor_type", "action",      "entity_type", "entity_id",  "outcome",    "source_ip",
    "user_agent", "request_id",  "session_id",  "changes",    "metadata",   "clock_flag",
};

const char entry_event_select_sql[] =
    "event_id::text, "
    "(extract(epoch from occurred_at) * 1000000)::bigint::text, "
    "(extract(epoch from received_at) * 1000000)::bigint::text, "
    "priority, tenant_id, actor_id, actor_type, action, entity_type, entity_id, outcome, "
    "source_ip, user_agent, request_id, session_id, changes::text, metadata::text, clock_flag";

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

size_t entry_event_encode(const char *const vals[ENTRY_EVENT_NFIELDS],
                          const size_t lens[ENTRY_EVENT_NFIELDS], unsigned char *out, size_t cap)
{
    size_t need = 1 + 4 * (size_t)ENTRY_EVENT_NFIELDS, off;

    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
        if (vals[i] == NULL)
            continue;
        if (lens[i] > ENTRY_FIELD_MAX)
            return 0;
        need += lens[i];
    }
    if (out == NULL || cap < need)
        return need;
    out[0] = ENTRY_TYPE_EVENT;
    off = 1;
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
        if (vals[i] == NULL) {
            put_be32(out + off, ENTRY_NULL_LEN);
            off += 4;
            continue;
        }
        put_be32(out + off, (uint32_t)lens[i]);
        off += 4;
        if (lens[i] > 0)
            memcpy(out + off, vals[i], lens[i]);
        off += lens[i];
    }
    return need;
}

int entry_event_leaf_hash(const char *const vals[ENTRY_EVENT_NFIELDS],
                          const size_t lens[ENTRY_EVENT_NFIELDS], merkle_hash out)
{
    /* 0x00 (the leaf prefix) and 0x01 (the entry type), then the fields;
     * lengths are hashed in runs with the short fields they precede, so a
     * typical row is a handful of SHA256_Update calls. */
    unsigned char buf[512];
    size_t n = 0;
    SHA256_CTX c;

    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++)
        if (vals[i] != NULL && lens[i] > ENTRY_FIELD_MAX)
            return -1;
    SHA256_Init(&c);
    buf[n++] = 0x00;
    buf[n++] = ENTRY_TYPE_EVENT;
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
        size_t len = vals[i] == NULL ? 0 : lens[i];

        if (n + 4 + len > sizeof buf) {
            SHA256_Update(&c, buf, n);
            n = 0;
        }
        put_be32(buf + n, vals[i] == NULL ? ENTRY_NULL_LEN : (uint32_t)len);
        n += 4;
        if (len == 0)
            continue;
        if (n + len <= sizeof buf) {
            memcpy(buf + n, vals[i], len);
            n += len;
        } else {
            SHA256_Update(&c, buf, n);
            n = 0;
            SHA256_Update(&c, vals[i], len);
        }
    }
    SHA256_Update(&c, buf, n);
    SHA256_Final(out, &c);
    return 0;
}

size_t entry_format_us(int64_t us, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%" PRId64, us);
    return n < 0 ? 0 : (size_t)n;
}

int entry_decode(const void *p, size_t len, entry_view *v, char *err, size_t errlen)
{
    const unsigned char *b = p;
    size_t off = 1;
    char nb[32];

    if (len == 0) {
        text_errf(err, errlen, "entry is empty");
        return -1;
    }
    memset(v, 0, sizeof *v);
    v->type = b[0];
    while (off < len) {
        uint32_t flen;
        unsigned i = v->nfields;

        if (i == ENTRY_MAX_FIELDS) {
            text_errf(err, errlen, "entry has more than %d fields", ENTRY_MAX_FIELDS);
            return -1;
        }
        if (len - off < 4) {
            text_errf(err, errlen, "field %u (%s) is cut short: %zu of its 4 length bytes at offset %zu",
                    i + 1, entry_field_name(v->type, i, nb, sizeof nb), len - off, off);
            return -1;
        }
        flen = (uint32_t)b[off] << 24 | (uint32_t)b[off + 1] << 16 | (uint32_t)b[off + 2] << 8 |
               b[off + 3];
        off += 4;
        if (flen == ENTRY_NULL_LEN) {
            v->f[i].p = NULL;
            v->f[i].len = 0;
        } else {
            if (flen > len - off) {
                text_errf(err, errlen,
                        "field %u (%s) runs past the end: length %u at offset %zu, %zu bytes left",
                        i + 1, entry_field_name(v->type, i, nb, sizeof nb), flen, off - 4,
                        len - off);
                return -1;
            }
            v->f[i].p = b + off;
            v->f[i].len = flen;
            off += flen;
        }
        v->nfields++;
    }
    if (v->type == ENTRY_TYPE_EVENT && v->nfields != ENTRY_EVENT_NFIELDS) {
        text_errf(err, errlen, "event entry has %u fields, version 1 has %d", v->nfields,
                ENTRY_EVENT_NFIELDS);
        return -1;
    }
    return 0;
}

const char *entry_field_name(unsigned type, unsigned i, char *buf, size_t n)
{
    if (type == ENTRY_TYPE_EVENT && i < ENTRY_EVENT_NFIELDS)
        return entry_event_fields[i];
    snprintf(buf, n, "field%u", i + 1);
    return buf;
}

void entry_print(FILE *out, const entry_view *v, int json)
{
    char nb[32];

    if (json) {
        fprintf(out, "{\"type\":%u", v->type);
        for (unsigned i = 0; i < v->nfields; i++) {
            const char *name = entry_field_name(v->type, i, nb, sizeof nb);

            fputc(',', out);
            text_json_fput(out, name, strlen(name), 0);
            fputc(':', out);
            if (v->f[i].p == NULL)
                fputs("null", out);
            else
                text_json_fput(out, (const char *)v->f[i].p, v->f[i].len, 0);
        }
        fputc('}', out);
        return;
    }
    fprintf(out, "  type: %u (%s)\n", v->type,
            v->type == ENTRY_TYPE_EVENT       ? "event, version 1"
            : v->type == ENTRY_TYPE_RETENTION ? "retention record"
                                              : "unknown");
    for (unsigned i = 0; i < v->nfields; i++) {
        char shown[1024];
        const char *name = entry_field_name(v->type, i, nb, sizeof nb);

        /* Quoted, so NULL and the text "NULL" are told apart. */
        if (v->f[i].p == NULL) {
            fprintf(out, "  %s: NULL\n", name);
            continue;
        }
        text_escape(shown, sizeof shown, (const char *)v->f[i].p, v->f[i].len, 300);
        fprintf(out, "  %s: \"%s\"\n", name, shown);
    }
}
