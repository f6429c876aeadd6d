/* test_entry.c -- unit tests for common/entry.c: the canonical event entry
 * v1 (exact bytes), its streaming leaf hash, the decoder and the printer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"
#include "merkle.h"

/* The row of docs/INTEGRITY.md's worked example. */
static const char *ex_vals[ENTRY_EVENT_NFIELDS] = {
    "0193a4b2-7c1d-7e8f-9a0b-1c2d3e4f5a6b", /* event_id */
    "1764864000123456",                      /* occurred_at */
    "1764864000200001",                      /* received_at */
    "normal",                                /* priority */
    "acme",                                  /* tenant_id */
    "u-42",                                  /* actor_id */
    "user",                                  /* actor_type */
    "invoice.paid",                          /* action */
    "invoice",                               /* entity_type */
    "inv-7",                                 /* entity_id */
    "success",                               /* outcome */
    NULL,                                    /* source_ip */
    NULL,                                    /* user_agent */
    NULL,                                    /* request_id */
    NULL,                                    /* session_id */
    "{\"amount\": 100}",                     /* changes (jsonb::text) */
    NULL,                                    /* metadata */
    NULL,                                    /* clock_flag */
};

static void lens_of(const char *const *vals, size_t *lens)
{
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++)
        lens[i] = vals[i] ? strlen(vals[i]) : 0;
}

static void append_field(unsigned char *out, size_t *off, const char *s)
{
    uint32_t n;

    if (s == NULL) {
        memset(out + *off, 0xFF, 4);
        *off += 4;
        return;
    }
    n = (uint32_t)strlen(s);
    out[(*off)++] = (unsigned char)(n >> 24);
    out[(*off)++] = (unsigned char)(n >> 16);
    out[(*off)++] = (unsigned char)(n >> 8);
    out[(*off)++] = (unsigned char)n;
    memcpy(out + *off, s, n);
    *off += n;
}

static void test_exact_bytes(void **state)
{
    unsigned char got[1024], want[1024];
    size_t lens[ENTRY_EVENT_NFIELDS], off = 0, n;

    (void)state;
    lens_of(ex_vals, lens);
    want[off++] = 0x01;
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++)
        append_field(want, &off, ex_vals[i]);
    n = entry_event_encode(ex_vals, lens, got, sizeof got);
    assert_int_equal(n, off);
    assert_memory_equal(got, want, off);
    /* The documented size: 1 + 18 * 4 + the text bytes. */
    assert_int_equal(n, 1 + 72 + 36 + 16 + 16 + 6 + 4 + 4 + 4 + 12 + 7 + 5 + 7 + 15);
    /* First bytes exactly: type, then length 36 of event_id. */
    assert_memory_equal(got, "\x01\x00\x00\x00\x24" "0193a4b2", 13);
    /* source_ip NULL: FF FF FF FF right after outcome "success". */
    {
        const unsigned char *p = memmem(got, n, "success", 7);
        assert_non_null(p);
        assert_memory_equal(p + 7, "\xff\xff\xff\xff", 4);
    }
    /* Size query: cap 0 writes nothing and reports the size. */
    assert_int_equal(entry_event_encode(ex_vals, lens, NULL, 0), off);
    memset(got, 0xAA, sizeof got);
    assert_int_equal(entry_event_encode(ex_vals, lens, got, off - 1), off);
    assert_int_equal(got[0], 0xAA);
}

static void test_injective(void **state)
{
    const char *a[ENTRY_EVENT_NFIELDS], *b[ENTRY_EVENT_NFIELDS];
    size_t la[ENTRY_EVENT_NFIELDS], lb[ENTRY_EVENT_NFIELDS];
    merkle_hash ha, hb;

    (void)state;
    memcpy(a, ex_vals, sizeof a);
    memcpy(b, ex_vals, sizeof b);
    /* "ab"+"c" vs "a"+"bc" in adjacent fields. */
    a[4] = "ab";
    a[5] = "c";
    b[4] = "a";
    b[5] = "bc";
    lens_of(a, la);
    lens_of(b, lb);
    entry_event_leaf_hash(a, la, ha);
    entry_event_leaf_hash(b, lb, hb);
    assert_memory_not_equal(ha, hb, 32);
    /* NULL vs the empty string. */
    memcpy(b, ex_vals, sizeof b);
    memcpy(a, ex_vals, sizeof a);
    b[11] = "";
    lens_of(a, la);
    lens_of(b, lb);
    entry_event_leaf_hash(a, la, ha);
    entry_event_leaf_hash(b, lb, hb);
    assert_memory_not_equal(ha, hb, 32);
}

/* The streaming leaf hash equals SHA-256(0x00 || encode(...)) for short
 * rows, rows with long fields (past the 512-byte staging buffer), all-NULL
 * rows and non-ASCII text. */
static void test_leaf_hash_matches(void **state)
{
    static char big[5000], mid[600];
    const char *rows[4][ENTRY_EVENT_NFIELDS];

    (void)state;
    memset(big, 'x', sizeof big - 1);
    memset(mid, 'y', sizeof mid - 1);
    for (int r = 0; r < 4; r++)
        memcpy(rows[r], ex_vals, sizeof rows[r]);
    rows[1][12] = big;                                   /* user_agent 4999 bytes */
    rows[1][16] = mid;
    rows[1][15] = "{\"note\": \"caf\xc3\xa9 \xf0\x9f\x98\x80\"}"; /* é and an emoji */
    for (int i = 1; i < ENTRY_EVENT_NFIELDS; i++)
        rows[2][i] = NULL;
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++)
        rows[3][i] = mid;                                /* 18 x 599 bytes */
    for (int r = 0; r < 4; r++) {
        size_t lens[ENTRY_EVENT_NFIELDS], n;
        unsigned char *buf;
        merkle_hash a, b;

        lens_of(rows[r], lens);
        n = entry_event_encode(rows[r], lens, NULL, 0);
        buf = malloc(n);
        assert_non_null(buf);
        assert_int_equal(entry_event_encode(rows[r], lens, buf, n), n);
        merkle_leaf_hash(buf, n, a);
        assert_int_equal(entry_event_leaf_hash(rows[r], lens, b), 0);
        assert_memory_equal(a, b, 32);
        free(buf);
    }
}

