/* test_retention.c -- unit tests for the pure parts of common/retention.c:
 * the policy (retention_plan), month arithmetic, JSON strings, manifest
 * parsing and the gzip + sha256 file writer. The PostgreSQL side is
 * covered by tests/integration/it_75_partitions.sh and it_76_retention.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "retention.h"

#define NOV_2026 (2026 * 12 + 10)

static retention_part mk(int loc, int month)
{
    retention_part p;

    memset(&p, 0, sizeof p);
    p.location = loc;
    p.month = month;
    p.recv_month = -1;
    snprintf(p.schema, sizeof p.schema, "%s", loc == RET_LOC_ARCHIVE ? "auditq_archive" : "public");
    if (month >= 0)
        snprintf(p.name, sizeof p.name, "audit_events_%04d_%02d", month / 12, month % 12 + 1);
    else
        snprintf(p.name, sizeof p.name, "%s", loc == RET_LOC_DEFAULT ? "audit_events_default" : "odd");
    return p;
}

/* "A3 E3 D0 M5": action letter + part index, for exact comparisons. */
static void plan_str(const retention_part *parts, size_t n, int mode, int hot, int retain, char *out,
                     size_t outlen)
{
    retention_action acts[256];
    size_t k = retention_plan(parts, n, NOV_2026, hot, retain, mode, acts, 256);
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < k && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s%c%zu", i > 0 ? " " : "",
                                "AMEDS"[acts[i].kind], acts[i].part);
}

static void test_months(void **state)
{
    char s[16];
    (void)state;

    assert_int_equal(retention_hot_from(NOV_2026, 3), 2026 * 12 + 8);
    assert_int_equal(retention_hot_from(NOV_2026, 1), NOV_2026);
    assert_int_equal(retention_keep_from(NOV_2026, 24), 2024 * 12 + 11);
    retention_month_label(retention_hot_from(NOV_2026, 3), s, sizeof s);
    assert_string_equal(s, "2026-09");
    retention_month_label(retention_keep_from(NOV_2026, 24), s, sizeof s);
    assert_string_equal(s, "2024-12");
    retention_month_label(retention_hot_from(2027 * 12 + 0, 2), s, sizeof s);
    assert_string_equal(s, "2026-12");
    retention_month_label(-1, s, sizeof s);
    assert_string_equal(s, "-");
}

/* Months -30..+3 hot, plus DEFAULT and a non-monthly partition: schema
 * mode drops -30..-24 (before 2024-12), archives -23..-3, keeps the rest. */
static void test_plan_schema(void **state)
{
    retention_part parts[40];
    char got[1024], want[1024];
    size_t n = 0, len = 0;
    (void)state;

    for (int m = -30; m <= 3; m++)
        parts[n++] = mk(RET_LOC_HOT, NOV_2026 + m);
    parts[n++] = mk(RET_LOC_HOT, -1);
    parts[n++] = mk(RET_LOC_DEFAULT, -1);
    want[0] = '\0';
    for (int i = 0; i <= 6; i++)
        len += (size_t)snprintf(want + len, sizeof want - len, "%sD%d", i ? " " : "", i);
    for (int i = 7; i <= 27; i++)
        len += (size_t)snprintf(want + len, sizeof want - len, " A%d", i);
    plan_str(parts, n, ARCHIVE_SCHEMA, 3, 24, got, sizeof got);
    assert_string_equal(got, want);

    /* Second run: the archived months are in the archive now; nothing. */
    n = 0;
    for (int m = -23; m <= -3; m++)
        parts[n++] = mk(RET_LOC_ARCHIVE, NOV_2026 + m);
    for (int m = -2; m <= 3; m++)
        parts[n++] = mk(RET_LOC_HOT, NOV_2026 + m);
    plan_str(parts, n, ARCHIVE_SCHEMA, 3, 24, got, sizeof got);
    assert_string_equal(got, "");

    /* A month later: the oldest archived month is dropped, -2 archived. */
    plan_str(parts, n, ARCHIVE_SCHEMA, 3, 23, got, sizeof got);
    assert_string_equal(got, "D0");
    plan_str(parts, n, ARCHIVE_SCHEMA, 2, 24, got, sizeof got);
    assert_string_equal(got, "A21");
}

