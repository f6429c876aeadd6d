/* protect.c -- field protection: see protect.h.
 *
 * DESIGN. Rules are applied in event_encode, to the aq_job the encoder is
 * about to pack: after this point the bytes exist only in protected form,
 * so the sync push, the async ring, the spool file, Redis, the worker,
 * PostgreSQL and the dead letters all see the same protected job, and no
 * error message of the library quotes a value (they name fields and byte
 * offsets only). The raw values stay in the caller's auditq_event, in the
 * application's own memory.
 *
 * The JSON fields were validated when they were set (auditq_event_set_json,
 * codec_check_field: one RFC 8259 object, nesting <= JSON_MAX_DEPTH), so
 * the walker below trusts the syntax; it still never reads past the end.
 * A field without a rule is not touched (same bytes); a field with one is
 * re-emitted without insignificant whitespace (PostgreSQL stores jsonb,
 * which drops it anyway).
 */
#include "protect.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "text.h"

#define RULE_PATH_MAX 256
#define RULE_TEXT_MAX 300

typedef struct protect_rule {
    int field;                        /* auditq_field */
    int action;                       /* PROTECT_* */
    int nseg;                         /* JSON keys below the field */
    char path[RULE_PATH_MAX];         /* segments, NUL-separated after parsing */
    const char *seg[PROTECT_MAX_SEGS];
    size_t seglen[PROTECT_MAX_SEGS];
    char text[RULE_TEXT_MAX];         /* "metadata.email:hmac", for messages */
} protect_rule;

struct protect {
    int nrules;
    protect_rule rule[PROTECT_MAX_RULES];
    uint8_t key[PROTECT_KEY_MAX];
    size_t keylen;
    /* SHA-256 states after the key's inner and outer pads (RFC 2104):
     * each value then costs two context copies and two finals, not a
     * fetch of HMAC and SHA-256 from OpenSSL's provider store per call
     * (p50 9.4 -> 3.1 us, BENCHMARKS.md). Read-only after protect_set_key: threads
     * copy from them, never into them. */
    EVP_MD_CTX *inner, *outer;
};

/* ------------------------------------------------------------------ rules */

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_blank(**s))
        (*s)++;
    while (*e > *s && is_blank((*e)[-1]))
        (*e)--;
}

static int field_protectable(int f)
{
    return f != AUDITQ_EVENT_ID && f != AUDITQ_ACTION && f != AUDITQ_ACTOR_TYPE && f != AUDITQ_OUTCOME;
}

static int field_by_name(const char *s, size_t n)
{
    for (int f = 0; f < AUDITQ_FIELD_COUNT; f++) {
        const char *k = codec_field_key((auditq_field)f);
        if (k && strlen(k) == n && memcmp(k, s, n) == 0)
            return f;
    }
    return -1;
}

static const char *field_suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = 4;

    for (int f = 0; f < AUDITQ_FIELD_COUNT; f++) {
        const char *k = codec_field_key((auditq_field)f);
        size_t d;
        if (!k || !field_protectable(f))
            continue;
        d = text_edit_distance(name, k);
        if (d < best_d) {
            best_d = d;
            best = k;
        }
    }
    return best;
}

