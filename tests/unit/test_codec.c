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
#include "text.h"
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
    {"array32 claims 4G elements", B("\xdd\xff\xff\xff\xff"), "job is not a msgpack map at offset 0"},
    {"more entries than bytes", B("\x8f\xa1v\x01"), "truncated job: map declares more entries than bytes present at offset 1"},
    {"str32 claims 4 GB", B("\x84\xa1v\x01\xa6" "action\xdb\xff\xff\xff\xff" "abc" ID TS),
     "truncated string (declared length exceeds job) at offset 16"},
    {"bin32 claims 4 GB", B("\x84\xa1v\x01\xa1x\xc6\xff\xff\xff\xff" ID TS),
     "truncated binary (declared length exceeds job) at offset 11"},
    {"str32 key claims 4 GB", B("\x84\xa1v\x01\xdb\xff\xff\xff\xff" ID TS),
     "truncated string (declared length exceeds job) at offset 9"},
    {"truncated str16 length", B("\x82\xa1v\x01\xda\x00"), "truncated length at offset 4"},
    {"truncated uint64", B("\x82\xa1v\xcf\x00\x00"), "truncated integer at offset 3"},
    {"value missing", B("\x81\xa1v"), "truncated job: value expected at offset 3"},
    /* Containers and other non-scalars as values: refused at their first
     * byte, naming the key, whatever they declare and however deep. */
    {"metadata as msgpack map", B("\x84\xa1v\x01\xa8" "metadata\x81\xa1x\x01" ID TS),
     "key metadata: must be a string of JSON text, got msgpack map at offset 13"},
    {"changes as msgpack array", B("\x84\xa1v\x01\xa7" "changes\x92\x01\x02" ID TS),
     "key changes: must be a string of JSON text, got msgpack array at offset 12"},
    {"unknown key holds an array", B("\x84\xa1v\x01\xa1x\x91\x01" ID TS),
     "key x: msgpack array not allowed (a job holds only nil, bool, int, str and bin values) at offset 6"},
    {"array32 value claims 4G elements", B("\x84\xa1v\x01\xa1x\xdd\xff\xff\xff\xff" ID TS),
     "key x: msgpack array not allowed (a job holds only nil, bool, int, str and bin values) at offset 6"},
    {"map32 value claims 4G entries", B("\x84\xa1v\x01\xa6" "action\xdf\xff\xff\xff\xff" ID TS),
     "key action: must be a string, got msgpack map at offset 11"},
    {"float", B("\x84\xa1v\x01\xa1x\xcb\x00\x00\x00\x00\x00\x00\x00\x00" ID TS),
     "key x: msgpack float not allowed (a job holds only nil, bool, int, str and bin values) at offset 6"},
    {"ext type", B("\x84\xa1v\x01\xa1x\xd4\x01\x01" ID TS),
     "key x: msgpack ext not allowed (a job holds only nil, bool, int, str and bin values) at offset 6"},
    {"never-used byte 0xc1", B("\x84\xa1v\x01\xa1x\xc1" ID TS),
     "key x: msgpack byte 0xc1 not allowed (a job holds only nil, bool, int, str and bin values) at offset 6"},
    {"float occurred_at", B("\x84\xa1v\x01" ID "\xab" "occurred_at\xcb\x41\xd9\x00\x00\x00\x00\x00\x00" ACT),
     "key occurred_at: must be an integer (microseconds since epoch), got msgpack float at offset 63"},
    /* Keys. */
    {"int key", B("\x82\x01\x01\xa1v\x01"), "map key is not a string (msgpack int) at offset 1"},
    {"bin key", B("\x81\xc4\x01v\x01"), "map key is not a string (msgpack bin) at offset 1"},
    {"nil key", B("\x81\xc0\x01"), "map key is not a string (msgpack nil) at offset 1"},
    {"map as key", B("\x81\x81\xa1v\x01\x01"), "map key is not a string (msgpack map) at offset 1"},
    {"unknown key invalid UTF-8", B("\x85\xa1v\x01" ID TS ACT "\xa2\xc3\x28\x01"),
     "map key at offset 81: invalid UTF-8 at byte 0"},
    {"unknown key with NUL", B("\x85\xa1v\x01" ID TS ACT "\xa3k\x00k\x01"), "map key at offset 81: NUL byte at byte 1"},
    {"duplicate key", B("\x85\xa1v\x01" ID TS ACT ACT), "duplicate key action"},
    {"duplicate unknown key", B("\x86\xa1v\x01" ID TS ACT "\xa5" "extra\x01\xa5" "extra\xc3"), "duplicate key extra"},
    {"duplicate unknown key, escaped", B("\x86\xa1v\x01" ID TS ACT "\xa4\x1b[2J\x01\xa4\x1b[2J\x01"),
     "duplicate key \\x1b[2J"},
    {"duplicate unknown key with a backslash", B("\x86\xa1v\x01" ID TS ACT
        "\xb0" "0123456789abcde\\" "\x01" "\xb0" "0123456789abcde\\" "\x01"),
     "duplicate key 0123456789abcde\\\\"},
    {"duplicate long unknown key, cut", B("\x86\xa1v\x01" ID TS ACT
        "\xd9\x28" "0123456789012345678901234567890123456789" "\x01"
        "\xd9\x28" "0123456789012345678901234567890123456789" "\x01"),
     "duplicate key 01234567890123456789012345678901..."},
    {"nil event_id then event_id", B("\x85\xa1v\x01\xa8" "event_id\xc0" ID TS ACT), "duplicate key event_id"},
    /* Known keys of the wrong type or value. */
    {"wrong version", B("\x84\xa1v\x02" ID TS ACT), "key v: unsupported schema version 2 (this worker reads 1)"},
    {"version uint64 max", B("\x84\xa1v\xcf\xff\xff\xff\xff\xff\xff\xff\xff" ID TS ACT),
     "key v: unsupported schema version 18446744073709551615 (this worker reads 1)"},
    {"version 0", B("\x84\xa1v\x00" ID TS ACT), "key v: schema version must be a positive integer, got 0"},
    {"signed v = 0", B("\x84\xa1v\xd0\x00" ID TS ACT), "key v: schema version must be a positive integer, got 0"},
    {"version -5", B("\x84\xa1v\xfb" ID TS ACT), "key v: schema version must be a positive integer, got -5"},
    {"version as string", B("\x84\xa1v\xa1" "1" ID TS ACT),
     "key v: schema version must be a positive integer, got msgpack str at offset 3"},
    {"version nil", B("\x84\xa1v\xc0" ID TS ACT),
     "key v: schema version must be a positive integer, got msgpack nil at offset 3"},
    {"missing action", B("\x83\xa1v\x01" ID TS), "missing required key action"},
    {"missing event_id", B("\x83\xa1v\x01" TS ACT), "missing required key event_id"},
    {"missing v", B("\x83" ID TS ACT), "missing required key v"},
    {"missing occurred_at", B("\x83\xa1v\x01" ID ACT), "missing required key occurred_at"},
    {"nil event_id", B("\x84\xa1v\x01\xa8" "event_id\xc0" TS ACT), "missing required key event_id"},
    {"action nil", B("\x84\xa1v\x01" ID TS "\xa6" "action\xc0"), "missing required key action"},
    {"empty action", B("\x84\xa1v\x01" ID TS "\xa6" "action\xa0"), "action: must not be empty"},
    {"bad uuid", B("\x84\xa1v\x01\xa8" "event_id\xa3" "abc" TS ACT), "event_id: not a UUID in 8-4-4-4-12 hex form"},
    {"negative time", B("\x84\xa1v\x01" ID "\xab" "occurred_at\xff" ACT),
     "key occurred_at: -1 is outside 1970..9999 (microseconds since epoch)"},
    {"time uint64 max", B("\x84\xa1v\x01" ID "\xab" "occurred_at\xcf\xff\xff\xff\xff\xff\xff\xff\xff" ACT),
     "key occurred_at: 18446744073709551615 is outside 1970..9999 (microseconds since epoch)"},
    {"time as string", B("\x84\xa1v\x01" ID "\xab" "occurred_at\xa1" "1" ACT),
     "key occurred_at: must be an integer (microseconds since epoch), got msgpack str at offset 63"},
    {"bad priority", B("\x85\xa1v\x01" ID TS ACT "\xa8" "priority\xa4" "urgh"),
     "key priority: must be one of critical, high, normal, low, got 'urgh'"},
    {"priority nil", B("\x85\xa1v\x01" ID TS ACT "\xa8" "priority\xc0"),
     "key priority: must be one of critical, high, normal, low, got msgpack nil at offset 90"},
    {"priority as int", B("\x85\xa1v\x01" ID TS ACT "\xa8" "priority\x01"),
     "key priority: must be one of critical, high, normal, low, got msgpack int at offset 90"},
    {"attempts negative", B("\x85\xa1v\x01" ID TS ACT "\xa8" "attempts\xff"),
     "key attempts: must be an integer 0..1000000, got -1"},
    {"attempts too many", B("\x85\xa1v\x01" ID TS ACT "\xa8" "attempts\xce\x00\x0f\x42\x41"),
     "key attempts: must be an integer 0..1000000, got 1000001"},
    {"attempts as bool", B("\x85\xa1v\x01" ID TS ACT "\xa8" "attempts\xc3"),
     "key attempts: must be an integer 0..1000000, got msgpack bool at offset 90"},
    /* Text fields. */
    {"invalid utf8", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xa2\xc3\x28"), "tenant_id: invalid UTF-8 at byte 0"},
    {"overlong utf8", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xa2\xc0\xaf"), "tenant_id: invalid UTF-8 at byte 0"},
    {"surrogate utf8", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xa4" "a\xed\xa0\x80"),
     "tenant_id: invalid UTF-8 at byte 1"},
    {"NUL byte", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xa3" "a\x00" "b"), "tenant_id: NUL byte at byte 1"},
    {"NUL byte in action", B("\x84\xa1v\x01" ID TS "\xa6" "action\xa3" "a\x00" "b"), "action: NUL byte at byte 1"},
    {"bad actor_type", B("\x85\xa1v\x01" ID TS ACT "\xaa" "actor_type\xa5" "robot"),
     "actor_type: 'robot' is not one of user, service, ai, system"},
    {"actor_type escaped", B("\x85\xa1v\x01" ID TS ACT "\xaa" "actor_type\xa7" "\x1b[2J\\\x7f\t"),
     "actor_type: '\\x1b[2J\\\\\\x7f\\x09' is not one of user, service, ai, system"},
    {"actor_type C1 control", B("\x85\xa1v\x01" ID TS ACT "\xaa" "actor_type\xa3" "\xc2\x9b" "m"),
     "actor_type: '\\xc2\\x9bm' is not one of user, service, ai, system"},
    /* 31 ASCII bytes then a 2-byte character: cut before it, not inside. */
    {"actor_type cut on a character boundary", B("\x85\xa1v\x01" ID TS ACT "\xaa" "actor_type\xd9\x21"
        "0123456789012345678901234567890\xc3\xa9"),
     "actor_type: '0123456789012345678901234567890...' is not one of user, service, ai, system"},
    {"bad outcome", B("\x85\xa1v\x01" ID TS ACT "\xa7" "outcome\xa2" "ok"),
     "outcome: 'ok' is not one of success, failure, denied"},
    {"invalid json", B("\x85\xa1v\x01" ID TS ACT "\xa7" "changes\xa3{a}"),
     "changes: invalid JSON object: offset 1: expected string key, got 'a'"},
    {"json array", B("\x85\xa1v\x01" ID TS ACT "\xa8" "metadata\xa2[]"),
     "metadata: invalid JSON object: offset 0: expected '{' (top level must be a JSON object)"},
    {"json raw NUL", B("\x85\xa1v\x01" ID TS ACT "\xa8" "metadata\xa8{\"a\":\"\x00\"}"),
     "metadata: invalid JSON object: offset 6: unescaped control character 0x00 in string"},
    {"json invalid UTF-8", B("\x85\xa1v\x01" ID TS ACT "\xa8" "metadata\xa8{\"a\":\"\xff\"}"),
     "metadata: invalid JSON object: offset 6: invalid UTF-8 in string"},
    {"json truncated", B("\x85\xa1v\x01" ID TS ACT "\xa7" "changes\xa5{\"a\":"),
     "changes: invalid JSON object: offset 5: unexpected end of input"},
    {"text field as int", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\x05"),
     "key tenant_id: must be a string, got msgpack int at offset 91"},
    {"text field as bin", B("\x85\xa1v\x01" ID TS ACT "\xa9" "tenant_id\xc4\x01x"),
     "key tenant_id: must be a string, got msgpack bin at offset 91"},
    {"event_id as bin", B("\x84\xa1v\x01\xa8" "event_id\xc4\x10" "0123456789abcdef" TS ACT),
     "key event_id: must be a string, got msgpack bin at offset 13"},
    {"trailing bytes", B("\x84\xa1v\x01" ID TS ACT "\x00"), "1 trailing bytes after the job map"},
};

/* A reason goes into a dead-letter record (a msgpack str), a log line and
 * a terminal: it must be valid UTF-8 without control characters. */
static void assert_printable(const char *name, const char *s)
{
    size_t bad;
    if (!text_utf8_valid(s, strlen(s), &bad))
        fail_msg("case '%s': reason is not valid UTF-8 at byte %zu", name, bad);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            fail_msg("case '%s': reason holds control byte 0x%02x", name, (unsigned char)*p);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        aq_job j;
        char err[256] = "";
        /* An exactly-sized heap copy: ASan sees any read past the job. */
        char *copy = malloc(c->len ? c->len : 1);
        memcpy(copy, c->bytes, c->len);
        int rc = codec_decode(copy, c->len, 65536, &j, err, sizeof err);
        free(copy);
        if (rc != -1 || strcmp(err, c->reason) != 0) {
            print_error("case '%s': rc=%d reason '%s'\n%*s expected '%s'\n", c->name, rc, err,
                        (int)strlen(c->name) + 6, "", c->reason);
            failures++;
        }
        assert_printable(c->name, err);
    }
    assert_int_equal(failures, 0);
}

/* Nesting cannot recurse: 100000 nested arrays (and as many maps) are
 * refused at the first one, in the time it takes to read one byte. */
static void test_deep_nesting(void **state)
{
    (void)state;
    const size_t depth = 100000;
    static const char head[] = "\x84\xa1v\x01" ID TS "\xa1x";
    size_t n = sizeof head - 1 + depth + 1;
    char *buf = malloc(n);
    char err[256];
    aq_job j;
    for (int m = 0; m < 2; m++) {
        memcpy(buf, head, sizeof head - 1);
        memset(buf + sizeof head - 1, m ? 0x81 : 0x91, depth);
        buf[n - 1] = 0x01;
        assert_int_equal(codec_decode(buf, n, 1 << 20, &j, err, sizeof err), -1);
        assert_string_equal(err, m ? "key x: msgpack map not allowed (a job holds only nil, bool, int, str and bin "
                                     "values) at offset 74"
                                   : "key x: msgpack array not allowed (a job holds only nil, bool, int, str and "
                                     "bin values) at offset 74");
    }
    free(buf);
}

/* JSON in changes/metadata: nesting is limited to JSON_MAX_DEPTH (64). */
static void test_json_depth(void **state)
{
    (void)state;
    static const int depths[] = {64, 65, 100000};
    for (size_t di = 0; di < sizeof depths / sizeof depths[0]; di++) {
        int depth = depths[di];
        /* {"a":[[[...]]]} with `depth` containers in all */
        size_t jl = 5 + 2 * (size_t)(depth - 1) + 1;
        size_t n = 4 + sizeof(ID) - 1 + sizeof(TS) - 1 + sizeof(ACT) - 1 + 8 + 5 + jl;
        char *buf = malloc(n), *p = buf;
        char err[256];
        aq_job j;
        memcpy(p, "\x85\xa1v\x01" ID TS ACT "\xa7" "changes\xdb", 4 + sizeof(ID) - 1 + sizeof(TS) - 1 + sizeof(ACT) - 1 + 9);
        p += 4 + sizeof(ID) - 1 + sizeof(TS) - 1 + sizeof(ACT) - 1 + 9;
        *p++ = (char)(jl >> 24);
        *p++ = (char)(jl >> 16);
        *p++ = (char)(jl >> 8);
        *p++ = (char)jl;
        memcpy(p, "{\"a\":", 5);
        memset(p + 5, '[', (size_t)depth - 1);
        memset(p + 5 + depth - 1, ']', (size_t)depth - 1);
        p[jl - 1] = '}';
        assert_int_equal((size_t)(p + jl - buf), n);
        int rc = codec_decode(buf, n, 1 << 20, &j, err, sizeof err);
        if (depth == 64) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            assert_string_equal(err, "changes: invalid JSON object: offset 68: nesting deeper than 64");
        }
        free(buf);
    }
}

