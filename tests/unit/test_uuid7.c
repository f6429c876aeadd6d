/* test_uuid7.c -- unit tests for common/uuid7.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "uuid7.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void assert_v7_bits(const uint8_t u[16])
{
    assert_int_equal(u[6] >> 4, 7);       /* version */
    assert_int_equal(u[8] >> 6, 2);       /* variant 0b10 */
}

static void test_version_variant(void **state)
{
    uint8_t u[16];
    (void)state;
    for (int i = 0; i < 1000; i++) {
        uuid7_new(u);
        assert_v7_bits(u);
        uuid7_new_at(u, (uint64_t)i * 7919);
        assert_v7_bits(u);
    }
}

static void test_timestamp(void **state)
{
    uint8_t u[16];
    (void)state;

    uuid7_new_at(u, 0x0123456789ABULL);
    assert_int_equal(uuid7_unix_ms(u), 0x0123456789ABULL);
    static const uint8_t want_ts[6] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB };
    assert_memory_equal(u, want_ts, 6); /* big endian, first 48 bits */

    /* A backfill far in the past still carries exactly the given time. */
    uuid7_new_at(u, 1000);
    assert_int_equal(uuid7_unix_ms(u), 1000);
    uuid7_new_at(u, 1700000000123ULL);
    assert_int_equal(uuid7_unix_ms(u), 1700000000123ULL);

    uint64_t before = now_ms();
    uuid7_new(u);
    uint64_t after = now_ms();
    /* The thread may have borrowed a few ms earlier under load, so allow a
     * small lead over the clock. */
    assert_in_range(uuid7_unix_ms(u), before, after + 100);
}

/* A backfill carries its own time but does not disturb the thread's
 * ordering of live ids. */
static void test_backfill_keeps_order(void **state)
{
    uint8_t a[16], b[16], c[16], d[16];
    (void)state;

    uuid7_new(a);
    uuid7_new_at(b, 1000);
    uuid7_new_at(c, 999);
    uuid7_new(d);
    assert_int_equal(uuid7_unix_ms(b), 1000);
    assert_int_equal(uuid7_unix_ms(c), 999);
    assert_true(memcmp(a, d, 16) < 0);
    assert_true(memcmp(b, a, 16) < 0);
    assert_v7_bits(b);
    assert_v7_bits(c);
}

static void test_unix_ms_of_known_id(void **state)
{
    uint8_t u[16];
    (void)state;
    /* RFC 9562 appendix A.6 example. */
    assert_int_equal(uuid_parse("017F22E2-79B0-7CC3-98C4-DC0C0C07398F", 36, u), 0);
    assert_int_equal(uuid7_unix_ms(u), 0x017F22E279B0ULL);
}

static void test_format_parse(void **state)
{
    static const uint8_t bytes[16] = {
        0x01, 0x7f, 0x22, 0xe2, 0x79, 0xb0, 0x7c, 0xc3,
        0x98, 0xc4, 0xdc, 0x0c, 0x0c, 0x07, 0x39, 0x8f,
    };
    char s[37];
    uint8_t back[16];
    (void)state;

    memset(s, 'X', sizeof s);
    uuid_format(bytes, s);
    assert_string_equal(s, "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
    assert_int_equal(s[36], '\0');

    assert_int_equal(uuid_parse(s, 36, back), 0);
    assert_memory_equal(back, bytes, 16);
    assert_int_equal(uuid_parse("017F22E2-79B0-7CC3-98C4-DC0C0C07398F", 36, back), 0);
    assert_memory_equal(back, bytes, 16);
    assert_int_equal(uuid_parse("017f22E2-79b0-7Cc3-98c4-dC0c0C07398F", 36, back), 0);
    assert_memory_equal(back, bytes, 16);

    /* Round trip of generated ids. */
    for (int i = 0; i < 1000; i++) {
        uint8_t u[16];
        uuid7_new(u);
        uuid_format(u, s);
        assert_int_equal(strlen(s), 36);
        assert_int_equal(uuid_parse(s, 36, back), 0);
        assert_memory_equal(back, u, 16);
    }

    static const uint8_t zero[16] = { 0 };
    uuid_format(zero, s);
    assert_string_equal(s, "00000000-0000-0000-0000-000000000000");
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398",     /* 35 chars */
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398f0",   /* 37 chars */
        "017f22e279b07cc398c4dc0c0c07398f",        /* no dashes (32) */
        "017f22e2079b0-7cc3-98c4-dc0c0c07398f",    /* dash moved */
        "017f22e2-79b0-7cc3-98c4_dc0c0c07398f",    /* wrong separator */
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398g",    /* non-hex */
        "017f22e2-79b0-7cc3-98c4-dc0c0c0 398f",    /* space */
        "{17f22e2-79b0-7cc3-98c4-dc0c0c07398f",
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398f\n",
        "x17f22e2-79b0-7cc3-98c4-dc0c0c07398f",
        "017f22e2-79b0-7cc3-98c4--c0c0c07398fa",
        "+17f22e2-79b0-7cc3-98c4-dc0c0c07398f",
    };
    uint8_t out[16];
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(out, 0xAA, sizeof out);
        if (uuid_parse(bad[i], strlen(bad[i]), out) != -1)
            print_error("accepted bad uuid \"%s\"\n", bad[i]);
        assert_int_equal(uuid_parse(bad[i], strlen(bad[i]), out), -1);
        for (int k = 0; k < 16; k++)
            assert_int_equal(out[k], 0xAA); /* untouched on failure */
    }
    /* Length is authoritative: a valid string with a wrong len fails, and a
     * valid prefix of a longer buffer parses. */
    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398f", 35, out), -1);
    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398fzz", 36, out), 0);
    assert_int_equal(uuid_parse(NULL, 36, out), -1);
    /* An embedded NUL is not hex. */
    assert_int_equal(uuid_parse("017f22e2-79b0-7cc3-98c4-dc0c0c07\0" "98f", 36, out), -1);
}