/* One rule s[0..e) (trimmed, non-empty), the n-th (1-based). */
static int parse_rule(protect *p, int n, const char *s, const char *e, char *err, size_t errlen)
{
    protect_rule *r = &p->rule[p->nrules];
    const char *colon = NULL, *ps = s, *pe, *as, *ae;
    char head[RULE_PATH_MAX];
    size_t hl;
    int rl = (int)(e - s);

    memset(r, 0, sizeof *r);
    snprintf(r->text, sizeof r->text, "%.*s", rl, s);
    for (const char *c = s; c < e; c++)
        if (*c == ':')
            colon = c;
    if (!colon) {
        snprintf(err, errlen, "protect_fields: rule %d '%s': no action: write PATH:ACTION with ACTION "
                 "hmac, redact or drop, e.g. source_ip:hmac", n, r->text);
        return -1;
    }
    pe = colon;
    as = colon + 1;
    ae = e;
    trim(&ps, &pe);
    trim(&as, &ae);
    if (ae - as == 4 && memcmp(as, "hmac", 4) == 0)
        r->action = PROTECT_HMAC;
    else if (ae - as == 6 && memcmp(as, "redact", 6) == 0)
        r->action = PROTECT_REDACT;
    else if (ae - as == 4 && memcmp(as, "drop", 4) == 0)
        r->action = PROTECT_DROP;
    else {
        snprintf(err, errlen, "protect_fields: rule %d '%s': unknown action '%.*s': must be hmac, redact "
                 "or drop", n, r->text, (int)(ae - as), as);
        return -1;
    }
    if (pe == ps) {
        snprintf(err, errlen, "protect_fields: rule %d '%s': no path before ':': name a field or a JSON "
                 "path, e.g. metadata.email:hmac", n, r->text);
        return -1;
    }
    if ((size_t)(pe - ps) >= sizeof r->path) {
        snprintf(err, errlen, "protect_fields: rule %d: the path is longer than %zu bytes", n,
                 sizeof r->path - 1);
        return -1;
    }
    for (const char *c = ps; c < pe; c++) {
        if (is_blank(*c)) {
            snprintf(err, errlen, "protect_fields: rule %d '%s': blank inside the path: JSON keys with "
                     "blanks cannot be named; use '*' for that key", n, r->text);
            return -1;
        }
    }
    memcpy(r->path, ps, (size_t)(pe - ps));
    r->path[pe - ps] = '\0';
    /* The field name: up to the first '.'. */
    hl = strcspn(r->path, ".");
    memcpy(head, r->path, hl);
    head[hl] = '\0';
    r->field = field_by_name(head, hl);
    if (r->field < 0) {
        const char *best = field_suggest(head);
        if (best)
            snprintf(err, errlen, "protect_fields: rule %d '%s': unknown field '%s' (did you mean '%s'?)", n,
                     r->text, head, best);
        else
            snprintf(err, errlen, "protect_fields: rule %d '%s': unknown field '%s': the path starts with "
                     "one of tenant_id, actor_id, entity_type, entity_id, source_ip, user_agent, "
                     "request_id, session_id, changes, metadata", n, r->text, head);
        return -1;
    }
    if (!field_protectable(r->field)) {
        snprintf(err, errlen, "protect_fields: rule %d '%s': %s cannot be protected: the pipeline needs "
                 "it as sent (put a sensitive value in metadata and protect that path)", n, r->text, head);
        return -1;
    }
    if (r->path[hl] == '.' && r->field != AUDITQ_CHANGES && r->field != AUDITQ_METADATA) {
        snprintf(err, errlen, "protect_fields: rule %d '%s': %s is a text field, not JSON: write "
                 "%s:%.*s", n, r->text, head, head, (int)(ae - as), as);
        return -1;
    }
    if (r->path[hl] == '.') {
        char *c = r->path + hl + 1;
        r->path[hl] = '\0';
        for (;;) {
            size_t sl = strcspn(c, ".");
            if (sl == 0) {
                snprintf(err, errlen, "protect_fields: rule %d '%s': empty key in the path (two dots in a "
                         "row, or a dot at its end)", n, r->text);
                return -1;
            }
            if (r->nseg == PROTECT_MAX_SEGS) {
                snprintf(err, errlen, "protect_fields: rule %d '%s': more than %d keys below %s", n, r->text,
                         PROTECT_MAX_SEGS, head);
                return -1;
            }
            r->seg[r->nseg] = c;
            r->seglen[r->nseg++] = sl;
            if (c[sl] == '\0')
                break;
            c[sl] = '\0';
            c += sl + 1;
        }
    }
    /* The same path twice would leave one rule dead, silently. */
    for (int i = 0; i < p->nrules; i++) {
        const protect_rule *o = &p->rule[i];
        int same = o->field == r->field && o->nseg == r->nseg;
        for (int k = 0; same && k < r->nseg; k++)
            same = o->seglen[k] == r->seglen[k] && memcmp(o->seg[k], r->seg[k], r->seglen[k]) == 0;
        if (same) {
            snprintf(err, errlen, "protect_fields: rule %d '%s': the same path as rule %d '%s': keep one",
                     n, r->text, i + 1, o->text);
            return -1;
        }
    }
    p->nrules++;
    return 0;
}

