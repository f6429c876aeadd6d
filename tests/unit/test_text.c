/* test_text.c -- unit tests for common/text.c (UTF-8 and JSON validation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "text.h"

/* A literal with its exact length, so cases may hold NUL bytes. */
#define LIT(s) s, sizeof(s) - 1

/* ------------------------------------------------------------------ UTF-8 */

struct utf8_case {
    const char *s;
    size_t len;
    int ok;
    size_t off; /* expected offset of first bad byte when !ok */
};

static const struct utf8_case utf8_cases[] = {
    { LIT(""), 1, 0 },
    { LIT("hello"), 1, 0 },
    { LIT("a fairly long plain ASCII line, > 8 bytes"), 1, 0 },
    { LIT("\x01\x1f\x7f"), 1, 0 },                   /* controls are fine */
    { LIT("caf\xc3\xa9"), 1, 0 },                    /* U+00E9 */
    { LIT("\xc2\x80"), 1, 0 },                       /* U+0080, smallest 2-byte */
    { LIT("\xdf\xbf"), 1, 0 },                       /* U+07FF */
    { LIT("\xe0\xa0\x80"), 1, 0 },                   /* U+0800, smallest 3-byte */
    { LIT("\xe2\x82\xac"), 1, 0 },                   /* euro sign */
    { LIT("\xed\x9f\xbf"), 1, 0 },                   /* U+D7FF, just below surrogates */
    { LIT("\xee\x80\x80"), 1, 0 },                   /* U+E000, just above */
    { LIT("\xef\xbf\xbf"), 1, 0 },                   /* U+FFFF */
    { LIT("\xf0\x90\x80\x80"), 1, 0 },               /* U+10000, smallest 4-byte */
    { LIT("\xf0\x9f\x98\x80"), 1, 0 },               /* emoji */
    { LIT("\xf4\x8f\xbf\xbf"), 1, 0 },               /* U+10FFFF, the maximum */
    { LIT("1234567\xc3\xa9xyzxyzxyz"), 1, 0 },       /* sequence across 8-byte chunk */
    { LIT("\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"), 1, 0 }, /* Cyrillic */

    { LIT("\xc0\x80"), 0, 0 },                       /* overlong NUL */
    { LIT("\xc1\xbf"), 0, 0 },                       /* overlong U+007F */
    { LIT("ab\xe0\x80\x80"), 0, 2 },                 /* overlong 3-byte */
    { LIT("\xe0\x9f\xbf"), 0, 0 },                   /* overlong U+07FF */
    { LIT("\xf0\x8f\xbf\xbf"), 0, 0 },               /* overlong U+FFFF */
    { LIT("\xed\xa0\x80"), 0, 0 },                   /* U+D800 surrogate */
    { LIT("x\xed\xbf\xbf"), 0, 1 },                  /* U+DFFF surrogate */
    { LIT("\xf4\x90\x80\x80"), 0, 0 },               /* U+110000 */
    { LIT("\xf5\x80\x80\x80"), 0, 0 },               /* F5 lead byte */
    { LIT("ok\xfe"), 0, 2 },
    { LIT("ok\xff"), 0, 2 },
    { LIT("abc\x80"), 0, 3 },                        /* stray continuation */
    { LIT("\xbf"), 0, 0 },
    { LIT("\xc3"), 0, 0 },                           /* truncated 2-byte */
    { LIT("xyz\xe2\x82"), 0, 3 },                    /* truncated 3-byte */
    { LIT("\xf0\x9f\x98"), 0, 0 },                   /* truncated 4-byte */
    { LIT("\xe2\x82\xac\xe2\x82"), 0, 3 },           /* valid, then truncated */
    { LIT("\xc3\x41"), 0, 0 },                       /* bad continuation */
    { LIT("\xe2\x28\xa1"), 0, 0 },
    { LIT("\xf0\x9f\x28\x80"), 0, 0 },
    { LIT("a\0b"), 0, 1 },                           /* NUL */
    { LIT("\0"), 0, 0 },
    { LIT("0123456789\0"), 0, 10 },                  /* NUL after fast path */
    { LIT("01234567\0abcdefg"), 0, 8 },              /* NUL inside a chunk */
    { LIT("\xc3\x00"), 0, 0 },                       /* NUL as "continuation" */
    { LIT("12345678abcdefgh\xc3\x28"), 0, 16 },
};

