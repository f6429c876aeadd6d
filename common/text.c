/* text.c -- byte-level checks on text fields: UTF-8 and JSON validity.
 *
 * Both checks run on every field of every event on the producer's hot path,
 * so they are written to be cheap on the common case (mostly ASCII text):
 * an 8-bytes-at-a-time scan skips runs of plain ASCII, and only bytes that
 * need a decision go through the byte-wise state machine.
 *
 * Offsets reported for bad UTF-8 are those of the first byte of the
 * ill-formed sequence (the lead byte for an overlong, surrogate, truncated
 * or badly continued sequence; the byte itself for a stray continuation
 * byte, a F5..FF byte or a NUL), the same convention as Python's decoder.
 *
 * The JSON validator is a recursive descent parser that never allocates;
 * recursion is bounded by JSON_MAX_DEPTH, so its stack use is bounded too.
 */
#include "text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* SWAR constants: one bit or one unit per byte of a 64-bit word. */
#define SWAR_ONES 0x0101010101010101ULL
#define SWAR_HIGH 0x8080808080808080ULL

/* Non-zero iff some byte of v is 0x00 (exact as a boolean). */
static inline uint64_t swar_has_zero(uint64_t v)
{
    return (v - SWAR_ONES) & ~v & SWAR_HIGH;
}

/* Non-zero iff some byte of v, all of whose bytes are < 0x80, is < n
 * (n <= 0x80). Exact as a boolean under that precondition. */
static inline uint64_t swar_has_less(uint64_t v, unsigned n)
{
    return (v - SWAR_ONES * n) & ~v & SWAR_HIGH;
}

/* Length (1..4) of the well-formed UTF-8 sequence starting at p, which has
 * avail >= 1 bytes; 0 if it is ill-formed, truncated, or a NUL byte.
 * The ranges are RFC 3629's table: the second-byte limits after E0, ED, F0
 * and F4 are what exclude overlongs, surrogates and values above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return c != 0;
    if (c < 0xC2) /* 80..BF stray continuation, C0/C1 always overlong */
        return 0;
    if (c < 0xE0)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3)
            return 0;
        if (c == 0xE0)
            lo = 0xA0; /* E0 80..9F would be overlong */
        else if (c == 0xED)
            hi = 0x9F; /* ED A0..BF would encode a surrogate */
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4)
            return 0;
        if (c == 0xF0)
            lo = 0x90; /* F0 80..8F would be overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* F4 90.. would be above U+10FFFF */
        if (p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0; /* F5..FF never appear in UTF-8 */
}

int text_utf8_valid(const char *s, size_t len, size_t *bad_off)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        if (len - i >= 8) {
            uint64_t v;
            memcpy(&v, p + i, 8); /* memcpy: no alignment/aliasing UB */
            if (((v & SWAR_HIGH) | swar_has_zero(v)) == 0) {
                i += 8; /* eight ASCII bytes, none of them NUL */
                continue;
            }
        }
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0) {
            if (bad_off)
                *bad_off = i;
            return 0;
        }
        i += n;
    }
    return 1;
}

size_t text_escape(char *out, size_t cap, const char *s, size_t len, size_t max_in)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    int cut = 0;

    if (cap == 0)
        return 0;
    /* Room kept for "..." and the NUL, so a cut is always marked. */
    while (i < len) {
        char tmp[5];
        size_t n = utf8_seq_len(p + i, len - i), w;

        /* Controls are escaped, C1 (U+0080..U+009F) included: some
         * terminals act on them. */
        if ((n == 1 && (p[i] < 0x20 || p[i] == 0x7f)) || (n == 2 && p[i] == 0xC2 && p[i + 1] < 0xA0))
            n = 0;
        if (i + (n ? n : 1) > max_in) {
            cut = 1;
            break;
        }
        if (n == 0) {
            snprintf(tmp, sizeof tmp, "\\x%02x", p[i]);
            w = 4;
        } else if (n == 1 && p[i] == '\\') {
            memcpy(tmp, "\\\\", 2);
            w = 2;
        } else {
            memcpy(tmp, p + i, n);
            w = n;
        }
        if (o + w + 4 > cap) {
            cut = 1;
            break;
        }
        memcpy(out + o, tmp, w);
        o += w;
        i += n ? n : 1;
    }
    if (cut && o + 4 <= cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return o;
}

