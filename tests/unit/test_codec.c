/* test_codec.c -- the job wire format: round trips, exact bytes, and the
 * decoder's precise refusals of hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "uuid7.h"

static aq_str S(const char *s)
{
    aq_str r = {s, (uint32_t)strlen(s)};
    return r;
}

static void make_job(aq_job *j)
{
    memset(j, 0, sizeof *j);
    j->version = 1;
    uuid_parse("0190f0c4-8a9b-7def-8123-456789abcdef", 36, j->id);
    j->occurred_at_us = 1767225600123456LL;
    j->priority = AUDITQ_PRIORITY_HIGH;
    j->f[AUDITQ_ACTION] = S("page.update");
    j->f[AUDITQ_TENANT_ID] = S("acme");
    j->f[AUDITQ_ACTOR_ID] = S("user \"42\"\t\n\\ Grüße");
    j->f[AUDITQ_ACTOR_TYPE] = S("user");
    j->f[AUDITQ_OUTCOME] = S("success");
    j->f[AUDITQ_CHANGES] = S("{\"title\":[\"a\",\"b\"]}");
}

static void test_roundtrip(void **state)
{
    (void)state;
    aq_job j, d;
    aq_buf b = {0};
    char err[200];
    make_job(&j);
    j.attempts = 3;
    assert_int_equal(codec_encode(&j, &b), 0);
    assert_int_equal(codec_decode(b.data, b.len, 65536, &d, err, sizeof err), 0);
    assert_memory_equal(d.id, j.id, 16);
    assert_int_equal(d.occurred_at_us, j.occurred_at_us);
    assert_int_equal(d.priority, AUDITQ_PRIORITY_HIGH);
    assert_int_equal(d.attempts, 3);
    for (int f = 1; f < AUDITQ_FIELD_COUNT; f++) {
        if (!j.f[f].p) {
            assert_null(d.f[f].p);
            continue;
        }
        assert_int_equal(d.f[f].len, j.f[f].len);
        assert_memory_equal(d.f[f].p, j.f[f].p, j.f[f].len);
    }
    free(b.data);
}

/* The exact bytes of a minimal job: what docs/PROTOCOL.md shows. */
static void test_exact_bytes(void **state)
{
    (void)state;
    aq_job j;
    aq_buf b = {0};
    memset(&j, 0, sizeof j);
    uuid_parse("0190f0c4-8a9b-7def-8123-456789abcdef", 36, j.id);
    j.occurred_at_us = 1;
    j.priority = AUDITQ_PRIORITY_LOW;
    j.f[AUDITQ_ACTION] = S("a.b");
    assert_int_equal(codec_encode(&j, &b), 0);
    static const char want[] =
        "\x85"
        "\xa1v\x01"
        "\xa8" "event_id" "\xd9\x24" "0190f0c4-8a9b-7def-8123-456789abcdef"
        "\xab" "occurred_at" "\x01"
        "\xa8" "priority" "\xa3" "low"
        "\xa6" "action" "\xa3" "a.b";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, sizeof want - 1);
    free(b.data);
}

typedef struct bad_case {
    const char *name;
    const char *bytes;
    size_t len;
    const char *reason;
} bad_case;

#define B(lit) lit, sizeof(lit) - 1
/* A valid prefix: map header of n entries, then v=1. */
#define ID "\xa8" "event_id" "\xd9\x24" "0190f0c4-8a9b-7def-8123-456789abcdef"
#define TS "\xab" "occurred_at" "\xcf\x00\x06\x47\x48\x46\x20\x40\x00"
#define ACT "\xa6" "action" "\xa1" "x"