static void test_utf8_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        const struct utf8_case *c = &utf8_cases[i];
        size_t off = (size_t)-1;
        int ok = text_utf8_valid(c->s, c->len, &off);
        if (ok != c->ok || (!ok && off != c->off))
            print_error("utf8 case %zu: got ok=%d off=%zu, want ok=%d off=%zu\n",
                        i, ok, off, c->ok, c->off);
        assert_int_equal(ok, c->ok);
        if (!c->ok)
            assert_int_equal(off, c->off);
        else
            assert_int_equal(off, (size_t)-1); /* untouched on success */
    }
}

static void test_utf8_null_bad_off(void **state)
{
    (void)state;
    assert_int_equal(text_utf8_valid(LIT("\xff"), NULL), 0);
    assert_int_equal(text_utf8_valid(LIT("fine"), NULL), 1);
    assert_int_equal(text_utf8_valid(NULL, 0, NULL), 1);
}

/* Straightforward decode-then-check reference, written independently of the
 * table-of-ranges implementation, with the same offset convention. */
static int ref_utf8_valid(const unsigned char *s, size_t len, size_t *bad)
{
    size_t i = 0;
    while (i < len) {
        unsigned b = s[i];
        size_t n;
        uint32_t cp, min;
        if (b == 0)
            goto bad;
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) { n = 2; cp = b & 0x1F; min = 0x80; }
        else if ((b & 0xF0) == 0xE0) { n = 3; cp = b & 0x0F; min = 0x800; }
        else if ((b & 0xF8) == 0xF0) { n = 4; cp = b & 0x07; min = 0x10000; }
        else goto bad;
        if (len - i < n)
            goto bad;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                goto bad;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            goto bad;
        i += n;
        continue;
bad:
        *bad = i;
        return 0;
    }
    return 1;
}

/* Random strings drawn from "interesting" bytes, compared with the
 * reference; a fixed seed keeps failures reproducible. */
static void test_utf8_vs_reference(void **state)
{
    static const unsigned char pool[] = {
        'a', 'b', ' ', 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
        0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef,
        0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff,
    };
    uint64_t x = 88172645463325252ULL;
    unsigned char buf[24];
    unsigned nvalid = 0;
    (void)state;

    for (int iter = 0; iter < 200000; iter++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t len = (size_t)(x % (sizeof buf + 1));
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            /* mostly ASCII so that fast path and valid strings get hit */
            buf[i] = (x >> 32) % 4 == 0 ? pool[(x >> 8) % sizeof pool]
                                        : (unsigned char)('a' + (x >> 40) % 26);
        }
        size_t off_a = 12345, off_b = 12345;
        int a = text_utf8_valid((const char *)buf, len, &off_a);
        int b = ref_utf8_valid(buf, len, &off_b);
        assert_int_equal(a, b);
        assert_int_equal(off_a, off_b);
        nvalid += (unsigned)a;
    }
    /* Both outcomes must actually have been exercised. */
    assert_true(nvalid > 1000);
    assert_true(nvalid < 199000);
}

/* ------------------------------------------------------------------- JSON */

struct json_case {
    const char *s;
    size_t len;
    int rc;
    const char *err; /* exact message; "" for valid input */
};