/* csv mode: a hot month is archived then exported; an archived month is
 * exported; anything before keep_from is dropped without export. */
static void test_plan_csv(void **state)
{
    retention_part parts[8];
    char got[256];
    size_t n = 0;
    (void)state;

    parts[n++] = mk(RET_LOC_ARCHIVE, NOV_2026 - 30);   /* 0: too old: drop */
    parts[n++] = mk(RET_LOC_HOT, NOV_2026 - 25);       /* 1: too old: drop */
    parts[n++] = mk(RET_LOC_ARCHIVE, NOV_2026 - 10);   /* 2: export */
    parts[n++] = mk(RET_LOC_HOT, NOV_2026 - 3);        /* 3: archive + export */
    parts[n++] = mk(RET_LOC_ARCHIVE, NOV_2026 - 1);    /* 4: in the archive though hot-aged: export */
    parts[n++] = mk(RET_LOC_HOT, NOV_2026 - 2);        /* 5: hot: stays */
    parts[n++] = mk(RET_LOC_DEFAULT, -1);
    plan_str(parts, n, ARCHIVE_CSV, 3, 24, got, sizeof got);
    assert_string_equal(got, "D0 D1 E2 A3 E3 E4");
    plan_str(parts, n, ARCHIVE_SCHEMA, 3, 24, got, sizeof got);
    assert_string_equal(got, "D0 D1 A3");
}

/* Late rows of an archived month (a hot table of the same name): merged in
 * schema mode; in csv mode the archived one is exported first (list order:
 * archived before hot), then the hot one archived and exported. */
static void test_plan_late_rows(void **state)
{
    retention_part parts[3];
    char got[256];
    (void)state;

    parts[0] = mk(RET_LOC_ARCHIVE, NOV_2026 - 5);
    parts[1] = mk(RET_LOC_HOT, NOV_2026 - 5);
    parts[2] = mk(RET_LOC_HOT, NOV_2026 - 4);
    plan_str(parts, 3, ARCHIVE_SCHEMA, 3, 24, got, sizeof got);
    assert_string_equal(got, "M1 A2");
    plan_str(parts, 3, ARCHIVE_CSV, 3, 24, got, sizeof got);
    assert_string_equal(got, "E0 A1 E1 A2 E2");
    /* Both too old: both dropped, no merge; the month after is archived. */
    plan_str(parts, 3, ARCHIVE_SCHEMA, 3, 5, got, sizeof got);
    assert_string_equal(got, "D0 D1 A2");
}

/* A month is planned by the later of its occurred_at month and the month
 * its newest row was received (recv_month): received within hot_months it
 * stays hot (skipped), within retain_months it is not dropped (skipped,
 * then archived as a month of that age would be). hot 3 / retain 24 in
 * Nov 2026: hot_from = Sep 2026, keep_from = Dec 2024. */
