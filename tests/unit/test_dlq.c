/* test_dlq.c -- what `auditqctl dlq` relies on without a server: reading
 * dead-letter records (the worker's own, cmsgpack's, and garbage), the
 * filters, durations, and the text helpers that put untrusted bytes on a
 * terminal or into JSON.
 *
 * The modules under test (tools/ctl_common.c, tools/ctl_dlq_record.c) come
 * from build/lib/libauditqctl.a, through their headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_common.h"
#include "ctl_dlq_record.h"
#include "queue.h"
#include "uuid7.h"

/* Captures what a FILE-writing helper printed. */
typedef struct capture {
    char *buf;
    size_t len;
    FILE *f;
} capture;

static void cap_open(capture *c)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
}

static const char *cap_close(capture *c)
{
    fclose(c->f);
    return c->buf;
}

static void make_job(aq_buf *out, const char *id, uint32_t attempts)
{
    aq_job j;
    memset(&j, 0, sizeof j);
    j.version = 1;
    assert_int_equal(0, uuid_parse(id, 36, j.id));
    j.occurred_at_us = 1767225600000007LL;
    j.priority = AUDITQ_PRIORITY_LOW;
    j.attempts = attempts;
    j.f[AUDITQ_ACTION].p = "page.update";
    j.f[AUDITQ_ACTION].len = 11;
    assert_int_equal(0, codec_encode(&j, out));
}

/* The record exactly as the worker writes it (queue_dead_record). */
static void test_worker_record(void **state)
{
    (void)state;
    aq_buf job = {0}, rec = {0};
    dlq_record r;
    aq_job j;
    char err[160];

    make_job(&job, "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70", 3);
    assert_int_equal(0, queue_dead_record(&rec, job.data, job.len, AUDITQ_PRIORITY_LOW,
                                          "postgres rejected the row 3 times: boom", "23514", 3,
                                          "host:42:abcdef"));
    assert_int_equal(0, dlq_record_parse(rec.data, rec.len, &r, err, sizeof err));
    assert_int_equal(7, r.nf);
    assert_int_equal(job.len, r.job_len);
    assert_memory_equal(job.data, r.job, job.len);
    assert_int_equal(0, r.job_is_str);
    assert_int_equal(strlen("postgres rejected the row 3 times: boom"), r.reason_len);
    assert_memory_equal("postgres rejected the row 3 times: boom", r.reason, r.reason_len);
    assert_int_equal(5, r.sqlstate_len);
    assert_memory_equal("23514", r.sqlstate, 5);
    assert_int_equal(1, r.has_attempts);
    assert_int_equal(3, r.attempts);
    assert_int_equal(1, r.has_failed_at);
    assert_true(r.failed_at_ms > 1700000000000LL);
    assert_int_equal(AUDITQ_PRIORITY_LOW, r.prio);
    assert_memory_equal("host:42:abcdef", r.worker, r.worker_len);
    assert_int_equal(0, codec_decode(r.job, r.job_len, r.job_len, &j, err, sizeof err));
    assert_int_equal(3, j.attempts);
    free(job.data);
    free(rec.data);
}

/* dlq list showed "-" as the event id of every job that does not decode,
 * though most of them name their event: dlq_job_event_id reads it. */
