/* test_query.c -- unit tests for `auditqctl query` (ctl_query.h): time parsing and
 * formatting, the cursor token, argument parsing, the SQL it builds, and
 * the byte-exact CSV/JSON/table cell writers. The database side (rows,
 * pages, plans) is tests/integration/it_78_query.sh.
 *
 * The functions under test are ctl_query.h's (ctl_query_args.c,
 * ctl_query_out.c), linked from build/lib/libauditqctl.a. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_query.h"

/* 2024-07-19T12:00:00Z, the worked example of docs/PROTOCOL.md. */
#define T_JUL19 INT64_C(1721390400000000)
#define H_US INT64_C(3600000000)

/* ------------------------------------------------------------------ time */

struct time_case {
    const char *in;
    int ok;
    int64_t us;  /* expected when ok */
};

static const struct time_case time_cases[] = {
    { "2024-07-19", 1, T_JUL19 - 12 * H_US },
    { "2024-07-19T12:00:00Z", 1, T_JUL19 },
    { "2024-07-19T12:00Z", 1, T_JUL19 },
    { "2024-07-19T12:00", 1, T_JUL19 },                    /* no offset: UTC */
    { "2024-07-19 12:00:00", 1, T_JUL19 },                 /* psql's separator */
    { "2024-07-19t12:00:00Z", 0, 0 },
    { "2024-07-19T14:00:00+02:00", 1, T_JUL19 },
    { "2024-07-19T14:00:00+0200", 1, T_JUL19 },
    { "2024-07-19T14:00:00+02", 1, T_JUL19 },
    { "2024-07-19T14:00:00+02:", 0, 0 },
    { "2024-07-19T14:00:00+02:0", 0, 0 },
    { "2024-07-19T14:00:00+020", 0, 0 },
    { "2024-07-19T14:00:00+2", 0, 0 },
    { "2024-07-19T14:00:00+02:00:00", 0, 0 },
    { "2024-07-19T14:00:00Z+02", 0, 0 },
    { "2024-07-19T06:30:00-05:30", 1, T_JUL19 },
    { "2024-07-19T12:00:00.5Z", 1, T_JUL19 + 500000 },
    { "2024-07-19T12:00:00,000001Z", 1, T_JUL19 + 1 },
    { "2024-07-19T12:00:00.123456Z", 1, T_JUL19 + 123456 },
    { "2024-07-19T12:00:00.1234567Z", 0, 0 },              /* finer than PostgreSQL keeps */
    { "2024-07-19T12:00:00.Z", 0, 0 },
    { "2024-02-29", 1, INT64_C(1709164800000000) },        /* leap day */
    { "2023-02-29", 0, 0 },
    { "2100-02-29", 0, 0 },                                /* not a leap year */
    { "2000-02-29", 1, INT64_C(951782400000000) },         /* but 2000 was */
    { "2024-04-31", 0, 0 },
    { "2024-13-01", 0, 0 },
    { "2024-00-10", 0, 0 },
    { "2024-07-00", 0, 0 },
    { "2024-07-19T24:00:00Z", 0, 0 },
    { "2024-07-19T23:60:00Z", 0, 0 },
    { "2024-07-19T23:59:60Z", 0, 0 },                      /* no leap seconds */
    { "2024-07-19T12:00:00+24:00", 0, 0 },
    { "2024-07-19T12:00:00+02:60", 0, 0 },
    { "2024-7-19", 0, 0 },
    { "24-07-19", 0, 0 },
    { "2024-07-19Z", 0, 0 },
    { "2024-07-19T12", 0, 0 },
    { "2024-07-19T12:00:00Zjunk", 0, 0 },
    { "2024-07-19 ", 0, 0 },
    { "0000-12-31", 0, 0 },
    { "0001-01-01", 1, Q_USER_MIN_US },
    { "9999-12-31T23:59:59.999999Z", 1, Q_USER_MAX_US },
    { "10000-01-01", 0, 0 },                               /* users: 4-digit years */
    { "1969-12-31T23:59:59.999999Z", 1, -1 },
    { "1970-01-01", 1, 0 },
    { "", 0, 0 },
    { "yesterday", 0, 0 },
    { "-2024-07-19", 0, 0 },
};