static const bad_case bad_cases[] = {
    {"empty", B(""), "empty job"},
    {"not a map", B("\x93\x01\x02\x03"), "job is not a msgpack map at offset 0"},
    {"garbage", B("hello"), "job is not a msgpack map at offset 0"},
    {"truncated map16 header", B("\xde\x00"), "truncated map header at offset 0"},
    {"map32 claims 4G entries", B("\xdf\xff\xff\xff\xff"), "map declares 4294967295 entries, more than the limit of 64"},
    {"more entries than bytes", B("\x8f\xa1v\x01"), "truncated job: map declares more entries than bytes present at offset 1"},
    {"str32 claims 4 GB", B("\x84\xa1v\x01\xa6" "action\xdb\xff\xff\xff\xff" "abc" ID TS),
     "truncated string (declared length exceeds job) at offset 16"},
    {"nested map", B("\x84\xa1v\x01\xa8" "metadata\x81\xa1x\x01" ID TS), "nested map or array not allowed at offset 13"},
    {"nested array", B("\x84\xa1v\x01\xa1x\x91\x01" ID TS), "nested map or array not allowed at offset 6"},
    {"float", B("\x84\xa1v\x01\xa1x\xcb\x00\x00\x00\x00\x00\x00\x00\x00" ID TS), "float not allowed at offset 6"},
    {"ext type", B("\x84\xa1v\x01\xa1x\xd4\x01\x01" ID TS), "unsupported msgpack type at offset 6"},
    {"key not a string", B("\x82\x01\x01\xa1v\x01"), "map key is not a string at offset 2"},
    {"wrong version", B("\x84\xa1v\x02" ID TS ACT), "key v: unsupported schema version 2 (this worker reads 1)"},
    {"version as string", B("\x84\xa1v\xa1" "1" ID TS ACT), "key v: schema version must be a positive integer"},
    {"missing action", B("\x83\xa1v\x01" ID TS), "missing required key action"},
    {"missing event_id", B("\x83\xa1v\x01" TS ACT), "missing required key event_id"},
    {"missing v", B("\x83" ID TS ACT), "missing required key v"},
    {"nil event_id", B("\x84\xa1v\x01\xa8" "event_id\xc0" TS ACT), "missing required key event_id"},
    {"signed v = 0", B("\x84\xa1v\xd0\x00" ID TS ACT), "key v: schema version must be a positive integer"},
    {"action nil", B("\x84\xa1v\x01" ID TS "\xa6" "action\xc0"), "missing required key action"},
    {"empty action", B("\x84\xa1v\x01" ID TS "\xa6" "action\xa0"), "action: must not be empty"},
    {"duplicate key", B("\x85\xa1v\x01" ID TS ACT ACT), "duplicate key action"},
    {"bad uuid", B("\x84\xa1v\x01\xa8" "event_id\xa3" "abc" TS ACT), "event_id: not a UUID in 8-4-4-4-12 hex form"},
    {"negative time", B("\x84\xa1v\x01" ID "\xab" "occurred_at\xff" ACT),
     "key occurred_at: -1 is outside 1970..9999 (microseconds since epoch)"},
    {"time as string", B("\x84\xa1v\x01" ID "\xab" "occurred_at\xa1" "1" ACT),
     "key occurred_at: must be an integer (microseconds since epoch)"},
    {"bad priority", B("\x85\xa1v\x01" ID TS ACT "\xa8" "priority\xa4" "urgh"),
     "key priority: must be one of critical, high, normal, low"},
    {"invalid utf8", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xa2\xc3\x28"), "tenant_id: invalid UTF-8 at byte 0"},
    {"NUL byte", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xa3" "a\x00" "b"), "tenant_id: NUL byte at byte 1"},
    {"bad actor_type", B("\x85\xa1v\x01" ID TS ACT "\xaa" "actor_type\xa5" "robot"),
     "actor_type: 'robot' is not one of user, service, ai, system"},
    {"bad outcome", B("\x85\xa1v\x01" ID TS ACT "\xa7" "outcome\xa2" "ok"),
     "outcome: 'ok' is not one of success, failure, denied"},
    {"invalid json", B("\x85\xa1v\x01" ID TS ACT "\xa7" "changes\xa3{a}"),
     "changes: invalid JSON object: offset 1: expected string key, got 'a'"},
    {"json array", B("\x85\xa1v\x01" ID TS ACT "\xa8" "metadata\xa2[]"),
     "metadata: invalid JSON object: offset 0: expected '{' (top level must be a JSON object)"},
    {"text field as int", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\x05"), "key tenant_id: must be a string"},
    {"trailing bytes", B("\x84\xa1v\x01" ID TS ACT "\x00"), "1 trailing bytes after the job map"},
};

static void test_bad_inputs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        aq_job j;
        char err[256] = "";
        int rc = codec_decode(c->bytes, c->len, 65536, &j, err, sizeof err);
        if (rc != -1 || strcmp(err, c->reason) != 0)
            fail_msg("case '%s': rc=%d reason '%s', expected '%s'", c->name, rc, err, c->reason);
    }
}

static void test_valid_variants(void **state)
{
    (void)state;
    aq_job j;
    char err[256];
    /* Minimal job; unknown scalar keys ignored; nil optional field = absent. */
    static const char minimal[] = "\x84\xa1v\x01" ID TS ACT;
    assert_int_equal(codec_decode(minimal, sizeof minimal - 1, 65536, &j, err, sizeof err), 0);
    assert_int_equal(j.priority, AUDITQ_PRIORITY_NORMAL);
    assert_int_equal(j.occurred_at_us, 1767225600000000LL);
    static const char extra[] = "\x86\xa1v\x01" ID TS ACT "\xa5" "extra\xc3" "\xa9" "tenant_id\xc0";
    assert_int_equal(codec_decode(extra, sizeof extra - 1, 65536, &j, err, sizeof err), 0);
    assert_null(j.f[AUDITQ_TENANT_ID].p);
    /* v and attempts as signed int64 (Go's default encoding) are accepted. */
    static const char go[] = "\x85\xa1v\xd3\x00\x00\x00\x00\x00\x00\x00\x01" ID TS ACT "\xa8" "attempts\xd0\x02";
    assert_int_equal(codec_decode(go, sizeof go - 1, 65536, &j, err, sizeof err), 0);
    assert_int_equal(j.version, 1);
    assert_int_equal(j.attempts, 2);
    /* Size cap: the same job is refused when max_bytes is smaller. */
    assert_int_equal(codec_decode(minimal, sizeof minimal - 1, 10, &j, err, sizeof err), -1);
    assert_string_equal(err, "job is 81 bytes, larger than max_job_bytes=10");
}

/* Every prefix of a valid job is refused without reading past it (run
 * under valgrind/ASan this proves no over-read). */
static void test_every_truncation(void **state)
{
    (void)state;
    aq_job j;
    aq_buf b = {0};
    char err[256];
    make_job(&j);
    assert_int_equal(codec_encode(&j, &b), 0);
    for (size_t n = 0; n < b.len; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        aq_job d;
        assert_int_equal(codec_decode(copy, n, 65536, &d, err, sizeof err), -1);
        free(copy);
    }
    free(b.data);
}

static void test_check_field(void **state)
{
    (void)state;
    char err[200];
    char longid[300];
    memset(longid, 'x', sizeof longid);
    assert_int_equal(codec_check_field(AUDITQ_TENANT_ID, longid, 257, err, sizeof err), AUDITQ_ERR_TOO_LARGE);
    assert_string_equal(err, "tenant_id: 257 bytes, longer than the limit of 256");
    assert_int_equal(codec_check_field(AUDITQ_TENANT_ID, longid, 256, err, sizeof err), AUDITQ_OK);
    assert_int_equal(codec_check_field(AUDITQ_CHANGES, "{\"a\":1", 6, err, sizeof err), AUDITQ_ERR_INVALID_JSON);
    assert_string_equal(err, "changes: invalid JSON object: offset 6: unexpected end of input");
    assert_int_equal(codec_check_field(AUDITQ_ACTOR_TYPE, "ai", 2, err, sizeof err), AUDITQ_OK);
    assert_int_equal(codec_priority_parse("low", 3), 3);
    assert_int_equal(codec_priority_parse("lo", 2), -1);
    assert_string_equal(codec_priority_name(0), "critical");
    assert_null(codec_priority_name(4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_bad_inputs),      cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_every_truncation), cmocka_unit_test(test_check_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
