/* test_verify_join.c -- unit tests for the client-side join of `auditqctl
 * verify` (tools/ctl_verify_join.c): the evidence table (every item found
 * by its key, duplicates all returned, misses end), PostgreSQL's binary
 * arrays and binary COPY tuples (good and malformed shapes), and the
 * received_at text of an inserted-row finding. it_99_integrity runs the
 * whole join against tampered rows on a real server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_verify_int.h"

static void key_of(unsigned i, unsigned char id[16])
{
    memset(id, 0, 16);
    /* UUIDv7-like: the leading bytes alike (a timestamp), the rest varies. */
    id[0] = 0x01;
    id[1] = 0x93;
    memcpy(id + 12, &i, sizeof i);
}

static void add(vtable *t, unsigned i, int64_t occ, uint64_t batch)
{
    vitem *it = vtable_add(t);

    assert_non_null(it);
    key_of(i, it->id);
    it->occ = occ;
    it->batch = batch;
    it->pos = i + 1;
    vtable_commit(t);
}

static void test_table_finds_every_item(void **state)
{
    vtable t;
    unsigned char id[16];
    size_t cur;
    vitem *it;

    (void)state;
    memset(&t, 0, sizeof t);
    for (unsigned i = 0; i < 100000; i++)
        add(&t, i, (int64_t)i * 1000, i / 1000);
    assert_int_equal(t.n, 100000);
    assert_true(t.nslots >= 2 * t.n); /* load at most one half */
    for (unsigned i = 0; i < 100000; i++) {
        key_of(i, id);
        cur = 0;
        it = vtable_next(&t, id, (int64_t)i * 1000, &cur);
        assert_non_null(it);
        assert_int_equal(it->pos, i + 1);
        assert_null(vtable_next(&t, id, (int64_t)i * 1000, &cur));
    }
    /* Same id, another occurred_at: a different key (the primary key is
     * (event_id, occurred_at)). A missing id: nothing. */
    key_of(7, id);
    cur = 0;
    assert_null(vtable_next(&t, id, 7001, &cur));
    key_of(100000, id);
    cur = 0;
    assert_null(vtable_next(&t, id, 100000000, &cur));
    vtable_reset(&t);
    key_of(5, id);
    cur = 0;
    assert_null(vtable_next(&t, id, 5000, &cur));
    assert_int_equal(t.n, 0);
    vtable_free(&t);
}

static void test_table_returns_duplicates(void **state)
{
    vtable t;
    unsigned char id[16];
    size_t cur = 0;
    int n = 0;
    uint64_t batches = 0;
    vitem *it;

    (void)state;
    memset(&t, 0, sizeof t);
    add(&t, 1, 42, 10);
    add(&t, 2, 42, 11);
    add(&t, 1, 42, 12); /* the same event in a second (forged) batch */
    key_of(1, id);
    while ((it = vtable_next(&t, id, 42, &cur)) != NULL) {
        n++;
        batches += it->batch;
    }
    assert_int_equal(n, 2);
    assert_int_equal(batches, 22);
    vtable_free(&t);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void test_binary_array(void **state)
{
    unsigned char a[20 + 3 * 12];
    const unsigned char *e;
    size_t n;

    (void)state;
    memset(a, 0, sizeof a);
    put32(a, 1);          /* ndim */
    put32(a + 4, 0);      /* no NULLs */
    put32(a + 8, 1184);   /* timestamptz */
    put32(a + 12, 3);     /* dim */
    put32(a + 16, 1);     /* lower bound */
    for (int i = 0; i < 3; i++) {
        put32(a + 20 + i * 12, 8);
        a[20 + i * 12 + 11] = (unsigned char)(i + 1);
    }
    assert_int_equal(vj_array(a, sizeof a, 8, &e, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(e[2 * 12 + 11], 3);
    /* Wrong element width, a NULL flag, a short buffer, two dimensions. */
    assert_int_equal(vj_array(a, sizeof a, 16, &e, &n), -1);
    put32(a + 4, 1);
    assert_int_equal(vj_array(a, sizeof a, 8, &e, &n), -1);
    put32(a + 4, 0);
    assert_int_equal(vj_array(a, sizeof a - 1, 8, &e, &n), -1);
    put32(a, 2);
    assert_int_equal(vj_array(a, sizeof a, 8, &e, &n), -1);
    /* An element whose length word lies. */
    put32(a, 1);
    put32(a + 20 + 12, 7);
    assert_int_equal(vj_array(a, sizeof a, 8, &e, &n), -1);
}

static void test_copy_tuple(void **state)
{
    unsigned char b[64];
    const unsigned char *v[3];
    int32_t l[3];
    size_t off = 0, k = 0;

    (void)state;
    b[k++] = 0;
    b[k++] = 3;              /* 3 fields */
    put32(b + k, 2);
    k += 4;
    memcpy(b + k, "ab", 2);
    k += 2;
    put32(b + k, 0xFFFFFFFFu); /* NULL */
    k += 4;
    put32(b + k, 0);         /* empty text */
    k += 4;
    b[k++] = 0xFF;
    b[k++] = 0xFF;           /* the trailer */
    assert_int_equal(vj_copy_fields(b, k, &off, 3, v, l), 1);
    assert_int_equal(l[0], 2);
    assert_memory_equal(v[0], "ab", 2);
    assert_null(v[1]);
    assert_int_equal(l[1], -1);
    assert_int_equal(l[2], 0);
    assert_int_equal(vj_copy_fields(b, k, &off, 3, v, l), 0);
    assert_int_equal(off, k);
    /* Another field count, and a length past the end. */
    off = 0;
    assert_int_equal(vj_copy_fields(b, k, &off, 2, v, l), -1);
    off = 0;
    put32(b + 2, 50);
    assert_int_equal(vj_copy_fields(b, k, &off, 3, v, l), -1);
}

static void test_iso_time(void **state)
{
    char out[40];

    (void)state;
    /* 2026-01-02T03:04:05.678901Z in PostgreSQL's microseconds since 2000. */
    int64_t unix_us = 1767323045678901LL;
    assert_int_equal(vj_iso_us(unix_us - 946684800000000LL, out, sizeof out), 27);
    assert_string_equal(out, "2026-01-02T03:04:05.678901Z");
    assert_int_equal(vj_iso_us(-1, out, sizeof out), 27);
    assert_string_equal(out, "1999-12-31T23:59:59.999999Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_finds_every_item),
        cmocka_unit_test(test_table_returns_duplicates),
        cmocka_unit_test(test_binary_array),
        cmocka_unit_test(test_copy_tuple),
        cmocka_unit_test(test_iso_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