static void test_parse_time_iso(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof time_cases / sizeof time_cases[0]; i++) {
        const struct time_case *c = &time_cases[i];
        int64_t us = 42;
        char err[256] = "";
        int rc = q_parse_time(c->in, 0, &us, err, sizeof err);

        if (c->ok) {
            if (rc != 0)
                fail_msg("'%s': refused: %s", c->in, err);
            if (us != c->us)
                fail_msg("'%s': got %" PRId64 ", expected %" PRId64, c->in, us, c->us);
        } else if (rc == 0) {
            fail_msg("'%s': accepted as %" PRId64, c->in, us);
        }
    }
}

static void test_parse_time_error_text(void **state)
{
    int64_t us;
    char err[512];

    (void)state;
    assert_int_equal(-1, q_parse_time("yesterday", 0, &us, err, sizeof err));
    assert_string_equal("'yesterday': not a time; use ISO-8601 (2024-07-19, 2024-07-19T12:00:00Z,"
                        " 2024-07-19T14:00:00+02:00) or an age before now (90s, 30m, 24h, 7d, 2w)",
                        err);
    assert_int_equal(-1, q_parse_time("36526d", 0, &us, err, sizeof err));
    assert_string_equal("'36526d': an age must be at most 100 years (36525d)", err);
    assert_int_equal(-1, q_parse_time("99999999999999999999999h", 0, &us, err, sizeof err));
    assert_string_equal("'99999999999999999999999h': an age must be at most 100 years (36525d)", err);
}

static void test_parse_time_relative(void **state)
{
    static const struct { const char *in; int64_t back_s; } cases[] = {
        { "0s", 0 }, { "90s", 90 }, { "30m", 1800 }, { "24h", 86400 }, { "7d", 604800 },
        { "2w", 1209600 }, { "1d", 86400 }, { "36525d", INT64_C(36525) * 86400 },
        { "876600h", INT64_C(876600) * 3600 },
    };
    static const char *const bad[] = { "5x", "h", "-5h", "5 h", "5hh", "1.5h", "5H", "+5h" };
    int64_t now = T_JUL19 + 123, us;
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(0, q_parse_time(cases[i].in, now, &us, err, sizeof err));
        assert_int_equal(now - cases[i].back_s * 1000000, us);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (q_parse_time(bad[i], now, &us, err, sizeof err) == 0)
            fail_msg("'%s' accepted", bad[i]);
}

static void test_format_time(void **state)
{
    static const struct { int64_t us; const char *text; } cases[] = {
        { 0, "1970-01-01T00:00:00.000000Z" },
        { -1, "1969-12-31T23:59:59.999999Z" },
        { -1000000, "1969-12-31T23:59:59.000000Z" },
        { T_JUL19, "2024-07-19T12:00:00.000000Z" },
        { T_JUL19 + 1, "2024-07-19T12:00:00.000001Z" },
        { INT64_C(951782400000000), "2000-02-29T00:00:00.000000Z" },
        { Q_USER_MIN_US, "0001-01-01T00:00:00.000000Z" },
        { Q_USER_MAX_US, "9999-12-31T23:59:59.999999Z" },
        { Q_ROW_MAX_US, "99999-12-31T23:59:59.999999Z" },
    };
    char out[Q_TS_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        q_format_time(cases[i].us, out);
        assert_string_equal(cases[i].text, out);
    }
}

/* Every formatted time parses back to itself (the cursor depends on it),
 * over the whole range including the 5-digit years rows may hold. */
