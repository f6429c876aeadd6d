/* ctl_verify_proof.c -- the proof files of docs/INTEGRITY.md ("Proof
 * files"): written by `auditqctl verify --event`, checked by `auditqctl
 * verify --proof FILE` with no database and no settings (contracts in
 * ctl_verify.h).
 *
 * An inclusion proof is checked link by link, each named when it breaks:
 *   key         the embedded verifier key parses and, with --key, equals a
 *               given one (else the output says it was trusted as embedded)
 *   checkpoint  the signed note verifies with that key
 *   tree_size   equals the checkpoint's size
 *   entry       decodes as a canonical entry; for an event, its event_id is
 *               the proof's event_id
 *   leaf_hash   SHA-256(0x00 || entry) equals the proof's leaf_hash
 *   path        RFC 9162 2.1.3.2 from that leaf at leaf_index reaches the
 *               checkpoint's root
 * A consistency proof: both notes verify (by the same log: same origin),
 * old size <= new size, and the path (RFC 9162 2.1.4.2) reproduces both
 * roots.
 *
 * The reader is a small strict JSON parser for exactly these objects:
 * strings (all escapes, surrogate pairs), non-negative integers, arrays of
 * strings; a duplicate key is refused (two values for one field would let
 * a reader and a writer disagree), unknown keys are ignored.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "checkpoint.h"
#include "ctl.h"
#include "ctl_verify.h"
#include "entry.h"
#include "merkle.h"
#include "text.h"

#define PROG "auditqctl verify"
#define MAX_KEYFILES 16

/* ---- the writer ---------------------------------------------------------- */

static void put_hash_array(FILE *out, const merkle_hash *path, size_t n)
{
    char b[64];

    fputc('[', out);
    for (size_t i = 0; i < n; i++) {
        ckpt_b64_encode(path[i], MERKLE_HASH_LEN, b, sizeof b);
        fprintf(out, "%s\"%s\"", i ? "," : "", b);
    }
    fputc(']', out);
}

int ctl_proof_write_inclusion(FILE *out, const char *event_id, uint64_t leaf_index,
                              uint64_t tree_size, const unsigned char *entry, size_t entry_len,
                              const merkle_hash *path, size_t path_len, const char *note,
                              const ckpt_key *k)
{
    char key[CKPT_PUBKEY_TEXT_MAX], lh[64];
    size_t cap = sodium_base64_ENCODED_LEN(entry_len, sodium_base64_VARIANT_ORIGINAL);
    char *eb = malloc(cap);
    merkle_hash leaf;

    if (eb == NULL)
        return -1;
    sodium_bin2base64(eb, cap, entry, entry_len, sodium_base64_VARIANT_ORIGINAL);
    merkle_leaf_hash(entry, entry_len, leaf);
    ckpt_b64_encode(leaf, MERKLE_HASH_LEN, lh, sizeof lh);
    ckpt_key_format_public(k, key, sizeof key);
    fprintf(out, "{\"format\":\"%s\",\"event_id\":", CTL_PROOF_INCLUSION_FORMAT);
    text_json_fput(out, event_id, strlen(event_id), 0);
    fprintf(out, ",\"leaf_index\":%" PRIu64 ",\"tree_size\":%" PRIu64 ",\"entry\":\"%s\","
                 "\"leaf_hash\":\"%s\",\"path\":",
            leaf_index, tree_size, eb, lh);
    put_hash_array(out, path, path_len);
    fputs(",\"checkpoint\":", out);
    text_json_fput(out, note, strlen(note), 0);
    fputs(",\"key\":", out);
    text_json_fput(out, key, strlen(key), 0);
    fputs("}\n", out);
    free(eb);
    return ferror(out) ? -1 : 0;
}