static const struct json_case json_cases[] = {
    /* valid */
    { LIT("{}"), 0, "" },
    { LIT(" \t\r\n{ } \n"), 0, "" },
    { LIT("{\"a\":1}"), 0, "" },
    { LIT("{\"\":\"\"}"), 0, "" },
    { LIT("{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":false}"), 0, "" },
    { LIT("{ \"a\" : [ ] , \"b\" : { } }"), 0, "" },
    { LIT("{\"n\":-0.5e+10,\"m\":0,\"k\":1E-3,\"z\":-0,\"e\":2e5}"), 0, "" },
    { LIT("{\"big\":123456789012345678901234567890}"), 0, "" },
    { LIT("{\"s\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"}"), 0, "" },
    { LIT("{\"lone\":\"\\ud800\"}"), 0, "" },       /* syntactically allowed */
    { LIT("{\"nul\":\"\\u0000\"}"), 0, "" },        /* ditto; jsonb rejects later */
    { LIT("{\"u\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}"), 0, "" },
    { LIT("{\"a\":\"0123456789abcdefghijklmnopqrstuvwxyz\"}"), 0, "" },
    { LIT("{\"a\":{\"a\":{\"a\":[[],{}]}}}"), 0, "" },

    /* top level, emptiness, trailing data */
    { LIT(""), -1, "offset 0: unexpected end of input" },
    { LIT("   "), -1, "offset 3: unexpected end of input" },
    { LIT("[]"), -1, "offset 0: expected '{' (top level must be a JSON object)" },
    { LIT("1"), -1, "offset 0: expected '{' (top level must be a JSON object)" },
    { LIT("\"s\""), -1, "offset 0: expected '{' (top level must be a JSON object)" },
    { LIT(" null"), -1, "offset 1: expected '{' (top level must be a JSON object)" },
    { LIT("\xef\xbb\xbf{}"), -1, "offset 0: expected '{' (top level must be a JSON object)" },
    { LIT("{\"a\":1} x"), -1, "offset 8: trailing characters after JSON value" },
    { LIT("{}{}"), -1, "offset 2: trailing characters after JSON value" },
    { LIT("{\"a\":1}\0"), -1, "offset 7: trailing characters after JSON value" },
    { LIT("{\"a\":1"), -1, "offset 6: unexpected end of input" },
    { LIT("{\"a\":\"abc"), -1, "offset 9: unexpected end of input" },
    { LIT("{\"a\":[1,2"), -1, "offset 9: unexpected end of input" },
    { LIT("{\"a\":tr"), -1, "offset 7: unexpected end of input" },

    /* structure */
    { LIT("{\"a\":1,}"), -1, "offset 7: trailing comma before '}'" },
    { LIT("{\"a\":[1,]}"), -1, "offset 8: trailing comma before ']'" },
    { LIT("{\"a\" 1}"), -1, "offset 5: expected ':' after object key, got '1'" },
    { LIT("{\"a\":1 \"b\":2}"), -1, "offset 7: expected ',' or '}', got '\"'" },
    { LIT("{\"a\":[1 2]}"), -1, "offset 8: expected ',' or ']', got '2'" },
    { LIT("{1:2}"), -1, "offset 1: expected string key, got '1'" },
    { LIT("{'a':1}"), -1, "offset 1: expected string key, got '''" },
    { LIT("{\xc3\xa9:1}"), -1, "offset 1: expected string key, got byte 0xc3" },
    { LIT("{\"a\":}"), -1, "offset 5: expected a JSON value, got '}'" },
    { LIT("{\"a\":1\0}"), -1, "offset 6: expected ',' or '}', got byte 0x00" },

    /* literals and numbers */
    { LIT("{\"a\":tru}"), -1, "offset 5: invalid literal (expected true)" },
    { LIT("{\"a\":nul1}"), -1, "offset 5: invalid literal (expected null)" },
    { LIT("{\"a\":NaN}"), -1, "offset 5: expected a JSON value, got 'N'" },
    { LIT("{\"a\":Infinity}"), -1, "offset 5: expected a JSON value, got 'I'" },
    { LIT("{\"a\":01}"), -1, "offset 5: leading zero in number" },
    { LIT("{\"a\":-01}"), -1, "offset 6: leading zero in number" },
    { LIT("{\"a\":-}"), -1, "offset 6: expected digit after '-'" },
    { LIT("{\"a\":.5}"), -1, "offset 5: expected a JSON value, got '.'" },
    { LIT("{\"a\":+1}"), -1, "offset 5: expected a JSON value, got '+'" },
    { LIT("{\"a\":1.}"), -1, "offset 7: expected digit after '.'" },
    { LIT("{\"a\":1e}"), -1, "offset 7: expected digit in exponent" },
    { LIT("{\"a\":1e+}"), -1, "offset 8: expected digit in exponent" },
    { LIT("{\"a\":0x10}"), -1, "offset 6: expected ',' or '}', got 'x'" },

    /* strings */
    { LIT("{\"a\\x\":1}"), -1, "offset 3: invalid escape \\x" },
    { LIT("{\"a\":\"\\'\"}"), -1, "offset 6: invalid escape \\'" },
    { LIT("{\"a\":\"\\u12\"}"), -1, "offset 6: invalid \\u escape (need 4 hex digits)" },
    { LIT("{\"a\":\"\\u12"), -1, "offset 10: unexpected end of input" },
    { LIT("{\"a\":\"\\"), -1, "offset 7: unexpected end of input" },
    { LIT("{\"a\x01\":1}"), -1, "offset 3: unescaped control character 0x01 in string" },
    { LIT("{\"a\":\"tab\there\"}"), -1, "offset 9: unescaped control character 0x09 in string" },
    { LIT("{\"a\":\"x\0\"}"), -1, "offset 7: unescaped control character 0x00 in string" },
    { LIT("{\"a\":\"\xc0\x80\"}"), -1, "offset 6: invalid UTF-8 in string" },
    { LIT("{\"a\":\"x\xed\xa0\x80\"}"), -1, "offset 7: invalid UTF-8 in string" },
    { LIT("{\"a\":\"01234567\xf4\x90\x80\x80\"}"), -1, "offset 14: invalid UTF-8 in string" },
    { LIT("{\"a\":\"\xe2\x82\"}"), -1, "offset 6: invalid UTF-8 in string" },
};

static void test_json_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const struct json_case *c = &json_cases[i];
        char err[128];
        memset(err, 'X', sizeof err);
        int rc = json_validate_object(c->s, c->len, err, sizeof err);
        if (rc != c->rc || strcmp(err, c->err) != 0)
            print_error("json case %zu: got rc=%d err=\"%s\", want rc=%d err=\"%s\"\n",
                        i, rc, err, c->rc, c->err);
        assert_int_equal(rc, c->rc);
        assert_string_equal(err, c->err);
    }
}