static void test_time_roundtrip(void **state)
{
    uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
    char out[Q_TS_LEN];
    int64_t back;

    (void)state;
    for (int i = 0; i < 200000; i++) {
        int64_t span = Q_ROW_MAX_US - Q_USER_MIN_US, us;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        us = Q_USER_MIN_US + (int64_t)(x % (uint64_t)span);
        if (i % 4 == 0)  /* also dense around the epoch and today */
            us = T_JUL19 - (int64_t)(x % (UINT64_C(200) * 365 * 86400 * 1000000));
        q_format_time(us, out);
        if (q_parse_iso(out, 5, &back) != 0 || back != us)
            fail_msg("%" PRId64 " -> '%s' -> %" PRId64, us, out, back);
    }
}

/* ------------------------------------------------------------------ cursor */

static const q_cursor cur_example = {
    T_JUL19 + 1,
    { 0x01, 0x90, 0xf3, 0xb2, 0x5c, 0x4e, 0x7a, 0x21, 0x9d, 0x3b, 0x6c, 0x2f, 0x1e, 0x8a, 0x4b, 0x70 },
    0,
};

static void test_cursor_roundtrip(void **state)
{
    q_cursor cases[4] = { cur_example, cur_example, cur_example, cur_example };
    char tok[Q_CURSOR_CHARS + 1], err[256];
    q_cursor back;

    (void)state;
    cases[1].desc = 1;
    cases[2].us = -1;
    cases[3].us = Q_ROW_MAX_US;
    memset(cases[3].id, 0xff, 16);
    for (size_t i = 0; i < 4; i++) {
        q_cursor_encode(&cases[i], tok);
        assert_int_equal(Q_CURSOR_CHARS, strlen(tok));
        assert_int_equal(Q_CURSOR_CHARS, strspn(tok, q_b64));
        memset(&back, 0x55, sizeof back);
        if (q_cursor_decode(tok, &back, err, sizeof err) != 0)
            fail_msg("'%s': %s", tok, err);
        assert_int_equal(cases[i].us, back.us);
        assert_int_equal(cases[i].desc, back.desc);
        assert_memory_equal(cases[i].id, back.id, 16);
    }
}

/* The token format is a contract with scripts that saved one: pin it. */
static void test_cursor_exact(void **state)
{
    char tok[Q_CURSOR_CHARS + 1];
    q_cursor desc = cur_example;

    (void)state;
    q_cursor_encode(&cur_example, tok);
    assert_string_equal("AQAABh2Yb0_QAQGQ87JcTnohnTtsLx6KS3Az", tok);
    desc.desc = 1;
    q_cursor_encode(&desc, tok);
    assert_string_equal("AQEABh2Yb0_QAQGQ87JcTnohnTtsLx6KS3DA", tok);
}

/* Bytes -> token with a correct check byte, to forge well-formed tokens
 * carrying bad contents. */
static void forge(uint8_t b[Q_CURSOR_BYTES], char tok[Q_CURSOR_CHARS + 1])
{
    b[26] = q_cursor_check(b);
    for (int i = 0, o = 0; i < Q_CURSOR_BYTES; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];

        tok[o++] = q_b64[v >> 18 & 63];
        tok[o++] = q_b64[v >> 12 & 63];
        tok[o++] = q_b64[v >> 6 & 63];
        tok[o++] = q_b64[v & 63];
    }
    tok[Q_CURSOR_CHARS] = '\0';
}