static void test_plan_received(void **state)
{
    retention_part parts[8];
    char got[256];
    (void)state;

    parts[0] = mk(RET_LOC_HOT, 2020 * 12 + 2);      /* 2020-03, a row received this month */
    parts[0].recv_month = NOV_2026;
    parts[1] = mk(RET_LOC_HOT, 2020 * 12 + 3);      /* 2020-04, received 2026-08: archive, no drop */
    parts[1].recv_month = NOV_2026 - 3;
    parts[2] = mk(RET_LOC_HOT, 2020 * 12 + 4);      /* 2020-05, received in keep_from's month */
    parts[2].recv_month = retention_keep_from(NOV_2026, 24);
    parts[3] = mk(RET_LOC_HOT, 2020 * 12 + 5);      /* 2020-06, received the month before: drop */
    parts[3].recv_month = retention_keep_from(NOV_2026, 24) - 1;
    parts[4] = mk(RET_LOC_ARCHIVE, 2020 * 12 + 6);  /* archived 2020-07 received 2025: kept */
    parts[4].recv_month = 2025 * 12;
    parts[5] = mk(RET_LOC_HOT, NOV_2026 - 4);       /* 2026-07 received 2026-09 (hot_from): hot */
    parts[5].recv_month = retention_hot_from(NOV_2026, 3);
    parts[6] = mk(RET_LOC_HOT, NOV_2026 - 4);       /* 2026-07 received 2026-08: archived */
    parts[6].recv_month = retention_hot_from(NOV_2026, 3) - 1;
    parts[7] = mk(RET_LOC_HOT, NOV_2026);           /* this month: never probed, never acted on */
    parts[7].recv_month = NOV_2026;
    plan_str(parts, 8, ARCHIVE_SCHEMA, 3, 24, got, sizeof got);
    assert_string_equal(got, "S0 S1 A1 S2 A2 D3 S4 S5 A6");
    plan_str(parts, 8, ARCHIVE_CSV, 3, 24, got, sizeof got);
    assert_string_equal(got, "S0 S1 A1 E1 S2 A2 E2 D3 S4 E4 S5 A6 E6");
    /* The same tables with no row received within the period: by month. */
    for (int i = 0; i < 8; i++)
        parts[i].recv_month = -1;
    plan_str(parts, 8, ARCHIVE_SCHEMA, 3, 24, got, sizeof got);
    assert_string_equal(got, "D0 D1 D2 D3 D4 A5 A6");
}

/* The count is of all actions even when out holds fewer. */
static void test_plan_truncated(void **state)
{
    retention_part parts[5];
    retention_action acts[2];
    (void)state;

    for (int i = 0; i < 5; i++)
        parts[i] = mk(RET_LOC_HOT, NOV_2026 - 10 + i);
    assert_int_equal(retention_plan(parts, 5, NOV_2026, 3, 24, ARCHIVE_CSV, acts, 2), 10);
    assert_int_equal(acts[0].kind, RET_ACT_ARCHIVE);
    assert_int_equal(acts[1].kind, RET_ACT_EXPORT);
    assert_int_equal(acts[1].part, 0);
    assert_int_equal(retention_plan(parts, 5, NOV_2026, 3, 24, ARCHIVE_CSV, NULL, 0), 10);
}

static void test_json_append(void **state)
{
    aq_buf b = { 0 };
    (void)state;

    assert_int_equal(retention_json_append(&b, "a\"b\\c\n\t\x01\x1f/\xc3\xa9"), 0);
    assert_int_equal(retention_json_append(&b, ""), 0);
    assert_int_equal(aq_buf_append(&b, "", 1), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\xc3\xa9\"\"\"");
    free(b.data);
}