/* '{"a":' then depth-1 '[' ... ']' then '}': `depth` nested containers. */
static char *json_nested(size_t depth, size_t *len)
{
    size_t n = 5 + 2 * (depth - 1) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    memcpy(s, "{\"a\":", 5);
    memset(s + 5, '[', depth - 1);
    memset(s + 5 + depth - 1, ']', depth - 1);
    s[n - 1] = '}';
    *len = n;
    return s;
}

static void test_json_depth(void **state)
{
    char err[64];
    size_t len;
    char *s;
    (void)state;

    s = json_nested(JSON_MAX_DEPTH, &len);
    assert_int_equal(json_validate_object(s, len, err, sizeof err), 0);
    assert_string_equal(err, "");
    free(s);

    /* The 65th opener sits at 5 + 63 = 68. */
    s = json_nested(JSON_MAX_DEPTH + 1, &len);
    assert_int_equal(json_validate_object(s, len, err, sizeof err), -1);
    assert_string_equal(err, "offset 68: nesting deeper than 64");
    free(s);

    /* Hostile depth must be cut off at the limit, not blow the stack. */
    s = json_nested(1000000, &len);
    assert_int_equal(json_validate_object(s, len, err, sizeof err), -1);
    assert_string_equal(err, "offset 68: nesting deeper than 64");
    free(s);

    /* Objects count toward depth like arrays: 65 nested objects. */
    {
        char buf[65 * 5 + 65 + 1];
        size_t o = 0;
        for (int i = 0; i < 65; i++) {
            memcpy(buf + o, "{\"k\":", 5);
            o += 5;
        }
        buf[o++] = '1';
        for (int i = 0; i < 65; i++)
            buf[o++] = '}';
        assert_int_equal(json_validate_object(buf, o, err, sizeof err), -1);
        assert_string_equal(err, "offset 320: nesting deeper than 64");
        /* drop the outermost level: 64 deep is fine */
        assert_int_equal(json_validate_object(buf + 5, o - 6, err, sizeof err), 0);
    }
}