size_t text_utf8_next(const char *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n;

    if (len == 0)
        return 0;
    if (p[0] == 0) { /* well-formed as a character; only fields refuse it */
        *cp = 0;
        return 1;
    }
    n = utf8_seq_len(p, len);
    switch (n) {
    case 1: *cp = p[0]; break;
    case 2: *cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3Fu); break;
    case 3: *cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3Fu); break;
    case 4:
        *cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 |
              (p[3] & 0x3Fu);
        break;
    default: break; /* 0: ill-formed */
    }
    return n;
}

/* -------------------------------------------------------- JSON writing */

int text_json_string(text_sink put, void *ctx, const char *s, size_t len, unsigned flags)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0, i = 0;

    if (put(ctx, "\"", 1) != 0)
        return -1;
    while (i < len) {
        unsigned char c = p[i];
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        size_t elen = 2, n = 1;
        uint32_t cp;

        /* Copy runs of bytes that need nothing in one call. */
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            n = text_utf8_next(s + i, len - i, &cp);
            if (n > 0) {
                i += n;
                continue;
            }
            n = 1;
            memcpy(esc + 1, "ufffd", 5); /* one U+FFFD per byte of an ill-formed sequence */
            elen = 6;
        } else if (c == 0x7f) {
            if (!(flags & TEXT_JSON_ESCAPE_DEL)) {
                i++;
                continue;
            }
            memcpy(esc + 1, "u007f", 5);
            elen = 6;
        } else {
            switch (c) {
            case '"': esc[1] = '"'; break;
            case '\\': esc[1] = '\\'; break;
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                elen = 6;
            }
        }
        if ((i > run && put(ctx, s + run, i - run) != 0) || put(ctx, esc, elen) != 0)
            return -1;
        i += n;
        run = i;
    }
    if (i > run && put(ctx, s + run, i - run) != 0)
        return -1;
    return put(ctx, "\"", 1);
}

static int file_sink(void *ctx, const char *p, size_t n)
{
    return fwrite(p, 1, n, (FILE *)ctx) == n ? 0 : -1;
}

int text_json_fput(FILE *f, const char *s, size_t len, unsigned flags)
{
    return text_json_string(file_sink, f, s, len, flags);
}

/* ------------------------------------------------------------------ JSON */

struct json_parser {
    const unsigned char *s;
    size_t len;
    size_t pos;
    unsigned depth; /* containers currently open */
    char *err;      /* caller's buffer, may be NULL */
    size_t errlen;
};