static void test_manifest_oid(void **state)
{
    static const struct { const char *json; unsigned int oid; } cases[] = {
        { "{\n  \"table_oid\": 16669,\n  \"month\": \"2026-09\"}", 16669 },
        { "{\"table_oid\":42}", 42 },
        { "{\"table_oid\" :\n\t4294967295}", 4294967295u },
        { "{\"table_oid\": 4294967296}", 0 },
        { "{\"table_oid\": \"16669\"}", 0 },
        { "{\"table_oid\": -1}", 0 },
        { "{\"table\": \"audit_events_2026_09\"}", 0 },
        { "{\"table_oid\" 5}", 0 },
        { "", 0 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(retention_manifest_oid(cases[i].json), cases[i].oid);
}

/* Reads a whole file into *buf (caller frees). */
static size_t slurp(const char *path, unsigned char **buf)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 16, len = 0, r;

    assert_non_null(f);
    *buf = malloc(cap);
    while ((r = fread(*buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap)
            *buf = realloc(*buf, cap *= 2);
    }
    fclose(f);
    return len;
}

static void sha256_hex(const unsigned char *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    assert_int_equal(EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Exact bytes: zlib's gzip of known input (no name, mtime 0, OS unix), and
 * the digest of exactly those bytes. */
static void test_gz_known_answer(void **state)
{
    static const unsigned char want[] = {
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0xd7, 0x51, 0x48, 0x2c, 0x4d, 0xc9, 0x2c, 0xe1, 0x02, 0x00, 0x0f, 0xc2, 0x80, 0x32, 0x0d,
        0x00, 0x00, 0x00,
    };
    char path[] = "/tmp/test_retention.XXXXXX", err[256], sha[65];
    long long bytes = -1;
    unsigned char *got;
    retention_gzfile *f;
    int fd = mkstemp(path);
    (void)state;

    assert_true(fd >= 0);
    close(fd);
    f = retention_gz_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(retention_gz_write(f, "hello, ", 7, err, sizeof err), 0);
    assert_int_equal(retention_gz_write(f, "", 0, err, sizeof err), 0);
    assert_int_equal(retention_gz_write(f, "audit\n", 6, err, sizeof err), 0);
    assert_int_equal(retention_gz_close(f, sha, &bytes, err, sizeof err), 0);
    assert_int_equal(bytes, sizeof want);
    assert_string_equal(sha, "2b81130ff8d09ca430cc5b1027e57745b193f347dd7b22ec704a6fcfddbaec66");
    assert_int_equal(slurp(path, &got), sizeof want);
    assert_memory_equal(got, want, sizeof want);
    free(got);
    unlink(path);
}

/* 5 MB through many output buffers: inflates back to the input, and the
 * digest reported is the digest of the file. */
static void test_gz_roundtrip(void **state)
{
    char path[] = "/tmp/test_retention.XXXXXX", err[256], sha[65], want_sha[65];
    size_t n = 5u << 20, flen;
    unsigned char *in = malloc(n), *file, *out = malloc(n + 1);
    uint64_t x = 88172645463325252ULL;
    long long bytes = 0;
    retention_gzfile *f;
    z_stream z;
    int fd = mkstemp(path);
    (void)state;

    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < n; i++) {
        /* half compressible text, half xorshift noise */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        in[i] = (i / 4096) % 2 ? (unsigned char)x : (unsigned char)("audit,row\n"[i % 10]);
    }
    f = retention_gz_open(path, err, sizeof err);
    assert_non_null(f);
    for (size_t off = 0; off < n; off += 777777)
        assert_int_equal(retention_gz_write(f, in + off, n - off < 777777 ? n - off : 777777, err,
                                            sizeof err), 0);
    assert_int_equal(retention_gz_close(f, sha, &bytes, err, sizeof err), 0);
    flen = slurp(path, &file);
    assert_int_equal(bytes, flen);
    sha256_hex(file, flen, want_sha);
    assert_string_equal(sha, want_sha);

    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = file;
    z.avail_in = (uInt)flen;
    z.next_out = out;
    z.avail_out = (uInt)(n + 1);
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.total_out, n);
    assert_int_equal(z.avail_in, 0);
    assert_memory_equal(out, in, n);
    inflateEnd(&z);
    free(in);
    free(out);
    free(file);
    unlink(path);
}

static void test_gz_open_error(void **state)
{
    char err[256];
    (void)state;

    assert_null(retention_gz_open("/nonexistent-dir/x.csv.gz", err, sizeof err));
    assert_string_equal(err, "cannot create /nonexistent-dir/x.csv.gz: No such file or directory");
    retention_gz_abort(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_months),
        cmocka_unit_test(test_plan_schema),
        cmocka_unit_test(test_plan_csv),
        cmocka_unit_test(test_plan_late_rows),
        cmocka_unit_test(test_plan_received),
        cmocka_unit_test(test_plan_truncated),
        cmocka_unit_test(test_json_append),
        cmocka_unit_test(test_manifest_oid),
        cmocka_unit_test(test_gz_known_answer),
        cmocka_unit_test(test_gz_roundtrip),
        cmocka_unit_test(test_gz_open_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