static void test_json_err_buffer(void **state)
{
    char err[16];
    (void)state;

    /* NULL / zero-length err buffers are allowed. */
    assert_int_equal(json_validate_object(LIT("[]"), NULL, 0), -1);
    assert_int_equal(json_validate_object(LIT("{}"), NULL, 0), 0);
    err[0] = 'Z';
    assert_int_equal(json_validate_object(LIT("[]"), err, 0), -1);
    assert_int_equal(err[0], 'Z'); /* errlen 0: not written at all */

    /* Truncated, but always NUL-terminated. */
    memset(err, 'X', sizeof err);
    assert_int_equal(json_validate_object(LIT(""), err, 10), -1);
    assert_string_equal(err, "offset 0:");
    assert_int_equal(err[10], 'X'); /* nothing beyond errlen */
    assert_int_equal(json_validate_object(LIT(""), err, 1), -1);
    assert_string_equal(err, "");

    /* Success clears a stale message. */
    memcpy(err, "stale", 6);
    assert_int_equal(json_validate_object(LIT("{}"), err, sizeof err), 0);
    assert_string_equal(err, "");
}

/* The length is what counts, not a terminating NUL: a valid prefix of a
 * longer buffer validates on its own, and a cut-off object does not. */
static void test_json_length_bounded(void **state)
{
    const char buf[] = "{\"a\":1}GARBAGE";
    char err[64];
    (void)state;

    assert_int_equal(json_validate_object(buf, 7, err, sizeof err), 0);
    assert_int_equal(json_validate_object(buf, 6, err, sizeof err), -1);
    assert_string_equal(err, "offset 6: unexpected end of input");
}