static void test_monotonic_one_thread(void **state)
{
    enum { N = 100000 };
    uint8_t (*ids)[16] = malloc(sizeof(*ids) * N);
    (void)state;
    assert_non_null(ids);

    uint64_t before = now_ms();
    for (int i = 0; i < N; i++)
        uuid7_new(ids[i]);
    for (int i = 1; i < N; i++) {
        if (memcmp(ids[i - 1], ids[i], 16) >= 0)
            print_error("id %d not greater than id %d\n", i, i - 1);
        assert_true(memcmp(ids[i - 1], ids[i], 16) < 0);
    }
    /* 100000 ids may overflow the per-ms counter and borrow future
     * milliseconds: at least 2048 ids per ms, so at most ~49 ms ahead. */
    assert_true(uuid7_unix_ms(ids[0]) >= before);
    assert_true(uuid7_unix_ms(ids[N - 1]) <= now_ms() + N / 2048 + 1);
    free(ids);
}

/* Within one millisecond the counter alone must keep ids ordered, including
 * across a counter overflow, which moves to the next millisecond. Runs in
 * its own thread because it pushes that thread's clock state into 2100. */
static void *same_ms_thread(void *arg)
{
    enum { N = 10000 };
    const uint64_t t = 4102444800000ULL; /* 2100-01-01, ahead of any clock */
    uint8_t prev[16], cur[16];
    int *ok = arg;

    uuid7_new_at(prev, t);
    if (uuid7_unix_ms(prev) != t)
        return NULL;
    /* Fresh ms: counter top bit clear, leaving room for >= 2048 more. */
    if ((prev[6] & 0x08) != 0)
        return NULL;
    for (int i = 1; i < N; i++) {
        uuid7_new_at(cur, t);
        if (memcmp(prev, cur, 16) >= 0)
            return NULL;
        memcpy(prev, cur, 16);
    }
    /* 10000 ids at one ms need at least 2 and at most 4 extra ms. */
    if (uuid7_unix_ms(prev) < t + 2 || uuid7_unix_ms(prev) > t + 4)
        return NULL;
    /* uuid7_new after that still sorts after (the clock is behind). */
    uuid7_new(cur);
    if (memcmp(prev, cur, 16) >= 0)
        return NULL;
    *ok = 1;
    return NULL;
}

static void test_monotonic_same_ms_overflow(void **state)
{
    pthread_t th;
    int ok = 0;
    (void)state;
    assert_int_equal(pthread_create(&th, NULL, same_ms_thread, &ok), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(ok, 1);
}

enum { THREADS = 4, PER_THREAD = 20000 };
static uint8_t thread_ids[THREADS * PER_THREAD][16];

static void *gen_thread(void *arg)
{
    uint8_t (*out)[16] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        uuid7_new(out[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_threads_distinct(void **state)
{
    pthread_t th[THREADS];
    (void)state;

    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, gen_thread,
                                        thread_ids[t * PER_THREAD]), 0);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);

    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(memcmp(thread_ids[t * PER_THREAD + i - 1],
                               thread_ids[t * PER_THREAD + i], 16) < 0);

    qsort(thread_ids, THREADS * PER_THREAD, 16, cmp_id);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_true(memcmp(thread_ids[i - 1], thread_ids[i], 16) != 0);
}

/* A forked child must not replay the parent's random stream: the same
 * call sequence at the same ms in parent and child gives different ids. */
static void test_fork_reseeds(void **state)
{
    const uint64_t t = 1000; /* a backfill: counter and rand_b both random */
    uint8_t warm[16], parent_id[16], child_id[16];
    int fds[2];
    (void)state;

    uuid7_new(warm); /* make sure this thread's state is seeded */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uuid7_new_at(child_id, t);
        ssize_t w = write(fds[1], child_id, 16);
        _exit(w == 16 ? 0 : 1);
    }
    uuid7_new_at(parent_id, t);
    close(fds[1]);
    assert_int_equal(read(fds[0], child_id, 16), 16);
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(uuid7_unix_ms(child_id), uuid7_unix_ms(parent_id));
    assert_memory_not_equal(child_id + 6, parent_id + 6, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_variant),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_backfill_keeps_order),
        cmocka_unit_test(test_unix_ms_of_known_id),
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_monotonic_one_thread),
        cmocka_unit_test(test_monotonic_same_ms_overflow),
        cmocka_unit_test(test_threads_distinct),
        cmocka_unit_test(test_fork_reseeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