static void test_format_us(void **state)
{
    char out[32];

    (void)state;
    assert_int_equal(entry_format_us(1764864000123456LL, out, sizeof out), 16);
    assert_string_equal(out, "1764864000123456");
    assert_int_equal(entry_format_us(-1, out, sizeof out), 2);
    assert_string_equal(out, "-1");
    entry_format_us(INT64_MIN, out, sizeof out);
    assert_string_equal(out, "-9223372036854775808");
}

static void test_decode(void **state)
{
    unsigned char buf[1024];
    size_t lens[ENTRY_EVENT_NFIELDS], n;
    entry_view v;
    char err[200];

    (void)state;
    lens_of(ex_vals, lens);
    n = entry_event_encode(ex_vals, lens, buf, sizeof buf);
    assert_int_equal(entry_decode(buf, n, &v, err, sizeof err), 0);
    assert_int_equal(v.type, 1);
    assert_int_equal(v.nfields, 18);
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
        if (ex_vals[i] == NULL) {
            assert_null(v.f[i].p);
        } else {
            assert_int_equal(v.f[i].len, strlen(ex_vals[i]));
            assert_memory_equal(v.f[i].p, ex_vals[i], v.f[i].len);
        }
    }
    /* Cut inside the last length (clock_flag's FF FF FF FF). */
    assert_int_equal(entry_decode(buf, n - 2, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 18 (clock_flag) is cut short: 2 of its 4 length bytes at offset 201");
    /* Cut inside event_id's text. */
    assert_int_equal(entry_decode(buf, 20, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 1 (event_id) runs past the end: length 36 at offset 1, 15 bytes left");
    /* A field missing at the end. */
    assert_int_equal(entry_decode(buf, n - 4, &v, err, sizeof err), -1);
    assert_string_equal(err, "event entry has 17 fields, version 1 has 18");
    assert_int_equal(entry_decode(buf, 0, &v, err, sizeof err), -1);
    assert_string_equal(err, "entry is empty");
    /* Another type decodes generically with fieldN names. */
    {
        const unsigned char r[] = { 0x02, 0, 0, 0, 2, 'h', 'i', 0xFF, 0xFF, 0xFF, 0xFF };
        char nb[16];

        assert_int_equal(entry_decode(r, sizeof r, &v, err, sizeof err), 0);
        assert_int_equal(v.type, 2);
        assert_int_equal(v.nfields, 2);
        assert_string_equal(entry_field_name(2, 1, nb, sizeof nb), "field2");
    }
}

static char *print_to_string(const entry_view *v, int json)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    entry_print(f, v, json);
    fclose(f);
    return buf;
}

static void test_print(void **state)
{
    const char *vals[ENTRY_EVENT_NFIELDS];
    size_t lens[ENTRY_EVENT_NFIELDS], n;
    unsigned char buf[1024];
    entry_view v;
    char err[200], *out;

    (void)state;
    memcpy(vals, ex_vals, sizeof vals);
    vals[12] = "bad\x1b[31m\xff";          /* a terminal escape and a stray byte */
    vals[17] = "NULL";                      /* the text NULL, not SQL NULL */
    lens_of(vals, lens);
    n = entry_event_encode(vals, lens, buf, sizeof buf);
    assert_int_equal(entry_decode(buf, n, &v, err, sizeof err), 0);
    out = print_to_string(&v, 0);
    assert_non_null(strstr(out, "  type: 1 (event, version 1)\n  event_id: \"0193a4b2-7c1d-7e8f-9a0b-1c2d3e4f5a6b\"\n"));
    assert_non_null(strstr(out, "  source_ip: NULL\n"));
    assert_non_null(strstr(out, "  user_agent: \"bad\\x1b[31m\\xff\"\n"));
    assert_non_null(strstr(out, "  clock_flag: \"NULL\"\n"));
    free(out);
    out = print_to_string(&v, 1);
    assert_non_null(strstr(out, "{\"type\":1,\"event_id\":\"0193a4b2-7c1d-7e8f-9a0b-1c2d3e4f5a6b\",\"occurred_at\":\"1764864000123456\","));
    assert_non_null(strstr(out, "\"source_ip\":null,"));
    assert_non_null(strstr(out, "\"user_agent\":\"bad\\u001b[31m\\ufffd\","));
    assert_non_null(strstr(out, "\"changes\":\"{\\\"amount\\\": 100}\","));
    assert_int_equal(out[strlen(out) - 1], '}');
    assert_non_null(strstr(out, "\"clock_flag\":\"NULL\"}"));
    free(out);
}

static void test_select_list(void **state)
{
    (void)state;
    /* 18 columns in entry order: the list names each field once. */
    int commas = 0;
    for (const char *p = entry_event_select_sql; *p; p++)
        commas += *p == ',';
    assert_int_equal(commas, ENTRY_EVENT_NFIELDS - 1);
    assert_non_null(strstr(entry_event_select_sql, "(extract(epoch from occurred_at) * 1000000)::bigint::text"));
    assert_non_null(strstr(entry_event_select_sql, "changes::text, metadata::text, clock_flag"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_injective),
        cmocka_unit_test(test_leaf_hash_matches),
        cmocka_unit_test(test_format_us),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_select_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