/* text_utf8_next: the one decoder (RFC 3629 ranges; NUL is U+0000). */
static void test_utf8_next(void **state)
{
    static const struct { const char *s; size_t len, want; uint32_t cp; } cases[] = {
        { "A", 1, 1, 0x41 },
        { "\0x", 2, 1, 0 },
        { "\xc3\xa9", 2, 2, 0xE9 },
        { "\xe2\x82\xac", 3, 3, 0x20AC },
        { "\xf0\x9f\x98\x80", 4, 4, 0x1F600 },
        { "\xf4\x8f\xbf\xbf", 4, 4, 0x10FFFF },
        { "\xc0\xaf", 2, 0, 0 },             /* overlong */
        { "\xe0\x80\xaf", 3, 0, 0 },         /* overlong */
        { "\xed\xa0\x80", 3, 0, 0 },         /* surrogate */
        { "\xf4\x90\x80\x80", 4, 0, 0 },     /* above U+10FFFF */
        { "\xe2\x82\xac", 2, 0, 0 },         /* cut short */
        { "\x80", 1, 0, 0 },                 /* stray continuation */
        { "\xff", 1, 0, 0 },
        { "", 0, 0, 0 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t cp = 0xDEADBEEF;
        assert_int_equal(text_utf8_next(cases[i].s, cases[i].len, &cp), cases[i].want);
        assert_int_equal(cp, cases[i].want ? cases[i].cp : 0xDEADBEEF);
    }
}

struct sink { char buf[256]; size_t len, fail_after; };

static int sink_put(void *ctx, const char *p, size_t n)
{
    struct sink *k = ctx;
    if (k->len + n > k->fail_after || k->len + n >= sizeof k->buf)
        return -1;
    memcpy(k->buf + k->len, p, n);
    k->len += n;
    k->buf[k->len] = '\0';
    return 0;
}

/* text_json_string: the one JSON string writer, exact bytes per policy. */
static void test_json_string(void **state)
{
    static const char in[] = "q\"b\\ \b\f\n\r\t \x01\x1f \x7f Gr\xc3\xbc\xc3\x9f" "e \xff\xc0\xaf \xed\xa0\x80 \xe2\x82 /";
    /* DEL copied (flags 0) or escaped; each byte of ill-formed UTF-8 (a
     * stray byte, an overlong, a surrogate, a cut sequence) -> U+FFFD. */
    static const char want0[] = "\"q\\\"b\\\\ \\b\\f\\n\\r\\t \\u0001\\u001f \x7f Gr\xc3\xbc\xc3\x9f" "e "
                                "\\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd /\"";
    static const char want_del[] = "\"q\\\"b\\\\ \\b\\f\\n\\r\\t \\u0001\\u001f \\u007f Gr\xc3\xbc\xc3\x9f" "e "
                                   "\\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd /\"";
    struct sink k = { .fail_after = SIZE_MAX };
    (void)state;

    assert_int_equal(text_json_string(sink_put, &k, in, sizeof in - 1, 0), 0);
    assert_string_equal(k.buf, want0);

    memset(&k, 0, sizeof k);
    k.fail_after = SIZE_MAX;
    assert_int_equal(text_json_string(sink_put, &k, in, sizeof in - 1, TEXT_JSON_ESCAPE_DEL), 0);
    assert_string_equal(k.buf, want_del);

    memset(&k, 0, sizeof k);
    k.fail_after = SIZE_MAX;
    assert_int_equal(text_json_string(sink_put, &k, "a\0b", 3, 0), 0);
    assert_string_equal(k.buf, "\"a\\u0000b\"");

    /* A failing sink stops the writer at once ("ab\ncd" -> 8 bytes). */
    for (size_t cut = 0; cut < 8; cut++) {
        memset(&k, 0, sizeof k);
        k.fail_after = cut;
        assert_int_equal(text_json_string(sink_put, &k, "ab\ncd", 5, 0), -1);
        assert_true(k.len <= cut);
    }
    memset(&k, 0, sizeof k);
    k.fail_after = 8;
    assert_int_equal(text_json_string(sink_put, &k, "ab\ncd", 5, 0), 0);
    assert_string_equal(k.buf, "\"ab\\ncd\"");
}

/* text_hexval: every byte value, against the digits it must accept. */
static void test_hexval(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        int want = -1;
        if (c >= '0' && c <= '9')
            want = c - '0';
        else if (c >= 'a' && c <= 'f')
            want = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            want = c - 'A' + 10;
        assert_int_equal(text_hexval((char)c), want);
    }
}

/* fileio: the directory of a path is synced (".", "/", a dir), and a
 * missing one gives the exact error with errno kept. */
static void test_fileio_fsync(void **state)
{
    char err[256], dir[] = "/tmp/aq-test-fileio-XXXXXX", path[64];

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/name", dir);
    assert_int_equal(fileio_fsync_parent(path, err, sizeof err), 0);
    assert_int_equal(fileio_fsync_parent("bare-name", err, sizeof err), 0);
    assert_int_equal(fileio_fsync_parent("/in-root", err, sizeof err), 0);
    assert_int_equal(fileio_fsync_dir(dir, NULL, 0), 0);
    assert_int_equal(rmdir(dir), 0);
    errno = 0;
    assert_int_equal(fileio_fsync_parent(path, err, sizeof err), -1);
    assert_int_equal(errno, ENOENT);
    char want[128];
    snprintf(want, sizeof want, "fsync of directory %s: No such file or directory", dir);
    assert_string_equal(err, want);
    assert_int_equal(fileio_fsync_dir(dir, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_table),
        cmocka_unit_test(test_utf8_null_bad_off),
        cmocka_unit_test(test_utf8_vs_reference),
        cmocka_unit_test(test_json_table),
        cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_json_err_buffer),
        cmocka_unit_test(test_json_length_bounded),
        cmocka_unit_test(test_utf8_next),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_hexval),
        cmocka_unit_test(test_fileio_fsync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