int ctl_proof_write_consistency(FILE *out, const char *old_note, const char *new_note,
                                const merkle_hash *path, size_t path_len, const ckpt_key *k)
{
    char key[CKPT_PUBKEY_TEXT_MAX];

    ckpt_key_format_public(k, key, sizeof key);
    fprintf(out, "{\"format\":\"%s\",\"old_checkpoint\":", CTL_PROOF_CONSISTENCY_FORMAT);
    text_json_fput(out, old_note, strlen(old_note), 0);
    fputs(",\"new_checkpoint\":", out);
    text_json_fput(out, new_note, strlen(new_note), 0);
    fputs(",\"path\":", out);
    put_hash_array(out, path, path_len);
    fputs(",\"key\":", out);
    text_json_fput(out, key, strlen(key), 0);
    fputs("}\n", out);
    return ferror(out) ? -1 : 0;
}

/* ---- the reader ---------------------------------------------------------- */

/* The fields a proof file may have; arrays are of strings only. */
enum { F_FORMAT, F_EVENT_ID, F_LEAF_INDEX, F_TREE_SIZE, F_ENTRY, F_LEAF_HASH, F_PATH,
       F_CHECKPOINT, F_KEY, F_OLD_CHECKPOINT, F_NEW_CHECKPOINT, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "format", "event_id", "leaf_index", "tree_size", "entry", "leaf_hash", "path",
    "checkpoint", "key", "old_checkpoint", "new_checkpoint",
};
enum { T_NONE, T_STR, T_NUM, T_ARR };
static const int field_types[F_COUNT] = { T_STR, T_STR, T_NUM, T_NUM, T_STR, T_STR, T_ARR,
                                          T_STR, T_STR, T_STR, T_STR };

typedef struct jstr {
    char *p;       /* decoded, NUL-terminated (may hold NULs: use len) */
    size_t len;
} jstr;

typedef struct proof_file {
    int present[F_COUNT];
    jstr s[F_COUNT];
    uint64_t num[F_COUNT];
    jstr *arr;     /* F_PATH */
    size_t narr;
} proof_file;

typedef struct jparser {
    const char *p, *end, *start;
    char err[256];
} jparser;