static void test_cursor_malformed(void **state)
{
    char tok[Q_CURSOR_CHARS + 1], bad[64], err[256];
    uint8_t b[Q_CURSOR_BYTES] = { 0 };
    q_cursor c;
    int undetected = 0;

    (void)state;
    q_cursor_encode(&cur_example, tok);

    assert_int_equal(-1, q_cursor_decode("", &c, err, sizeof err));
    assert_string_equal("it has 0 characters, a cursor has 36", err);
    memcpy(bad, tok, Q_CURSOR_CHARS - 1);
    bad[Q_CURSOR_CHARS - 1] = '\0';
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("it has 35 characters, a cursor has 36", err);
    snprintf(bad, sizeof bad, "%sA", tok);
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("it has 37 characters, a cursor has 36", err);
    memcpy(bad, tok, sizeof tok);
    bad[5] = '+';  /* base64, but not base64url */
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("character 6 ('+') is not in a cursor's alphabet (A-Z a-z 0-9 - _)", err);
    bad[5] = '\n';
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("character 6 ('?') is not in a cursor's alphabet (A-Z a-z 0-9 - _)", err);
    memcpy(bad, tok, sizeof tok);
    bad[20] = bad[20] == 'A' ? 'B' : 'A';
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("its check digit does not match (mistyped or truncated?)", err);

    /* Single-character typos anywhere: the check byte catches nearly all
     * (exactly how many is fixed by the hash; 1 in 256 may slip through). */
    for (int pos = 0; pos < Q_CURSOR_CHARS; pos++)
        for (int k = 0; k < 64; k++) {
            if (q_b64[k] == tok[pos])
                continue;
            memcpy(bad, tok, sizeof tok);
            bad[pos] = q_b64[k];
            if (q_cursor_decode(bad, &c, err, sizeof err) == 0)
                undetected++;
        }
    assert_true(undetected <= 36 * 63 / 128);

    b[0] = 2;
    forge(b, bad);
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("cursor version 2 is not known to this auditqctl", err);
    b[0] = 1;
    b[1] = 0x03;
    forge(b, bad);
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("unknown flags 0x03", err);
    b[1] = 0;
    memset(b + 2, 0x7f, 8);  /* far beyond year 99999 */
    forge(b, bad);
    assert_int_equal(-1, q_cursor_decode(bad, &c, err, sizeof err));
    assert_string_equal("its time is out of range", err);
}

/* ------------------------------------------------------------------ arguments */

/* Parses a NULL-terminated list of arguments (after "query"). */
static int parse(q_opts *o, char *err, size_t errlen, ...)
{
    char *argv[32] = { (char *)"query" };
    int argc = 1;
    va_list ap;

    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    err[0] = '\0';
    return q_parse_args(argc, argv, T_JUL19, o, err, errlen);
}

#define PARSE_ERR(expected, ...)                                          \
    do {                                                                  \
        assert_int_equal(-1, parse(&o, err, sizeof err, __VA_ARGS__, NULL)); \
        assert_string_equal(expected, err);                               \
    } while (0)

static void test_args_ok(void **state)
{
    q_opts o;
    char err[1024];

    (void)state;
    assert_int_equal(0, parse(&o, err, sizeof err, NULL));
    assert_int_equal(Q_FMT_AUTO, o.format);
    assert_int_equal(Q_PAGE_DEFAULT, o.page_size);
    assert_int_equal(0, o.limit_set);
    assert_int_equal(-1, o.progress);
    assert_null(o.tenant);

    assert_int_equal(0, parse(&o, err, sizeof err, "--tenant", "acme", "--actor=u 1",
                              "--entity", "doc:42:7", "--outcome", "denied", "--since", "24h",
                              "--until=2024-07-19T12:00:00Z", "--limit", "0", "--page-size",
                              "7", "--format=csv", "--desc", "--no-progress", "--explain=json",
                              "--action", "user.login", NULL));
    assert_string_equal("acme", o.tenant);
    assert_string_equal("u 1", o.actor);
    assert_string_equal("doc", o.entity_type);
    assert_string_equal("42:7", o.entity_id);   /* the first ':' separates */
    assert_string_equal("denied", o.outcome);
    assert_string_equal("user.login", o.action);
    assert_int_equal(0, o.action_prefix);
    assert_int_equal(T_JUL19 - 24 * H_US, o.since_us);
    assert_int_equal(T_JUL19, o.until_us);
    assert_int_equal(1, o.limit_set);
    assert_int_equal(0, o.limit);
    assert_int_equal(7, o.page_size);
    assert_int_equal(Q_FMT_CSV, o.format);
    assert_int_equal(1, o.desc);
    assert_int_equal(0, o.progress);
    assert_int_equal(Q_EXPLAIN_JSON, o.explain);

    assert_int_equal(0, parse(&o, err, sizeof err, "--entity", "document", "--explain",
                              "--progress", "--tenant", "", NULL));
    assert_string_equal("document", o.entity_type);
    assert_null(o.entity_id);
    assert_int_equal(Q_EXPLAIN_TEXT, o.explain);
    assert_int_equal(1, o.progress);
    assert_string_equal("", o.tenant);          /* matches tenant_id = '' */

    assert_int_equal(0, parse(&o, err, sizeof err, "--entity", "doc:", NULL));
    assert_string_equal("", o.entity_id);
}