static void test_undecodable_job_event_id(void **state)
{
    /* {"v": 1, "outcome": "maybe", "event_id": "0190f3b2-..."}: refused by
     * the decoder (outcome), event id readable. */
    static const char bad_outcome[] =
        "\x83\xa1v\x01\xa7outcome\xa5maybe\xa8" "event_id\xd9\x24" "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70";
    /* A nested map before event_id: the lenient scan stops there. */
    static const char nested[] =
        "\x82\xa1m\x81\xa1k\x01\xa8" "event_id\xd9\x24" "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70";
    /* event_id that is no UUID. */
    static const char not_uuid[] = "\x81\xa8" "event_id\xa3" "abc";
    uint8_t id[16];
    char text[AUDITQ_ID_SIZE], err[160];
    aq_job j;
    (void)state;

    assert_int_equal(-1, codec_decode(bad_outcome, sizeof bad_outcome - 1, 65536, &j, err, sizeof err));
    assert_int_equal(1, dlq_job_event_id(bad_outcome, sizeof bad_outcome - 1, id));
    uuid_format(id, text);
    assert_string_equal("0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70", text);
    assert_int_equal(0, dlq_job_event_id(nested, sizeof nested - 1, id));
    assert_int_equal(0, dlq_job_event_id(not_uuid, sizeof not_uuid - 1, id));
    assert_int_equal(0, dlq_job_event_id(bad_outcome, 20, id));   /* truncated */
    assert_int_equal(0, dlq_job_event_id("\xc1", 1, id));
    assert_int_equal(0, dlq_job_event_id(NULL, 0, id));
}

/* A crash-looping record as the recover script packs it with cmsgpack:
 * every Lua string is a str (the job too, even if not UTF-8), any order,
 * small ints as positive fixints. Bytes written out by hand. */
static void test_cmsgpack_record(void **state)
{
    (void)state;
    static const unsigned char rec[] = {
        0x86,
        0xa6, 'w', 'o', 'r', 'k', 'e', 'r', 0xa3, 'h', ':', '1',
        0xa3, 'j', 'o', 'b', 0xa3, 0xff, 0x00, 0x81,          /* job: 3 raw bytes as str */
        0xa8, 'a', 't', 't', 'e', 'm', 'p', 't', 's', 0x06,
        0xa9, 'f', 'a', 'i', 'l', 'e', 'd', '_', 'a', 't',
        0xcf, 0x00, 0x00, 0x01, 0x9b, 0x7c, 0x2a, 0x9d, 0x00, /* uint64 */
        0xa8, 'p', 'r', 'i', 'o', 'r', 'i', 't', 'y', 0xa4, 'h', 'i', 'g', 'h',
        0xa6, 'r', 'e', 'a', 's', 'o', 'n', 0xa2, 'c', 'l',
    };
    dlq_record r;
    char err[160];

    assert_int_equal(0, dlq_record_parse((const char *)rec, sizeof rec, &r, err, sizeof err));
    assert_int_equal(1, r.job_is_str);
    assert_int_equal(3, r.job_len);
    assert_memory_equal("\xff\x00\x81", r.job, 3);
    assert_int_equal(6, r.attempts);
    assert_int_equal(0x0000019b7c2a9d00LL, r.failed_at_ms);
    assert_int_equal(AUDITQ_PRIORITY_HIGH, r.prio);
    assert_null(r.sqlstate);
}

/* Hostile records: exact reasons, and no truncation of a valid record is
 * accepted (every length is checked against the bytes present). */
static void test_bad_records(void **state)
{
    (void)state;
    static const struct { const char *bytes; size_t len; const char *err; } cases[] = {
        {"", 0, "empty record"},
        {"this is not msgpack", 19, "not a msgpack map at offset 0"},
        {"\x91\x01", 2, "not a msgpack map at offset 0"},
        {"\xde\x00", 2, "truncated map header at offset 0"},
        {"\xdf\xff\xff\xff\xff", 5, "map declares 4294967295 entries, more than the 32 a record may have"},
        {"\x81\x01\x01", 3, "map key is not a string at offset 2"},
        {"\x81\xa1k\x81\xa1k\x01", 7, "nested map or array at offset 3"},
        {"\x81\xa1k\xc7\x01\x01\x00", 7, "unsupported msgpack type at offset 3"},
        {"\x81\xa1k\xdb\xff\xff\xff\xff", 8, "truncated string at offset 8"},
        {"\x81\xa1k\xc6\x00\x00\x00\x05xy", 10, "truncated binary at offset 8"},
        {"\x81\xa1k\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 12, "integer out of range at offset 3"},
        {"\x81\xa1k\x01\x02", 5, "1 trailing bytes after the record map"},
    };
    dlq_record r;
    char err[160];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(-1, dlq_record_parse(cases[i].bytes, cases[i].len, &r, err, sizeof err));
        assert_string_equal(cases[i].err, err);
    }

    aq_buf job = {0}, rec = {0};
    make_job(&job, "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70", 0);
    assert_int_equal(0, queue_dead_record(&rec, job.data, job.len, 2, "r", NULL, 0, "w"));
    for (size_t n = 0; n < rec.len; n++)
        assert_int_equal(-1, dlq_record_parse(rec.data, n, &r, err, sizeof err));
    free(job.data);
    free(rec.data);
}