/* max_job_bytes, and the slack that lets a worker's re-encoding of a job
 * near the cap (attempts and priority added) be fetched again. */
static void test_size_cap(void **state)
{
    (void)state;
    aq_job j, d;
    aq_buf b = {0}, r = {0};
    char err[256];
    static const char minimal[] = "\x84\xa1v\x01" ID TS ACT; /* 81 bytes, no priority */
    assert_int_equal(sizeof minimal - 1, 81);
    /* Far over: refused before anything is read. */
    assert_int_equal(codec_decode(minimal, 81, 10, &j, err, sizeof err), -1);
    assert_string_equal(err, "job is 81 bytes, larger than max_job_bytes=10");
    /* Over by less than the slack, attempts 0: refused with the same reason. */
    assert_int_equal(codec_decode(minimal, 81, 80, &j, err, sizeof err), -1);
    assert_string_equal(err, "job is 81 bytes, larger than max_job_bytes=80");
    /* ... but an invalid job over the cap by less than the slack gets the
     * reason found while reading it (also true). */
    static const char bad[] = "\x84\xa1v\x02" ID TS ACT;
    assert_int_equal(codec_decode(bad, 81, 80, &j, err, sizeof err), -1);
    assert_string_equal(err, "key v: unsupported schema version 2 (this worker reads 1)");
    /* Exactly at the cap: accepted; its retry re-encoding is 34 bytes
     * longer (priority, attempts) and is accepted under the same cap. */
    assert_int_equal(codec_decode(minimal, 81, 81, &j, err, sizeof err), 0);
    j.attempts = 1;
    assert_int_equal(codec_encode(&j, &b), 0);
    assert_int_equal(b.len, 81 + 16 + 10);
    assert_int_equal(codec_decode(b.data, b.len, 81, &d, err, sizeof err), 0);
    assert_int_equal(d.attempts, 1);
    /* The most a re-encoding grows: priority "critical" (+18), attempts as
     * uint32 (+14), 15 entries -> map16 (+2) = 34 < CODEC_REENCODE_SLACK. */
    d.attempts = 1000000;
    d.priority = AUDITQ_PRIORITY_CRITICAL;
    assert_int_equal(codec_encode(&d, &r), 0);
    assert_int_equal(r.len, 81 + 18 + 14);
    assert_true(r.len - 81 <= CODEC_REENCODE_SLACK);
    /* Over cap + slack: refused even with attempts set. */
    assert_int_equal(codec_decode(r.data, r.len, r.len - CODEC_REENCODE_SLACK - 1, &d, err, sizeof err), -1);
    free(b.data);
    free(r.data);
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
        cmocka_unit_test(test_deep_nesting),    cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_size_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