static void test_args_action_prefix(void **state)
{
    static const struct { const char *arg, *like; } cases[] = {
        { "user.*", "user.%" },
        { "u*", "u%" },
        { "a_b%c\\d.*", "a\\_b\\%c\\\\d.%" },   /* LIKE's own characters are literal */
    };
    q_opts o;
    char err[1024];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(0, parse(&o, err, sizeof err, "--action", cases[i].arg, NULL));
        assert_int_equal(1, o.action_prefix);
        assert_string_equal(cases[i].like, o.action_like);
    }
    PARSE_ERR("--action '*': give a prefix before the '*', or leave --action out", "--action", "*");
    PARSE_ERR("--action 'user.*.x': '*' may only end a prefix, as in 'user.*'", "--action", "user.*.x");
    PARSE_ERR("--action '**': '*' may only end a prefix, as in 'user.*'", "--action", "**");
}

static void test_args_errors(void **state)
{
    q_opts o;
    char err[1024], tok[Q_CURSOR_CHARS + 1], big[Q_VALUE_MAX + 2];
    q_cursor desc = cur_example;

    (void)state;
    PARSE_ERR("unknown argument '--tenants'; run 'auditqctl query --help'", "--tenants", "x");
    PARSE_ERR("unknown argument 'acme'; run 'auditqctl query --help'", "acme");
    PARSE_ERR("unknown argument '--desc=1'; run 'auditqctl query --help'", "--desc=1");
    PARSE_ERR("option '--tenant' needs a value; run 'auditqctl query --help'", "--tenant");
    /* A forgotten value never swallows the next option (it used to: the
     * query ran for tenant "--desc" and found 0 rows). */
    PARSE_ERR("option '--tenant' needs a value, but the next argument '--desc' is an option; to give a "
              "value that starts with '-', write --tenant=--desc; run 'auditqctl query --help'",
              "--tenant", "--desc");
    PARSE_ERR("option '--since' needs a value, but the next argument '-x' is an option; to give a "
              "value that starts with '-', write --since=-x; run 'auditqctl query --help'",
              "--since", "-x");
    assert_int_equal(0, parse(&o, err, sizeof err, "--tenant=--desc", "--actor", "-", NULL));
    assert_string_equal("--desc", o.tenant);
    assert_string_equal("-", o.actor);
    assert_int_equal(0, o.desc);
    PARSE_ERR("--tenant given twice", "--tenant", "a", "--tenant=b");
    PARSE_ERR("--outcome 'ok': must be success, failure or denied", "--outcome", "ok");
    PARSE_ERR("--event-id '0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b7': not a UUID (8-4-4-4-12 hex digits)",
              "--event-id", "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b7");
    PARSE_ERR("--entity ':42': give TYPE or TYPE:ID, e.g. --entity document:42", "--entity", ":42");
    PARSE_ERR("--entity '': give TYPE or TYPE:ID, e.g. --entity document:42", "--entity", "");
    PARSE_ERR("--limit '-1': must be a whole number of rows, 0 for no limit", "--limit", "-1");
    PARSE_ERR("--limit '10k': must be a whole number of rows, 0 for no limit", "--limit", "10k");
    PARSE_ERR("--page-size '0': must be 1..100000", "--page-size", "0");
    PARSE_ERR("--page-size '100001': must be 1..100000", "--page-size", "100001");
    PARSE_ERR("--format 'json': must be table, csv, ndjson, ocsf or cef", "--format", "json");
    PARSE_ERR("--explain='yaml': must be text, json or analyze", "--explain=yaml");
    PARSE_ERR("--since 'last week': not a time; use ISO-8601 (2024-07-19, 2024-07-19T12:00:00Z, "
              "2024-07-19T14:00:00+02:00) or an age before now (90s, 30m, 24h, 7d, 2w)",
              "--since", "last week");
    PARSE_ERR("--since (2024-07-19T12:00:00.000000Z) must be before --until (2024-07-19T12:00:00.000000Z)",
              "--since", "2024-07-19T12:00:00Z", "--until", "2024-07-19T14:00+02:00");
    PARSE_ERR("--since (2024-07-20T00:00:00.000000Z) must be before --until (2024-07-19T00:00:00.000000Z)",
              "--until", "2024-07-19", "--since", "2024-07-20");
    PARSE_ERR("--after 'abc': not a cursor printed by auditqctl query: it has 3 characters, "
              "a cursor has 36", "--after", "abc");

    q_cursor_encode(&cur_example, tok);
    PARSE_ERR("--after: this cursor continues an oldest-first run; drop --desc",
              "--after", tok, "--desc");
    desc.desc = 1;
    q_cursor_encode(&desc, tok);
    PARSE_ERR("--after: this cursor continues a --desc run; add --desc", "--after", tok);
    assert_int_equal(0, parse(&o, err, sizeof err, "--desc", "--after", tok, NULL));
    assert_int_equal(1, o.has_after);
    assert_int_equal(desc.us, o.after.us);

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    PARSE_ERR("--actor: the value is longer than 1024 bytes", "--actor", big);
}