int protect_parse(const char *spec, protect **out, char *err, size_t errlen)
{
    protect *p;
    const char *s = spec, *all_e = spec + strlen(spec);
    int n = 0;

    if (out)
        *out = NULL;
    {
        const char *a = spec, *b = all_e;
        trim(&a, &b);
        if (a == b)
            return 0;
    }
    if (strlen(spec) >= PROTECT_SPEC_MAX) {
        snprintf(err, errlen, "protect_fields: longer than %d bytes", PROTECT_SPEC_MAX - 1);
        return -1;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "protect_fields: out of memory");
        return -1;
    }
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(all_e - s));
        const char *e = comma ? comma : all_e, *rs = s;
        n++;
        trim(&rs, &e);
        if (rs == e) {
            snprintf(err, errlen, "protect_fields: rule %d is empty: separate rules with one comma, e.g. "
                     "source_ip:hmac, metadata.email:redact", n);
            goto fail;
        }
        if (p->nrules == PROTECT_MAX_RULES) {
            snprintf(err, errlen, "protect_fields: more than %d rules: protect a parent path "
                     "(changes.*.token) instead of each key", PROTECT_MAX_RULES);
            goto fail;
        }
        if (parse_rule(p, n, rs, e, err, errlen) != 0)
            goto fail;
        if (!comma)
            break;
        s = comma + 1;
    }
    if (out)
        *out = p;
    else
        free(p);
    return 0;
fail:
    free(p);
    return -1;
}

int protect_needs_key(const protect *p)
{
    return protect_first_hmac_rule(p)[0] != '\0';
}

const char *protect_first_hmac_rule(const protect *p)
{
    for (int i = 0; p && i < p->nrules; i++)
        if (p->rule[i].action == PROTECT_HMAC)
            return p->rule[i].text;
    return "";
}

void protect_free(protect *p)
{
    if (!p)
        return;
    EVP_MD_CTX_free(p->inner);
    EVP_MD_CTX_free(p->outer);
    OPENSSL_cleanse(p->key, sizeof p->key);
    free(p);
}

/* ------------------------------------------------------------------ key */

int protect_key_read(const char *path, uint8_t *key, size_t *keylen, char *err, size_t errlen)
{
    struct stat st;
    size_t n = 0;
    int fd, rc = -1;

    *keylen = 0;
    if (!path || !path[0]) {
        snprintf(err, errlen, "protect_key_file is not set: point it at a file of at least %d random "
                 "bytes, e.g. (umask 077; openssl rand -hex 32 > /etc/auditq/protect.key)", PROTECT_KEY_MIN);
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "protect_key_file '%s': cannot open: %s; create it with (umask 077; openssl "
                 "rand -hex 32 > '%s') or fix its permissions for this user", path, strerror(errno), path);
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "protect_key_file '%s': not a regular file", path);
        goto out;
    }
    if (st.st_mode & 0007) {
        snprintf(err, errlen, "protect_key_file '%s': other users may access it (mode %04o): "
                 "chmod o-rwx '%s'", path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, key + n, PROTECT_KEY_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "protect_key_file '%s': cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == PROTECT_KEY_MAX) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                snprintf(err, errlen, "protect_key_file '%s': longer than %d bytes: is it the right file?",
                         path, PROTECT_KEY_MAX);
                goto out;
            }
            break;
        }
    }
    /* A trailing newline is an editor's, not the key's: the same key
     * written with or without one hashes the same. */
    while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'))
        n--;
    if (n < PROTECT_KEY_MIN) {
        snprintf(err, errlen, "protect_key_file '%s': %zu bytes of key, at least %d needed: create one "
                 "with (umask 077; openssl rand -hex 32 > '%s')", path, n, PROTECT_KEY_MIN, path);
        goto out;
    }
    *keylen = n;
    rc = 0;
out:
    if (rc != 0)
        OPENSSL_cleanse(key, PROTECT_KEY_MAX);
    close(fd);
    return rc;
}