static int jfail(jparser *jp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jfail(jparser *jp, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(jp->err, sizeof jp->err, "offset %zu: ", (size_t)(jp->p - jp->start));

    va_start(ap, fmt);
    vsnprintf(jp->err + n, sizeof jp->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void jws(jparser *jp)
{
    while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
        jp->p++;
}

static int hex4(const char *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        *v <<= 4;
        if (c >= '0' && c <= '9')
            *v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            *v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            *v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string at jp->p (the opening quote); out gets a malloc'd copy. */
static int jstring(jparser *jp, jstr *out)
{
    const char *q;
    char *o;
    size_t n = 0;

    if (jp->p >= jp->end || *jp->p != '"')
        return jfail(jp, "expected a string");
    q = ++jp->p;
    /* Decoded text is never longer than its escaped form. */
    while (q < jp->end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= jp->end)
        return jfail(jp, "unterminated string");
    o = malloc((size_t)(q - jp->p) + 1);
    if (o == NULL)
        return jfail(jp, "out of memory");
    while (*jp->p != '"') {
        unsigned char c = (unsigned char)*jp->p;

        if (c < 0x20) {
            free(o);
            return jfail(jp, "raw control character in a string");
        }
        if (c != '\\') {
            o[n++] = (char)c;
            jp->p++;
            continue;
        }
        jp->p++;
        switch (*jp->p) {
        case '"': o[n++] = '"'; break;
        case '\\': o[n++] = '\\'; break;
        case '/': o[n++] = '/'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;

            if (jp->end - jp->p < 5 || hex4(jp->p + 1, &cp) != 0) {
                free(o);
                return jfail(jp, "bad \\u escape");
            }
            jp->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (jp->end - jp->p < 7 || jp->p[1] != '\\' || jp->p[2] != 'u' ||
                    hex4(jp->p + 3, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    free(o);
                    return jfail(jp, "unpaired surrogate in a \\u escape");
                }
                jp->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(o);
                return jfail(jp, "unpaired surrogate in a \\u escape");
            }
            n += put_utf8(o + n, cp);
            break;
        }
        default:
            free(o);
            return jfail(jp, "bad escape \\%c", *jp->p);
        }
        jp->p++;
    }
    jp->p++;
    o[n] = '\0';
    out->p = o;
    out->len = n;
    return 0;
}

static int jnumber(jparser *jp, uint64_t *v)
{
    uint64_t x = 0;
    const char *s = jp->p;

    while (jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9') {
        unsigned d = (unsigned)(*jp->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return jfail(jp, "number too large");
        x = x * 10 + d;
        jp->p++;
    }
    if (jp->p == s || (jp->p - s > 1 && *s == '0'))
        return jfail(jp, "expected a non-negative integer");
    if (jp->p < jp->end && (*jp->p == '.' || *jp->p == 'e' || *jp->p == 'E'))
        return jfail(jp, "expected an integer, not a fraction");
    *v = x;
    return 0;
}

static void proof_free(proof_file *pf)
{
    for (int i = 0; i < F_COUNT; i++)
        free(pf->s[i].p);
    for (size_t i = 0; i < pf->narr; i++)
        free(pf->arr[i].p);
    free(pf->arr);
    memset(pf, 0, sizeof *pf);
}

/* Skips any JSON value (for unknown keys), depth-limited. */
static int jskip(jparser *jp, int depth)
{
    jstr tmp;
    uint64_t num;

    if (depth > 32)
        return jfail(jp, "nesting too deep");
    jws(jp);
    if (jp->p >= jp->end)
        return jfail(jp, "unexpected end");
    switch (*jp->p) {
    case '"':
        if (jstring(jp, &tmp) != 0)
            return -1;
        free(tmp.p);
        return 0;
    case '{': case '[': {
        char close = *jp->p == '{' ? '}' : ']';
        int obj = close == '}';

        jp->p++;
        jws(jp);
        if (jp->p < jp->end && *jp->p == close) {
            jp->p++;
            return 0;
        }
        for (;;) {
            if (obj) {
                jws(jp);
                if (jstring(jp, &tmp) != 0)
                    return -1;
                free(tmp.p);
                jws(jp);
                if (jp->p >= jp->end || *jp->p != ':')
                    return jfail(jp, "expected ':'");
                jp->p++;
            }
            if (jskip(jp, depth + 1) != 0)
                return -1;
            jws(jp);
            if (jp->p < jp->end && *jp->p == ',') {
                jp->p++;
                continue;
            }
            if (jp->p < jp->end && *jp->p == close) {
                jp->p++;
                return 0;
            }
            return jfail(jp, "expected ',' or '%c'", close);
        }
    }
    case 't':
        if (jp->end - jp->p >= 4 && memcmp(jp->p, "true", 4) == 0) { jp->p += 4; return 0; }
        break;
    case 'f':
        if (jp->end - jp->p >= 5 && memcmp(jp->p, "false", 5) == 0) { jp->p += 5; return 0; }
        break;
    case 'n':
        if (jp->end - jp->p >= 4 && memcmp(jp->p, "null", 4) == 0) { jp->p += 4; return 0; }
        break;
    default:
        if (*jp->p == '-')
            jp->p++;
        if (jnumber(jp, &num) == 0)
            return 0;
        /* A fraction or exponent in an unknown field is fine. */
        while (jp->p < jp->end && strchr("0123456789.eE+-", *jp->p) != NULL)
            jp->p++;
        return 0;
    }
    return jfail(jp, "unexpected character '%c'", *jp->p);
}

static int proof_parse(const char *text, size_t len, proof_file *pf, char *err, size_t errlen)
{
    jparser jp = { text, text + len, text, "" };
    size_t bad;

    memset(pf, 0, sizeof *pf);
    /* The whole file must be UTF-8 (no NUL); escapes then decode to UTF-8
     * too (jstring refuses unpaired surrogates). */
    if (!text_utf8_valid(text, len, &bad)) {
        jp.p = text + bad;
        jfail(&jp, "not UTF-8 text (or a NUL byte)");
        goto bad;
    }
    jws(&jp);
    if (jp.p >= jp.end || *jp.p != '{') {
        jfail(&jp, "a proof file is one JSON object");
        goto bad;
    }
    jp.p++;
    jws(&jp);
    if (jp.p < jp.end && *jp.p == '}') {
        jp.p++;
    } else {
        for (;;) {
            jstr key;
            int f = -1;

            jws(&jp);
            if (jstring(&jp, &key) != 0)
                goto bad;
            for (int i = 0; i < F_COUNT; i++)
                if (strcmp(key.p, field_names[i]) == 0 && strlen(key.p) == key.len)
                    f = i;
            free(key.p);
            jws(&jp);
            if (jp.p >= jp.end || *jp.p != ':') {
                jfail(&jp, "expected ':'");
                goto bad;
            }
            jp.p++;
            jws(&jp);
            if (f >= 0 && pf->present[f]) {
                jfail(&jp, "\"%s\" appears twice", field_names[f]);
                goto bad;
            }
            if (f < 0) {
                if (jskip(&jp, 0) != 0)
                    goto bad;
            } else if (field_types[f] == T_STR) {
                if (jp.p < jp.end && *jp.p != '"') {
                    jfail(&jp, "\"%s\" must be a string", field_names[f]);
                    goto bad;
                }
                if (jstring(&jp, &pf->s[f]) != 0)
                    goto bad;
            } else if (field_types[f] == T_NUM) {
                if (jnumber(&jp, &pf->num[f]) != 0) {
                    jfail(&jp, "\"%s\" must be a non-negative integer", field_names[f]);
                    goto bad;
                }
            } else {
                size_t cap = 0;

                if (jp.p >= jp.end || *jp.p != '[') {
                    jfail(&jp, "\"%s\" must be an array of strings", field_names[f]);
                    goto bad;
                }
                jp.p++;
                jws(&jp);
                if (jp.p < jp.end && *jp.p == ']') {
                    jp.p++;
                } else {
                    for (;;) {
                        jws(&jp);
                        if (pf->narr == cap) {
                            jstr *na;
                            if (cap >= MERKLE_MAX_PROOF) {
                                jfail(&jp, "\"%s\" has more than %d hashes", field_names[f],
                                      MERKLE_MAX_PROOF);
                                goto bad;
                            }
                            cap = cap ? cap * 2 : 16;
                            na = realloc(pf->arr, cap * sizeof *na);
                            if (na == NULL) {
                                jfail(&jp, "out of memory");
                                goto bad;
                            }
                            pf->arr = na;
                        }
                        if (jstring(&jp, &pf->arr[pf->narr]) != 0)
                            goto bad;
                        pf->narr++;
                        jws(&jp);
                        if (jp.p < jp.end && *jp.p == ',') {
                            jp.p++;
                            continue;
                        }
                        if (jp.p < jp.end && *jp.p == ']') {
                            jp.p++;
                            break;
                        }
                        jfail(&jp, "expected ',' or ']'");
                        goto bad;
                    }
                }
            }
            if (f >= 0)
                pf->present[f] = 1;
            jws(&jp);
            if (jp.p < jp.end && *jp.p == ',') {
                jp.p++;
                continue;
            }
            if (jp.p < jp.end && *jp.p == '}') {
                jp.p++;
                break;
            }
            jfail(&jp, "expected ',' or '}'");
            goto bad;
        }
    }
    jws(&jp);
    if (jp.p != jp.end) {
        jfail(&jp, "text after the JSON object");
        goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "not a proof file: JSON %s", jp.err);
    proof_free(pf);
    return -1;
}

/* ---- the checks ---------------------------------------------------------- */

typedef struct report {
    int json;
    const char *kind;          /* "inclusion" | "consistency" */
    const char *failed;        /* the check that failed, NULL = none yet */
    char error[1024];
    char key_text[CKPT_PUBKEY_TEXT_MAX];
    char key_source[600];
    int key_trusted;           /* embedded key, no --key */
    ckpt c, old_c;             /* new (or only) and old checkpoint */
    int have_c, have_old_c;
    uint64_t leaf_index;
    const char *event_id;
    entry_view ev;
    int have_entry;
    size_t path_len;
    unsigned char *entry_buf;  /* the decoded entry ev points into */
} report;

static int fail_check(report *r, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_check(report *r, const char *check, const char *fmt, ...)
{
    va_list ap;

    r->failed = check;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    return CTL_FAILED;
}

static void fmt_time(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, n, "%" PRId64, t);
}

static void print_ckpt_line(FILE *out, const char *label, const ckpt *c)
{
    char t[40];

    fprintf(out, "%s: origin %s, tree size %" PRIu64, label, c->origin, c->size);
    if (c->has_events)
        fprintf(out, ", %" PRIu64 " events", c->events);
    if (c->has_time) {
        fmt_time(c->time, t, sizeof t);
        fprintf(out, ", signed %s", t);
    }
    fprintf(out, " by %s (%08x): signature ok\n", c->key_name, (unsigned)c->key_hash);
}

static void json_ckpt(FILE *out, const char *name, const ckpt *c)
{
    char b[64];

    ckpt_b64_encode(c->root, MERKLE_HASH_LEN, b, sizeof b);
    fprintf(out, ",\"%s\":{\"origin\":", name);
    text_json_fput(out, c->origin, strlen(c->origin), 0);
    fprintf(out, ",\"tree_size\":%" PRIu64 ",\"root\":\"%s\"", c->size, b);
    if (c->has_events)
        fprintf(out, ",\"events\":%" PRIu64, c->events);
    if (c->has_time)
        fprintf(out, ",\"time\":%" PRId64, c->time);
    fputs(",\"key_name\":", out);
    text_json_fput(out, c->key_name, strlen(c->key_name), 0);
    fprintf(out, ",\"key_hash\":\"%08x\"}", (unsigned)c->key_hash);
}

static void report_print(const report *r, const char *file)
{
    FILE *out = stdout;

    if (r->json) {
        fputs("{\"verified\":", out);
        fputs(r->failed ? "false" : "true", out);
        fprintf(out, ",\"proof\":\"%s\",\"file\":", r->kind);
        text_json_fput(out, file, strlen(file), 0);
        if (r->key_text[0]) {
            fputs(",\"key\":", out);
            text_json_fput(out, r->key_text, strlen(r->key_text), 0);
            fprintf(out, ",\"key_trusted_from_proof\":%s", r->key_trusted ? "true" : "false");
        }
        if (r->have_old_c)
            json_ckpt(out, "old_checkpoint", &r->old_c);
        if (r->have_c)
            json_ckpt(out, strcmp(r->kind, "consistency") == 0 ? "new_checkpoint" : "checkpoint",
                      &r->c);
        if (r->event_id != NULL) {
            fputs(",\"event_id\":", out);
            text_json_fput(out, r->event_id, strlen(r->event_id), 0);
            fprintf(out, ",\"leaf_index\":%" PRIu64, r->leaf_index);
        }
        if (r->have_entry) {
            fputs(",\"entry\":", out);
            entry_print(out, &r->ev, 1);
        }
        fputs(",\"failed\":", out);
        if (r->failed) {
            text_json_fput(out, r->failed, strlen(r->failed), 0);
            fputs(",\"error\":", out);
            text_json_fput(out, r->error, strlen(r->error), 0);
        } else {
            fputs("null,\"error\":null", out);
        }
        fputs("}\n", out);
        return;
    }
    fprintf(out, "proof: %s (%s)\n", file, r->kind);
    if (r->key_text[0])
        fprintf(out, "key: %s (%s)\n", r->key_text, r->key_source);
    if (r->have_old_c)
        print_ckpt_line(out, "old checkpoint", &r->old_c);
    if (r->have_c)
        print_ckpt_line(out, r->have_old_c ? "new checkpoint" : "checkpoint", &r->c);
    if (r->have_entry) {
        fputs("entry:\n", out);
        entry_print(out, &r->ev, 0);
    }
    if (r->failed) {
        fprintf(out, "FAILED (%s): %s\n", r->failed, r->error);
        return;
    }
    if (strcmp(r->kind, "inclusion") == 0)
        fprintf(out,
                "verified: event %s is leaf %" PRIu64 " of the tree of size %" PRIu64
                " (origin %s), whose root is signed by %s; the path has %zu hashes\n",
                r->event_id, r->leaf_index, r->c.size, r->c.origin, r->c.key_name, r->path_len);
    else
        fprintf(out,
                "verified: the tree of size %" PRIu64 " is a prefix of the tree of size %" PRIu64
                " (origin %s): nothing in it was changed or removed; the path has %zu hashes\n",
                r->old_c.size, r->c.size, r->c.origin, r->path_len);
}

/* The embedded key, checked against the given key files. On success
 * *accepted holds the keys a checkpoint may be signed by. */
static int check_key(report *r, const proof_file *pf, const char *const *keyfiles, size_t nkeys,
                     ckpt_key *accepted, size_t *naccepted)
{
    ckpt_key emb;
    char why[600];

    if (!pf->present[F_KEY])
        return fail_check(r, "key", "the proof has no \"key\"");
    if (ckpt_key_parse_public(pf->s[F_KEY].p, pf->s[F_KEY].len, &emb, why, sizeof why) != CKPT_OK)
        return fail_check(r, "key", "the proof's key: %s", why);
    ckpt_key_format_public(&emb, r->key_text, sizeof r->key_text);
    if (nkeys == 0) {
        r->key_trusted = 1;
        snprintf(r->key_source, sizeof r->key_source,
                 "trusted as embedded in the proof: no --key given; compare it with the log's "
                 "published key");
        accepted[0] = emb;
        *naccepted = 1;
        return CTL_OK;
    }
    *naccepted = 0;
    for (size_t i = 0; i < nkeys; i++) {
        if (ckpt_key_load_public(keyfiles[i], &accepted[*naccepted], why, sizeof why) != CKPT_OK) {
            fprintf(stderr, "%s: --key %s: %s\n", PROG, keyfiles[i], why);
            return CTL_USAGE;
        }
        (*naccepted)++;
    }
    for (size_t i = 0; i < *naccepted; i++) {
        if (accepted[i].hash == emb.hash && strcmp(accepted[i].name, emb.name) == 0 &&
            memcmp(accepted[i].pub, emb.pub, 32) == 0) {
            snprintf(r->key_source, sizeof r->key_source, "equals --key %s", keyfiles[i]);
            return CTL_OK;
        }
    }
    return fail_check(r, "key",
                      "the proof's key %s is none of the --key files given: the proof was made "
                      "for another key (or its key was replaced)",
                      r->key_text);
}

static int open_note(report *r, const jstr *note, const ckpt_key *keys, size_t nkeys, ckpt *c,
                     const char *check)
{
    char why[700];
    int rc = ckpt_open(note->p, note->len, keys, nkeys, NULL, c, why, sizeof why);

    if (rc != CKPT_OK)
        return fail_check(r, check, "%s: %s", ckpt_strerror(rc), why);
    return CTL_OK;
}

static int decode_path(report *r, const proof_file *pf, merkle_hash *path, size_t *n)
{
    if (!pf->present[F_PATH])
        return fail_check(r, "path", "the proof has no \"path\"");
    for (size_t i = 0; i < pf->narr; i++)
        if (ckpt_b64_decode(pf->arr[i].p, pf->arr[i].len, path[i], MERKLE_HASH_LEN) != 0)
            return fail_check(r, "path", "path element %zu is not base64 of a 32-byte hash", i);
    *n = pf->narr;
    r->path_len = pf->narr;
    return CTL_OK;
}

static int verify_inclusion(report *r, const proof_file *pf, const char *const *keyfiles,
                            size_t nkeys)
{
    ckpt_key keys[MAX_KEYFILES];
    size_t nk = 0, plen = 0, elen = 0, cap;
    merkle_hash path[MERKLE_MAX_PROOF], leaf, claimed;
    unsigned char *entry = NULL;
    char why[300];
    int rc;

    for (int f = F_EVENT_ID; f <= F_KEY; f++)
        if (!pf->present[f])
            return fail_check(r, "format", "the inclusion proof has no \"%s\"", field_names[f]);
    r->event_id = pf->s[F_EVENT_ID].p;
    r->leaf_index = pf->num[F_LEAF_INDEX];
    if ((rc = check_key(r, pf, keyfiles, nkeys, keys, &nk)) != CTL_OK)
        return rc;
    if ((rc = open_note(r, &pf->s[F_CHECKPOINT], keys, nk, &r->c, "checkpoint")) != CTL_OK)
        return rc;
    r->have_c = 1;
    if (pf->num[F_TREE_SIZE] != r->c.size)
        return fail_check(r, "tree_size",
                          "the proof says tree size %" PRIu64 ", its checkpoint is of size %" PRIu64,
                          pf->num[F_TREE_SIZE], r->c.size);
    cap = pf->s[F_ENTRY].len;
    entry = malloc(cap + 1);
    if (entry == NULL)
        return fail_check(r, "entry", "out of memory");
    if (sodium_base642bin(entry, cap + 1, pf->s[F_ENTRY].p, pf->s[F_ENTRY].len, NULL, &elen,
                          NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(entry);
        return fail_check(r, "entry", "\"entry\" is not base64 (standard, padded)");
    }
    if (entry_decode(entry, elen, &r->ev, why, sizeof why) != 0) {
        free(entry);
        memset(&r->ev, 0, sizeof r->ev);
        return fail_check(r, "entry", "the entry is not a canonical entry: %s", why);
    }
    r->have_entry = 1;
    r->entry_buf = entry; /* ev points into it: freed after the report */
    merkle_leaf_hash(entry, elen, leaf);
    if (r->ev.type == ENTRY_TYPE_EVENT &&
        (r->ev.f[0].p == NULL || r->ev.f[0].len != pf->s[F_EVENT_ID].len ||
         memcmp(r->ev.f[0].p, pf->s[F_EVENT_ID].p, r->ev.f[0].len) != 0))
        rc = fail_check(r, "entry", "the entry is of another event than the proof's event_id %s",
                        r->event_id);
    else if (ckpt_b64_decode(pf->s[F_LEAF_HASH].p, pf->s[F_LEAF_HASH].len, claimed,
                             MERKLE_HASH_LEN) != 0)
        rc = fail_check(r, "leaf_hash", "\"leaf_hash\" is not base64 of a 32-byte hash");
    else if (memcmp(claimed, leaf, MERKLE_HASH_LEN) != 0) {
        char a[64], b[64];
        ckpt_b64_encode(leaf, MERKLE_HASH_LEN, a, sizeof a);
        ckpt_b64_encode(claimed, MERKLE_HASH_LEN, b, sizeof b);
        rc = fail_check(r, "leaf_hash",
                        "the entry hashes to %s, the proof's leaf_hash is %s: the entry was "
                        "altered", a, b);
    } else if ((rc = decode_path(r, pf, path, &plen)) == CTL_OK &&
               merkle_verify_inclusion(r->leaf_index, r->c.size, leaf, path, plen, r->c.root, why,
                                       sizeof why) != 0)
        rc = fail_check(r, "path", "%s", why);
    return rc;
}

static int verify_consistency(report *r, const proof_file *pf, const char *const *keyfiles,
                              size_t nkeys)
{
    ckpt_key keys[MAX_KEYFILES];
    size_t nk = 0, plen = 0;
    merkle_hash path[MERKLE_MAX_PROOF];
    char why[400];
    int rc;

    for (int f = F_OLD_CHECKPOINT; f <= F_NEW_CHECKPOINT; f++)
        if (!pf->present[f])
            return fail_check(r, "format", "the consistency proof has no \"%s\"", field_names[f]);
    if ((rc = check_key(r, pf, keyfiles, nkeys, keys, &nk)) != CTL_OK)
        return rc;
    if ((rc = open_note(r, &pf->s[F_OLD_CHECKPOINT], keys, nk, &r->old_c, "old_checkpoint")) !=
        CTL_OK)
        return rc;
    r->have_old_c = 1;
    if ((rc = open_note(r, &pf->s[F_NEW_CHECKPOINT], keys, nk, &r->c, "new_checkpoint")) != CTL_OK)
        return rc;
    r->have_c = 1;
    if (strcmp(r->old_c.origin, r->c.origin) != 0)
        return fail_check(r, "origin",
                          "the checkpoints are of two logs: origin '%s' and origin '%s'",
                          r->old_c.origin, r->c.origin);
    if (r->old_c.size > r->c.size)
        return fail_check(r, "path",
                          "the old checkpoint's tree (size %" PRIu64 ") is larger than the new "
                          "one's (size %" PRIu64 "): swapped, or the log was rolled back",
                          r->old_c.size, r->c.size);
    if ((rc = decode_path(r, pf, path, &plen)) != CTL_OK)
        return rc;
    if (merkle_verify_consistency(r->old_c.size, r->c.size, r->old_c.root, r->c.root, path, plen,
                                  why, sizeof why) != 0)
        return fail_check(r, "path", "%s: the old tree is not a prefix of the new one, or the "
                                     "proof was altered", why);
    return CTL_OK;
}

static char *read_file(const char *file, size_t *len, char *err, size_t errlen)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", file, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t got;

        if (n == cap) {
            char *nb;
            if (cap >= CTL_PROOF_MAX_BYTES) {
                snprintf(err, errlen, "%s is larger than a proof file (%u MiB at most)", file,
                         CTL_PROOF_MAX_BYTES >> 20);
                goto fail;
            }
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                snprintf(err, errlen, "out of memory reading %s", file);
                goto fail;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    if (f != stdin)
        fclose(f);
    free(buf);
    return NULL;
}

int ctl_verify_proof_keys(const char *file, const char *const *keyfiles, size_t nkeys, int json)
{
    char err[600];
    size_t len;
    char *text;
    proof_file pf;
    report r;
    int rc;

    if (ckpt_crypto_init(err, sizeof err) != CKPT_OK) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return CTL_FAILED;
    }
    if (nkeys > MAX_KEYFILES) {
        fprintf(stderr, "%s: at most %d --key files\n", PROG, MAX_KEYFILES);
        return CTL_USAGE;
    }
    text = read_file(file, &len, err, sizeof err);
    if (text == NULL) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return CTL_USAGE;
    }
    memset(&r, 0, sizeof r);
    r.json = json;
    r.kind = "unknown";
    if (proof_parse(text, len, &pf, err, sizeof err) != 0) {
        free(text);
        rc = fail_check(&r, "format", "%s", err);
        report_print(&r, file);
        fprintf(stderr, "%s: %s: %s\n", PROG, file, r.error);
        return rc;
    }
    free(text);
    if (!pf.present[F_FORMAT]) {
        rc = fail_check(&r, "format", "no \"format\": not an auditq proof file");
    } else if (strcmp(pf.s[F_FORMAT].p, CTL_PROOF_INCLUSION_FORMAT) == 0) {
        r.kind = "inclusion";
        rc = verify_inclusion(&r, &pf, keyfiles, nkeys);
    } else if (strcmp(pf.s[F_FORMAT].p, CTL_PROOF_CONSISTENCY_FORMAT) == 0) {
        r.kind = "consistency";
        rc = verify_consistency(&r, &pf, keyfiles, nkeys);
    } else {
        char shown[80];
        text_escape(shown, sizeof shown, pf.s[F_FORMAT].p, pf.s[F_FORMAT].len, 40);
        rc = fail_check(&r, "format", "unknown format '%s' (this auditqctl reads %s and %s)",
                        shown, CTL_PROOF_INCLUSION_FORMAT, CTL_PROOF_CONSISTENCY_FORMAT);
    }
    if (rc != CTL_USAGE) {
        report_print(&r, file);
        if (r.failed)
            fprintf(stderr, "%s: %s: %s check failed: %s\n", PROG, file, r.failed, r.error);
    }
    free(r.entry_buf);
    proof_free(&pf);
    return rc;
}

int ctl_verify_proof(const char *file, const char *keyfile, int json)
{
    const char *k[1] = { keyfile };

    return ctl_verify_proof_keys(file, k, keyfile ? 1 : 0, json);
}