/* ------------------------------------------------------------------ SQL */

#define SEL Q_SELECT

static void test_sql_plain(void **state)
{
    q_opts o;
    q_query q;
    char err[256];

    (void)state;
    assert_int_equal(0, parse(&o, err, sizeof err, NULL));
    assert_int_equal(0, q_build(&o, NULL, 1000, &q));
    assert_string_equal(SEL " ORDER BY occurred_at, event_id LIMIT $1::bigint", q.sql);
    assert_int_equal(1, q.nparams);
    assert_string_equal("1000", q.params[0]);
}

/* Every filter at once, after a cursor, newest first: the exact text, and
 * every value only as a parameter. */
static void test_sql_everything(void **state)
{
    static const char hostile[] = "x'; DROP TABLE audit_events; --";
    q_opts o;
    q_query q;
    char err[256], tok[Q_CURSOR_CHARS + 1];
    q_cursor c = cur_example;

    (void)state;
    c.desc = 1;
    q_cursor_encode(&c, tok);
    assert_int_equal(0, parse(&o, err, sizeof err, "--tenant", hostile, "--actor", "$1",
                              "--action", "user.*", "--entity", "doc:42", "--outcome", "failure",
                              "--event-id", "0190F3B2-5C4E-7A21-9D3B-6C2F1E8A4B70", "--since",
                              "2024-07-01", "--until", "2024-08-01", "--desc", "--after", tok, NULL));
    assert_int_equal(0, q_build(&o, &o.after, 51, &q));
    assert_string_equal(SEL
        " WHERE event_id = $1::uuid AND tenant_id = $2 AND actor_id = $3 AND action LIKE $4"
        " AND entity_type = $5 AND entity_id = $6 AND outcome = $7"
        " AND occurred_at >= $8::timestamptz AND occurred_at < $9::timestamptz"
        " AND occurred_at <= $10::timestamptz AND (occurred_at, event_id) < ($10::timestamptz, $11::uuid)"
        " ORDER BY occurred_at DESC, event_id DESC LIMIT $12::bigint", q.sql);
    assert_int_equal(12, q.nparams);
    assert_string_equal("0190F3B2-5C4E-7A21-9D3B-6C2F1E8A4B70", q.params[0]);
    assert_string_equal(hostile, q.params[1]);
    assert_string_equal("$1", q.params[2]);
    assert_string_equal("user.%", q.params[3]);
    assert_string_equal("doc", q.params[4]);
    assert_string_equal("42", q.params[5]);
    assert_string_equal("failure", q.params[6]);
    assert_string_equal("2024-07-01T00:00:00.000000Z", q.params[7]);
    assert_string_equal("2024-08-01T00:00:00.000000Z", q.params[8]);
    assert_string_equal("2024-07-19T12:00:00.000001Z", q.params[9]);
    assert_string_equal("0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70", q.params[10]);
    assert_string_equal("51", q.params[11]);
    assert_null(strstr(q.sql, "DROP"));
}