static void test_filters(void **state)
{
    (void)state;
    aq_buf job = {0}, rec = {0};
    dlq_record r;
    dlq_filter f;
    aq_job j;
    char err[160];
    const long long now = 1767225600000LL + 3600000; /* the record fails "now" below */

    make_job(&job, "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a4b70", 2);
    assert_int_equal(0, queue_dead_record(&rec, job.data, job.len, AUDITQ_PRIORITY_LOW,
                                          "postgres rejected the row 2 times: Check failed", "23514",
                                          2, "w"));
    assert_int_equal(0, dlq_record_parse(rec.data, rec.len, &r, err, sizeof err));
    r.failed_at_ms = now - 90000; /* 90 s old */
    assert_int_equal(0, codec_decode(r.job, r.job_len, r.job_len, &j, err, sizeof err));

    dlq_filter_init(&f);
    assert_int_equal(0, dlq_filter_active(&f));
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    assert_int_equal(1, dlq_filter_match(&f, NULL, NULL, now)); /* no filter: garbage matches */

    f.reason = "Check failed";
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    f.reason = "check failed"; /* case-sensitive */
    assert_int_equal(0, dlq_filter_match(&f, &r, &j, now));
    assert_int_equal(0, dlq_filter_match(&f, NULL, NULL, now)); /* a filter: garbage does not */
    dlq_filter_init(&f);

    f.sqlstate = "23514";
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    f.sqlstate = "2351";
    assert_int_equal(0, dlq_filter_match(&f, &r, &j, now));
    dlq_filter_init(&f);

    f.priority = AUDITQ_PRIORITY_LOW;
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    f.priority = AUDITQ_PRIORITY_NORMAL;
    assert_int_equal(0, dlq_filter_match(&f, &r, &j, now));
    dlq_filter_init(&f);

    f.older_than_ms = 60000;
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    f.older_than_ms = 90000; /* strictly older */
    assert_int_equal(0, dlq_filter_match(&f, &r, &j, now));
    dlq_filter_init(&f);
    f.newer_than_ms = 120000;
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    f.newer_than_ms = 90000;
    assert_int_equal(0, dlq_filter_match(&f, &r, &j, now));
    dlq_filter_init(&f);

    f.has_event_id = 1;
    assert_int_equal(0, uuid_parse("0190F3B2-5C4E-7A21-9D3B-6C2F1E8A4B70", 36, f.event_id));
    assert_int_equal(1, dlq_filter_match(&f, &r, &j, now));
    assert_int_equal(0, dlq_filter_match(&f, &r, NULL, now)); /* undecodable job */
    f.event_id[15] ^= 1;
    assert_int_equal(0, dlq_filter_match(&f, &r, &j, now));
    free(job.data);
    free(rec.data);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct { const char *s; long long ms; } ok[] = {
        {"30s", 30000}, {"15m", 900000}, {"2h", 7200000}, {"7d", 604800000},
        {"1w", 604800000}, {"250ms", 250}, {"1h30m", 5400000}, {"0s", 0},
    };
    static const char *const bad[] = {"", "30", "s", "-5s", "1.5h", "3x", "5 m", "1h30", "99999999999999999999s",
                                      "9223372036854775807w"};
    char err[256];
    long long ms;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(0, ctl_parse_duration_ms(ok[i].s, &ms, err, sizeof err));
        assert_int_equal(ok[i].ms, ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(-1, ctl_parse_duration_ms(bad[i], &ms, err, sizeof err));
    ctl_parse_duration_ms("30", &ms, err, sizeof err);
    assert_string_equal("'30' is not a duration; use a number and a unit (ms, s, m, h, d, w), "
                        "e.g. 30s, 15m, 2h, 7d or 1h30m", err);
}

static void test_formats(void **state)
{
    (void)state;
    char b[64];

    ctl_fmt_count(b, sizeof b, 0);
    assert_string_equal("0", b);
    ctl_fmt_count(b, sizeof b, 1234567);
    assert_string_equal("1,234,567", b);
    ctl_fmt_count(b, sizeof b, -1000);
    assert_string_equal("-1,000", b);
    ctl_fmt_age_short(b, sizeof b, 59999);
    assert_string_equal("59s", b);
    ctl_fmt_age_short(b, sizeof b, 3599999);
    assert_string_equal("59m", b);
    ctl_fmt_age_short(b, sizeof b, 99 * 86400000LL);
    assert_string_equal("99d", b);
    ctl_fmt_age_short(b, sizeof b, 100 * 86400000LL);
    assert_string_equal("14w", b);
    ctl_fmt_age_short(b, sizeof b, -1);
    assert_string_equal("-", b);
    ctl_fmt_iso(b, sizeof b, 1767225600123LL, 0);
    assert_string_equal("2026-01-01T00:00:00Z", b);
    ctl_fmt_iso(b, sizeof b, 1767225600123LL, 1);
    assert_string_equal("2026-01-01T00:00:00.123Z", b);
}

static void test_json_str(void **state)
{
    (void)state;
    capture c;
    const char in[] = "q\"b\\ t\t n\n \x01 \x7f Grüße \xff\xc0\xaf \xed\xa0\x80 end";

    cap_open(&c);
    ctl_json_str(c.f, in, sizeof in - 1);
    /* Invalid UTF-8 (a stray byte, an overlong, a surrogate) -> U+FFFD per byte. */
    assert_string_equal("\"q\\\"b\\\\ t\\t n\\n \\u0001 \\u007f Grüße \\ufffd\\ufffd\\ufffd "
                        "\\ufffd\\ufffd\\ufffd end\"", cap_close(&c));
    free(c.buf);
    cap_open(&c);
    ctl_json_str(c.f, "a\0b", 3);
    assert_string_equal("\"a\\u0000b\"", cap_close(&c));
    free(c.buf);
}

static void test_put_text(void **state)
{
    (void)state;
    capture c;

    /* Escape sequences never reach the terminal. */
    static const char esc[] = "\x1b[2Jok\n\xff" "é";
    cap_open(&c);
    assert_int_equal(9, ctl_put_text(c.f, esc, sizeof esc - 1, 80));
    assert_string_equal("?[2Jok??é", cap_close(&c));
    free(c.buf);
    /* Truncation counts characters, not bytes, and marks the cut. */
    cap_open(&c);
    assert_int_equal(8, ctl_put_text(c.f, "ééééééééééé", 22, 8));
    assert_string_equal("ééééé...", cap_close(&c));
    free(c.buf);
    cap_open(&c);
    assert_int_equal(8, ctl_put_text(c.f, "12345678", 8, 8));
    assert_string_equal("12345678", cap_close(&c));
    free(c.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_record), cmocka_unit_test(test_cmsgpack_record),
        cmocka_unit_test(test_undecodable_job_event_id),
        cmocka_unit_test(test_bad_records),   cmocka_unit_test(test_filters),
        cmocka_unit_test(test_durations),     cmocka_unit_test(test_formats),
        cmocka_unit_test(test_json_str),      cmocka_unit_test(test_put_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