static int json_fail(struct json_parser *jp, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error as "offset N: message" and returns -1, so every
 * error path can be written as `return json_fail(...)`. */
static int json_fail(struct json_parser *jp, size_t off, const char *fmt, ...)
{
    char msg[96];
    va_list ap;

    if (jp->err == NULL || jp->errlen == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(jp->err, jp->errlen, "offset %zu: %s", off, msg);
    return -1;
}

static int json_eof(struct json_parser *jp)
{
    return json_fail(jp, jp->len, "unexpected end of input");
}

/* Error for a byte that cannot start what the grammar wants here. */
static int json_fail_got(struct json_parser *jp, const char *want)
{
    unsigned c = jp->s[jp->pos];

    if (c > 0x20 && c < 0x7F)
        return json_fail(jp, jp->pos, "expected %s, got '%c'", want, (int)c);
    return json_fail(jp, jp->pos, "expected %s, got byte 0x%02x", want, c);
}

static void json_skip_ws(struct json_parser *jp)
{
    while (jp->pos < jp->len) {
        unsigned char c = jp->s[jp->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        jp->pos++;
    }
}

static int json_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int json_is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static int json_value(struct json_parser *jp);

/* jp->pos is at the opening quote. */
static int json_string(struct json_parser *jp)
{
    const unsigned char *s = jp->s;
    size_t len = jp->len;
    size_t i = jp->pos + 1;

    while (i < len) {
        /* Fast path: skip 8 bytes that are plain printable ASCII other than
         * '"' and '\\' -- the overwhelmingly common string content. */
        if (len - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            if ((v & SWAR_HIGH) == 0 && !swar_has_less(v, 0x20) &&
                !swar_has_zero(v ^ (SWAR_ONES * '"')) &&
                !swar_has_zero(v ^ (SWAR_ONES * '\\'))) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c == '"') {
            jp->pos = i + 1;
            return 0;
        }
        if (c == '\\') {
            if (i + 1 >= len)
                return json_eof(jp);
            unsigned char e = s[i + 1];
            switch (e) {
            case '"': case '\\': case '/': case 'b':
            case 'f': case 'n': case 'r': case 't':
                i += 2;
                continue;
            case 'u':
                /* Any 4 hex digits: RFC 8259's grammar accepts lone
                 * surrogates and \u0000; PostgreSQL decides later. */
                for (size_t k = 0; k < 4; k++) {
                    if (i + 2 + k >= len)
                        return json_eof(jp);
                    if (!json_is_hex(s[i + 2 + k]))
                        return json_fail(jp, i,
                                         "invalid \\u escape (need 4 hex digits)");
                }
                i += 6;
                continue;
            default:
                if (e > 0x20 && e < 0x7F)
                    return json_fail(jp, i, "invalid escape \\%c", (int)e);
                return json_fail(jp, i, "invalid escape byte 0x%02x", e);
            }
        }
        if (c < 0x20)
            return json_fail(jp, i,
                             "unescaped control character 0x%02x in string", c);
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0)
            return json_fail(jp, i, "invalid UTF-8 in string");
        i += n;
    }
    return json_eof(jp);
}

/* Consumes one or more digits at jp->pos; `what` names the context for the
 * error when there is none. */
static int json_digits(struct json_parser *jp, const char *what)
{
    if (jp->pos >= jp->len)
        return json_eof(jp);
    if (!json_is_digit(jp->s[jp->pos]))
        return json_fail(jp, jp->pos, "expected digit %s", what);
    while (jp->pos < jp->len && json_is_digit(jp->s[jp->pos]))
        jp->pos++;
    return 0;
}

/* jp->pos is at '-' or a digit. */
static int json_number(struct json_parser *jp)
{
    if (jp->s[jp->pos] == '-') {
        jp->pos++;
        if (jp->pos >= jp->len)
            return json_eof(jp);
    }
    if (jp->s[jp->pos] == '0') {
        jp->pos++;
        if (jp->pos < jp->len && json_is_digit(jp->s[jp->pos]))
            return json_fail(jp, jp->pos - 1, "leading zero in number");
    } else if (json_digits(jp, "after '-'") != 0) {
        return -1;
    }
    if (jp->pos < jp->len && jp->s[jp->pos] == '.') {
        jp->pos++;
        if (json_digits(jp, "after '.'") != 0)
            return -1;
    }
    if (jp->pos < jp->len && (jp->s[jp->pos] == 'e' || jp->s[jp->pos] == 'E')) {
        jp->pos++;
        if (jp->pos < jp->len &&
            (jp->s[jp->pos] == '+' || jp->s[jp->pos] == '-'))
            jp->pos++;
        if (json_digits(jp, "in exponent") != 0)
            return -1;
    }
    return 0;
}

static int json_literal(struct json_parser *jp, const char *lit)
{
    size_t n = strlen(lit);

    for (size_t k = 0; k < n; k++) {
        if (jp->pos + k >= jp->len)
            return json_eof(jp);
        if (jp->s[jp->pos + k] != (unsigned char)lit[k])
            return json_fail(jp, jp->pos, "invalid literal (expected %s)", lit);
    }
    jp->pos += n;
    return 0;
}

/* Entering a container: the depth check is made here, before recursing,
 * so hostile input like 100000 '[' cannot exhaust the stack. */
static int json_enter(struct json_parser *jp)
{
    if (jp->depth >= JSON_MAX_DEPTH)
        return json_fail(jp, jp->pos, "nesting deeper than %d", JSON_MAX_DEPTH);
    jp->depth++;
    jp->pos++;
    json_skip_ws(jp);
    if (jp->pos >= jp->len)
        return json_eof(jp);
    return 0;
}

/* jp->pos is at '{'. */
static int json_object(struct json_parser *jp)
{
    if (json_enter(jp) != 0)
        return -1;
    if (jp->s[jp->pos] == '}')
        goto close;
    for (;;) {
        if (jp->s[jp->pos] != '"')
            return json_fail_got(jp, "string key");
        if (json_string(jp) != 0)
            return -1;
        json_skip_ws(jp);
        if (jp->pos >= jp->len)
            return json_eof(jp);
        if (jp->s[jp->pos] != ':')
            return json_fail_got(jp, "':' after object key");
        jp->pos++;
        json_skip_ws(jp);
        if (json_value(jp) != 0)
            return -1;
        json_skip_ws(jp);
        if (jp->pos >= jp->len)
            return json_eof(jp);
        if (jp->s[jp->pos] == '}')
            goto close;
        if (jp->s[jp->pos] != ',')
            return json_fail_got(jp, "',' or '}'");
        jp->pos++;
        json_skip_ws(jp);
        if (jp->pos >= jp->len)
            return json_eof(jp);
        if (jp->s[jp->pos] == '}')
            return json_fail(jp, jp->pos, "trailing comma before '}'");
    }
close:
    jp->pos++;
    jp->depth--;
    return 0;
}

/* jp->pos is at '['. */
static int json_array(struct json_parser *jp)
{
    if (json_enter(jp) != 0)
        return -1;
    if (jp->s[jp->pos] == ']')
        goto close;
    for (;;) {
        if (json_value(jp) != 0)
            return -1;
        json_skip_ws(jp);
        if (jp->pos >= jp->len)
            return json_eof(jp);
        if (jp->s[jp->pos] == ']')
            goto close;
        if (jp->s[jp->pos] != ',')
            return json_fail_got(jp, "',' or ']'");
        jp->pos++;
        json_skip_ws(jp);
        if (jp->pos >= jp->len)
            return json_eof(jp);
        if (jp->s[jp->pos] == ']')
            return json_fail(jp, jp->pos, "trailing comma before ']'");
    }
close:
    jp->pos++;
    jp->depth--;
    return 0;
}

/* Leading whitespace already skipped. */
static int json_value(struct json_parser *jp)
{
    if (jp->pos >= jp->len)
        return json_eof(jp);
    switch (jp->s[jp->pos]) {
    case '{':
        return json_object(jp);
    case '[':
        return json_array(jp);
    case '"':
        return json_string(jp);
    case 't':
        return json_literal(jp, "true");
    case 'f':
        return json_literal(jp, "false");
    case 'n':
        return json_literal(jp, "null");
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return json_number(jp);
    default:
        return json_fail_got(jp, "a JSON value");
    }
}

int json_validate_object(const char *s, size_t len, char *err, size_t errlen)
{
    struct json_parser jp = {
        .s = (const unsigned char *)s, .len = len, .pos = 0, .depth = 0,
        .err = err, .errlen = errlen,
    };

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (s == NULL && len > 0)
        return json_fail(&jp, 0, "NULL input");
    json_skip_ws(&jp);
    if (jp.pos >= len)
        return json_eof(&jp);
    if (jp.s[jp.pos] != '{')
        return json_fail(&jp, jp.pos,
                         "expected '{' (top level must be a JSON object)");
    if (json_object(&jp) != 0)
        return -1;
    json_skip_ws(&jp);
    if (jp.pos != len)
        return json_fail(&jp, jp.pos, "trailing characters after JSON value");
    return 0;
}

size_t text_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t prev[65], cur[65];

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

void text_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int text_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