static void test_sql_cursor_ascending(void **state)
{
    q_opts o;
    q_query q;
    char err[256];

    (void)state;
    assert_int_equal(0, parse(&o, err, sizeof err, "--action", "user.login", NULL));
    assert_int_equal(0, q_build(&o, &cur_example, 7, &q));
    assert_string_equal(SEL " WHERE action = $1"
        " AND occurred_at >= $2::timestamptz AND (occurred_at, event_id) > ($2::timestamptz, $3::uuid)"
        " ORDER BY occurred_at, event_id LIMIT $4::bigint", q.sql);
    /* The cursor alone is the whole WHERE. */
    assert_int_equal(0, parse(&o, err, sizeof err, NULL));
    assert_int_equal(0, q_build(&o, &cur_example, 7, &q));
    assert_string_equal(SEL
        " WHERE occurred_at >= $1::timestamptz AND (occurred_at, event_id) > ($1::timestamptz, $2::uuid)"
        " ORDER BY occurred_at, event_id LIMIT $3::bigint", q.sql);
}

/* ------------------------------------------------------------------ writers */

/* Runs fn(out) into a memory stream; returns the bytes (caller frees). */
static char *capture(void (*fn)(FILE *, const void *), const void *arg, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);

    assert_non_null(f);
    fn(f, arg);
    assert_int_equal(0, fclose(f));
    return buf;
}

struct field { const char *s; size_t len; int isnull; const char *want; };
#define F(lit, want) { lit, sizeof(lit) - 1, 0, want }

static void csv_one(FILE *f, const void *arg)
{
    const struct field *c = arg;

    q_csv_field(f, c->s, c->len, c->isnull);
}

static void test_csv_field(void **state)
{
    static const struct field cases[] = {
        { NULL, 0, 1, "" },                   /* NULL: nothing */
        F("", "\"\""),                        /* empty string: "" */
        F("plain", "plain"),
        F("a,b", "\"a,b\""),
        F("say \"hi\"", "\"say \"\"hi\"\"\""),
        F("\"", "\"\"\"\""),
        F("line1\nline2", "\"line1\nline2\""),
        F("cr\rlf\r\n", "\"cr\rlf\r\n\""),
        F(" padded ", " padded "),            /* spaces are data (RFC 4180) */
        F("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"),
        F("tab\there;semi", "tab\there;semi"),
        F("{\"a\": [1, 2]}", "\"{\"\"a\"\": [1, 2]}\""),
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *got = capture(csv_one, &cases[i], &len);

        assert_int_equal(strlen(cases[i].want), len);
        assert_memory_equal(cases[i].want, got, len);
        free(got);
    }
}

static void json_one(FILE *f, const void *arg)
{
    const struct field *c = arg;

    q_json_string(f, c->s, c->len);
}

static void test_json_string(void **state)
{
    static const struct field cases[] = {
        F("", "\"\""),
        F("plain", "\"plain\""),
        F("q\"b\\s/", "\"q\\\"b\\\\s/\""),
        F("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\""),
        F("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\""),
        F("caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80\""),
        F("end\\", "\"end\\\\\""),
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *got = capture(json_one, &cases[i], &len);

        assert_int_equal(strlen(cases[i].want), len);
        assert_memory_equal(cases[i].want, got, len);
        free(got);
    }
}

/* A row of cells in the given widths, as the table writes it. */
struct row_case { const char *cells[4]; int widths[4]; const char *want; };