int protect_set_key(protect *p, const char *path, char *err, size_t errlen)
{
    unsigned char k[64], pad[64];
    unsigned int kl = 0;
    int ok;

    if (protect_key_read(path, p->key, &p->keylen, err, errlen) != 0)
        return -1;
    memset(k, 0, sizeof k);
    if (p->keylen > sizeof k)
        ok = EVP_Digest(p->key, p->keylen, k, &kl, EVP_sha256(), NULL);
    else {
        memcpy(k, p->key, p->keylen);
        ok = 1;
    }
    EVP_MD_CTX_free(p->inner);
    EVP_MD_CTX_free(p->outer);
    p->inner = EVP_MD_CTX_new();
    p->outer = EVP_MD_CTX_new();
    for (size_t i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && p->inner && p->outer && EVP_DigestInit_ex(p->inner, EVP_sha256(), NULL) &&
         EVP_DigestUpdate(p->inner, pad, 64);
    for (size_t i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && EVP_DigestInit_ex(p->outer, EVP_sha256(), NULL) && EVP_DigestUpdate(p->outer, pad, 64);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    if (!ok) {
        snprintf(err, errlen, "protect_key_file '%s': OpenSSL could not set up HMAC-SHA256", path);
        return -1;
    }
    return 0;
}

/* protect_hmac with p's key, from the precomputed pad states. */
static int key_hmac(const protect *p, const void *v, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char ih[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
    unsigned int il = 0, ml = 0;
    size_t pl = sizeof PROTECT_HMAC_PREFIX - 1;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_MD_CTX_copy_ex(c, p->inner) && EVP_DigestUpdate(c, n ? v : (const void *)"", n) &&
             EVP_DigestFinal_ex(c, ih, &il) && EVP_MD_CTX_copy_ex(c, p->outer) &&
             EVP_DigestUpdate(c, ih, il) && EVP_DigestFinal_ex(c, md, &ml) && ml == 32;

    EVP_MD_CTX_free(c);
    if (!ok)
        return -1;
    memcpy(out, PROTECT_HMAC_PREFIX, pl);
    for (unsigned i = 0; i < 32; i++) {
        out[pl + 2 * i] = hex[md[i] >> 4];
        out[pl + 2 * i + 1] = hex[md[i] & 15];
    }
    out[PROTECT_HMAC_LEN] = '\0';
    return 0;
}

int protect_hmac(const uint8_t *key, size_t keylen, const void *v, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t pl = sizeof PROTECT_HMAC_PREFIX - 1;

    if (!HMAC(EVP_sha256(), key, (int)keylen, n ? v : (const void *)"", n, md, &mdlen) || mdlen != 32)
        return -1;
    memcpy(out, PROTECT_HMAC_PREFIX, pl);
    for (unsigned i = 0; i < 32; i++) {
        out[pl + 2 * i] = hex[md[i] >> 4];
        out[pl + 2 * i + 1] = hex[md[i] & 15];
    }
    out[PROTECT_HMAC_LEN] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ JSON */

typedef struct walk {
    const protect *p;
    int field;
    const char *end;
    aq_buf *out;
    aq_buf tmp;                       /* decoded strings (keys, hmac input) */
    int depth;                        /* keys on the path below the field */
    const char *key[PROTECT_MAX_SEGS];/* decoded keys, into keys[] */
    size_t keylen[PROTECT_MAX_SEGS];
    char keys[PROTECT_MAX_SEGS][RULE_PATH_MAX];
    int oom;
    int hmac_failed;
} walk;

static const char *ws(const walk *w, const char *p)
{
    while (p < w->end && is_blank(*p))
        p++;
    return p;
}

/* p at an opening quote: the byte after the closing one. */
static const char *string_end(const walk *w, const char *p)
{
    for (p++; p < w->end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return w->end;
}

/* The end of the value that starts at p. */
static const char *value_end(const walk *w, const char *p)
{
    int depth = 0;

    if (p >= w->end)
        return p;
    if (*p != '{' && *p != '[' && *p != '"') {
        while (p < w->end && !is_blank(*p) && *p != ',' && *p != '}' && *p != ']')
            p++;
        return p;
    }
    while (p < w->end) {
        if (*p == '"') {
            p = string_end(w, p);
            if (depth == 0)
                return p;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']') {
            if (--depth == 0)
                return p + 1;
        }
        p++;
    }
    return p;
}

/* The 4 hex digits of a \u escape the JSON validator already accepted (a
 * digit it did not would count 0). */
static unsigned hex4(const char *p)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        int d = text_hexval(p[i]);
        v = v << 4 | (unsigned)(d < 0 ? 0 : d);
    }
    return v;
}

/* Decodes the JSON string [q, qe) (quotes included) into w->tmp: the text
 * the value stands for, as UTF-8 ("a\u0040b" and "a@b" are one value). */
static void decode(walk *w, const char *q, const char *qe)
{
    const char *p = q + 1, *e = qe - 1;

    w->tmp.len = 0;
    while (p < e) {
        char c = *p++;
        unsigned cp;
        char u[4];
        size_t ul;

        if (c != '\\') {
            w->oom |= aq_buf_append(&w->tmp, &c, 1);
            continue;
        }
        if (p >= e)
            break;
        c = *p++;
        switch (c) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': break;
        default: break; /* '"', '\\', '/' */
        }
        if (c != 'u') {
            w->oom |= aq_buf_append(&w->tmp, &c, 1);
            continue;
        }
        if (e - p < 4)
            break;
        cp = hex4(p);
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && e - p >= 6 && p[0] == '\\' && p[1] == 'u') {
            unsigned lo = hex4(p + 2);
            if (lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
        }
        if (cp < 0x80) {
            u[0] = (char)cp;
            ul = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xC0 | cp >> 6);
            u[1] = (char)(0x80 | (cp & 0x3F));
            ul = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | cp >> 12);
            u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[2] = (char)(0x80 | (cp & 0x3F));
            ul = 3;
        } else {
            u[0] = (char)(0xF0 | cp >> 18);
            u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            u[3] = (char)(0x80 | (cp & 0x3F));
            ul = 4;
        }
        w->oom |= aq_buf_append(&w->tmp, u, ul);
    }
}