static void row_one(FILE *f, const void *arg)
{
    const struct row_case *c = arg;
    int pending = 0;

    for (int i = 0; i < 4 && c->cells[i] != NULL; i++) {
        q_cell cell = q_cell_of(c->cells[i]);

        pending = q_cell_write(f, &cell, c->widths[i], pending);
    }
}

static void test_table_cells(void **state)
{
    static const struct row_case cases[] = {
        { { "acme", "x" }, { 6, 3 }, "acme   x" },                  /* padded + gap */
        { { "acme" }, { 6 }, "acme" },                             /* nothing after: no blanks */
        { { "acme", "", "" }, { 6, 3, 3 }, "acme" },               /* empty cells owe, never write */
        { { "", "x" }, { 3, 1 }, "    x" },
        { { "exactly", "x" }, { 7, 1 }, "exactly x" },
        { { "too long!", "x" }, { 7, 1 }, "too lo\xe2\x80\xa6 x" },
        { { "too long!" }, { 7 }, "too lo\xe2\x80\xa6" },
        { { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "x" }, { 6, 1 },
          "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e x" },
        /* 3 wide chars in 5 columns: 2 fit in 4, then the mark */
        { { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "x" }, { 5, 1 },
          "\xe6\x97\xa5\xe6\x9c\xac\xe2\x80\xa6 x" },
        /* ...and in 4: one wide char, no room to split the second */
        { { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "x" }, { 4, 1 }, "\xe6\x97\xa5\xe2\x80\xa6  x" },
        { { "a\nb\tc\x1b[31m" }, { 12 }, "a?b?c?[31m" },          /* controls and escapes: ? */
        { { "evil\xe2\x80\xaegnp.exe" }, { 20 }, "evil?gnp.exe" },  /* RIGHT-TO-LEFT OVERRIDE */
        { { "e\xcc\x81t\xc3\xa9", "x" }, { 3, 1 }, "e\xcc\x81t\xc3\xa9 x" }, /* combining: 0 cols */
        { { "\xf0\x9f\x98\x80!", "x" }, { 3, 1 }, "\xf0\x9f\x98\x80! x" },   /* emoji: 2 cols */
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *got = capture(row_one, &cases[i], &len);

        if (len != strlen(cases[i].want) || memcmp(cases[i].want, got, len) != 0)
            fail_msg("case %zu: got '%.*s', expected '%s'", i, (int)len, got, cases[i].want);
        free(got);
    }
}

/* The columns exactly fill the terminal width (gaps included). */
static void test_table_layout(void **state)
{
    static const int cols[] = { 40, 80, 100, 119, 120, 200, 1000 };
    q_table t;

    (void)state;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        int sum = 0, expect = cols[i] < 80 ? 80 : cols[i];

        q_table_layout(cols[i], &t);
        assert_int_equal(expect >= 120 ? 7 : 6, t.ncols);
        for (int c = 0; c < t.ncols; c++)
            sum += t.width[c] + (c > 0);
        assert_int_equal(expect, sum);
    }
    q_table_layout(80, &t);
    assert_int_equal(20, t.width[Q_T_TIME]);
    assert_int_equal(10, t.width[Q_T_TENANT]);
    assert_int_equal(12, t.width[Q_T_ACTOR]);
    assert_int_equal(14, t.width[Q_T_ACTION]);
    assert_int_equal(12, t.width[Q_T_ENTITY]);
    assert_int_equal(7, t.width[Q_T_OUTCOME]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time_iso),
        cmocka_unit_test(test_parse_time_error_text),
        cmocka_unit_test(test_parse_time_relative),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_time_roundtrip),
        cmocka_unit_test(test_cursor_roundtrip),
        cmocka_unit_test(test_cursor_exact),
        cmocka_unit_test(test_cursor_malformed),
        cmocka_unit_test(test_args_ok),
        cmocka_unit_test(test_args_action_prefix),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_sql_plain),
        cmocka_unit_test(test_sql_everything),
        cmocka_unit_test(test_sql_cursor_ascending),
        cmocka_unit_test(test_csv_field),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_table_cells),
        cmocka_unit_test(test_table_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