static void put(walk *w, const void *s, size_t n)
{
    w->oom |= aq_buf_append(w->out, s, n);
}

static void put_hmac(walk *w, const void *v, size_t n)
{
    char h[PROTECT_HMAC_LEN + 1];

    if (key_hmac(w->p, v, n, h) != 0) {
        w->hmac_failed = 1;
        return;
    }
    put(w, "\"", 1);
    put(w, h, PROTECT_HMAC_LEN);
    put(w, "\"", 1);
}

/* The first rule for the current path, or NULL. */
static const protect_rule *match(const walk *w)
{
    if (w->depth > PROTECT_MAX_SEGS)
        return NULL;
    for (int i = 0; i < w->p->nrules; i++) {
        const protect_rule *r = &w->p->rule[i];
        int k;
        if (r->field != w->field || r->nseg != w->depth)
            continue;
        for (k = 0; k < r->nseg; k++) {
            if (r->seglen[k] == 1 && r->seg[k][0] == '*')
                continue;
            if (r->seglen[k] != w->keylen[k] || memcmp(r->seg[k], w->key[k], r->seglen[k]) != 0)
                break;
        }
        if (k == r->nseg)
            return r;
    }
    return NULL;
}

/* hmac or redact every value of the value at p, keeping its shape. */
static const char *leafwise(walk *w, int action, const char *p)
{
    const char *e;

    p = ws(w, p);
    if (p >= w->end)
        return p;
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int first = 1;
        put(w, p, 1);
        p = ws(w, p + 1);
        while (p < w->end && *p != close) {
            if (!first)
                put(w, ",", 1);
            first = 0;
            if (close == '}') {
                e = string_end(w, p);
                put(w, p, (size_t)(e - p));
                put(w, ":", 1);
                p = ws(w, e);
                p++; /* ':' */
            }
            p = ws(w, leafwise(w, action, p));
            if (p < w->end && *p == ',')
                p = ws(w, p + 1);
        }
        put(w, &close, 1);
        return p < w->end ? p + 1 : p;
    }
    e = value_end(w, p);
    if (*p == 'n') {
        put(w, "null", 4);
    } else if (action == PROTECT_REDACT) {
        put(w, "\"" PROTECT_REDACTED "\"", sizeof PROTECT_REDACTED + 1);
    } else if (*p == '"') {
        decode(w, p, e);
        put_hmac(w, w->tmp.data, w->tmp.len);
    } else {
        put_hmac(w, p, (size_t)(e - p)); /* a number, true or false: its JSON text */
    }
    return e;
}

static const char *walk_value(walk *w, const char *p);

/* An object at p whose path has no rule: its members are matched one by one. */
static const char *walk_object(walk *w, const char *p)
{
    int first = 1;

    put(w, "{", 1);
    p = ws(w, p + 1);
    while (p < w->end && *p != '}') {
        const char *ke = string_end(w, p), *v;
        const protect_rule *r;
        int d = w->depth;

        if (d < PROTECT_MAX_SEGS) {
            decode(w, p, ke);
            if (w->tmp.len < RULE_PATH_MAX) {
                memcpy(w->keys[d], w->tmp.len ? w->tmp.data : "", w->tmp.len);
                w->keylen[d] = w->tmp.len;
            } else {
                w->keylen[d] = RULE_PATH_MAX; /* longer than any rule's key: only '*' matches */
            }
            w->key[d] = w->keys[d];
        }
        w->depth++;
        v = ws(w, ws(w, ke) + 1); /* past ':' */
        r = match(w);
        if (r && r->action == PROTECT_DROP) {
            p = value_end(w, v);
        } else {
            if (!first)
                put(w, ",", 1);
            first = 0;
            put(w, p, (size_t)(ke - p));
            put(w, ":", 1);
            p = r ? leafwise(w, r->action, v) : walk_value(w, v);
        }
        w->depth--;
        p = ws(w, p);
        if (p < w->end && *p == ',')
            p = ws(w, p + 1);
    }
    put(w, "}", 1);
    return p < w->end ? p + 1 : p;
}

/* A value whose path has no rule (an array's elements share its path). */
static const char *walk_value(walk *w, const char *p)
{
    const char *e;

    p = ws(w, p);
    if (p < w->end && *p == '{')
        return walk_object(w, p);
    if (p < w->end && *p == '[') {
        int first = 1;
        put(w, "[", 1);
        p = ws(w, p + 1);
        while (p < w->end && *p != ']') {
            if (!first)
                put(w, ",", 1);
            first = 0;
            p = ws(w, walk_value(w, p));
            if (p < w->end && *p == ',')
                p = ws(w, p + 1);
        }
        put(w, "]", 1);
        return p < w->end ? p + 1 : p;
    }
    e = value_end(w, p);
    put(w, p, (size_t)(e - p));
    return e;
}

int protect_job(const protect *p, aq_job *j, aq_buf *arena, char *err, size_t errlen)
{
    size_t off[AUDITQ_FIELD_COUNT], len[AUDITQ_FIELD_COUNT];
    int done[AUDITQ_FIELD_COUNT] = {0};
    walk *w = NULL;
    int rc = -1;

    if (!p)
        return 0;
    arena->len = 0;
    for (int f = 0; f < AUDITQ_FIELD_COUNT; f++) {
        const protect_rule *top = NULL;
        int any = 0;

        if (!j->f[f].p)
            continue;
        for (int i = 0; i < p->nrules; i++) {
            if (p->rule[i].field != f)
                continue;
            any = 1;
            if (p->rule[i].nseg == 0 && !top)
                top = &p->rule[i];
        }
        if (!any)
            continue;
        if (top && top->action == PROTECT_DROP) {
            j->f[f].p = NULL;
            j->f[f].len = 0;
            continue;
        }
        off[f] = arena->len;
        done[f] = 1;
        if (f != AUDITQ_CHANGES && f != AUDITQ_METADATA) {
            char h[PROTECT_HMAC_LEN + 1];
            if (top->action == PROTECT_REDACT) {
                if (aq_buf_append(arena, PROTECT_REDACTED, sizeof PROTECT_REDACTED - 1) != 0)
                    goto oom;
            } else if (key_hmac(p, j->f[f].p, j->f[f].len, h) != 0) {
                snprintf(err, errlen, "%s: HMAC-SHA256 failed (OpenSSL)", codec_field_key((auditq_field)f));
                goto out;
            } else if (aq_buf_append(arena, h, PROTECT_HMAC_LEN) != 0) {
                goto oom;
            }
            len[f] = arena->len - off[f];
            continue;
        }
        if (!w && !(w = calloc(1, sizeof *w)))
            goto oom;
        w->p = p;
        w->field = f;
        w->end = j->f[f].p + j->f[f].len;
        w->out = arena;
        w->depth = 0;
        if (top)
            leafwise(w, top->action, j->f[f].p);
        else
            walk_value(w, j->f[f].p);
        if (w->oom)
            goto oom;
        if (w->hmac_failed) {
            snprintf(err, errlen, "%s: HMAC-SHA256 failed (OpenSSL)", codec_field_key((auditq_field)f));
            goto out;
        }
        len[f] = arena->len - off[f];
    }
    /* Pointers last: the arena may have moved while it grew. */
    for (int f = 0; f < AUDITQ_FIELD_COUNT; f++) {
        if (done[f]) {
            j->f[f].p = arena->data + off[f];
            j->f[f].len = (uint32_t)len[f];
        }
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory protecting the event's fields");
out:
    if (w) {
        if (w->tmp.data)
            OPENSSL_cleanse(w->tmp.data, w->tmp.cap);
        free(w->tmp.data);
        free(w);
    }
    return rc;
}
