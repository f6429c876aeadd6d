/* test_backoff.c -- unit tests for common/backoff.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>

#include <cmocka.h>

#include "backoff.h"

/* Known-answer values of xorshift64* (shifts 12/25/27, multiplier
 * 0x2545F4914F6CDD1D). */
static void test_rand_known_answers(void **state)
{
    uint64_t rng = 1;
    (void)state;

    assert_int_equal(backoff_rand(&rng), 0x47e4ce4b896cdd1dULL);
    assert_int_equal(rng, 0x2000001ULL);
    assert_int_equal(backoff_rand(&rng), 0xabcfa6a8e079651dULL);
    assert_int_equal(rng, 0x4004000802801ULL);
}

/* A zero state (e.g. a zeroed struct) is seeded with the fixed constant
 * instead of sticking at zero forever. */
static void test_rand_zero_seed(void **state)
{
    uint64_t rng = 0;
    (void)state;

    assert_int_equal(backoff_rand(&rng), 0x0d83b3e29a21487aULL);
    assert_int_equal(rng, 0x03f721dffe39b342ULL);
    assert_int_equal(backoff_rand(&rng), 0x54c44c79f1fe9d67ULL);
    assert_int_equal(backoff_rand(&rng), 0xa845f342007a0e78ULL);
    assert_true(rng != 0);
}

/* Exact sequence for a fixed seed: pins down the formula (step, jitter
 * range, one rand call per delay). */
static void test_delay_sequence(void **state)
{
    static const int64_t want[10] = {
        68, 179, 379, 654, 994, 1795, 3710, 8554, 20064, 20286,
    };
    uint64_t rng = 42;
    (void)state;

    for (unsigned a = 1; a <= 10; a++)
        assert_int_equal(backoff_delay_ms(a, 100, 30000, &rng), want[a - 1]);
}

/* Every delay lies in [max(1, step/2), step] with step = min(base*2^(a-1),
 * cap), over many attempts and draws. */
static void test_delay_bounds(void **state)
{
    static const struct { int64_t base, cap; } params[] = {
        { 100, 30000 }, { 1, 1 }, { 1, 2 }, { 3, 1000 }, { 250, 250 },
        { 500, 60000 }, { 1, INT64_MAX }, { 7, INT64_MAX / 3 },
    };
    uint64_t rng = 12345;
    (void)state;

    for (size_t p = 0; p < sizeof params / sizeof params[0]; p++) {
        int64_t base = params[p].base, cap = params[p].cap;
        for (unsigned a = 1; a <= 130; a++) {
            int64_t step = cap;
            if (a - 1 < 62 && base <= (cap >> (a - 1)))
                step = base << (a - 1);
            int64_t lo = step / 2 < 1 ? 1 : step / 2;
            for (int k = 0; k < 200; k++) {
                int64_t d = backoff_delay_ms(a, base, cap, &rng);
                if (d < lo || d > step)
                    print_error("base=%lld cap=%lld attempt=%u: %lld not in [%lld,%lld]\n",
                                (long long)base, (long long)cap, a, (long long)d,
                                (long long)lo, (long long)step);
                assert_true(d >= lo && d <= step);
                assert_true(d >= 1 && d <= cap);
            }
        }
    }
}

static void test_delay_growth_and_cap(void **state)
{
    uint64_t rng = 7;
    (void)state;

    /* attempt 0 behaves like attempt 1: [50, 100]. */
    for (int k = 0; k < 1000; k++) {
        assert_in_range(backoff_delay_ms(0, 100, 30000, &rng), 50, 100);
        assert_in_range(backoff_delay_ms(1, 100, 30000, &rng), 50, 100);
        assert_in_range(backoff_delay_ms(2, 100, 30000, &rng), 100, 200);
        assert_in_range(backoff_delay_ms(3, 100, 30000, &rng), 200, 400);
        assert_in_range(backoff_delay_ms(9, 100, 30000, &rng), 12800, 25600);
        /* 100 * 2^9 = 51200 > cap: capped to [15000, 30000]. */
        assert_in_range(backoff_delay_ms(10, 100, 30000, &rng), 15000, 30000);
        assert_in_range(backoff_delay_ms(200, 100, 30000, &rng), 15000, 30000);
        assert_in_range(backoff_delay_ms(UINT_MAX, 100, 30000, &rng), 15000, 30000);
    }

    /* The jitter actually spans the range: both ends of [50, 100] show up
     * in 10000 draws (probability of missing one is ~1e-88). */
    int64_t mn = INT64_MAX, mx = 0;
    for (int k = 0; k < 10000; k++) {
        int64_t d = backoff_delay_ms(1, 100, 30000, &rng);
        mn = d < mn ? d : mn;
        mx = d > mx ? d : mx;
    }
    assert_int_equal(mn, 50);
    assert_int_equal(mx, 100);
}

/* Shifts past 63 bits or products past INT64_MAX must not wrap into tiny or
 * negative delays. */
static void test_delay_no_overflow(void **state)
{
    uint64_t rng = 99;
    (void)state;

    for (int k = 0; k < 1000; k++) {
        assert_in_range(backoff_delay_ms(200, 100, 30000, &rng), 15000, 30000);
        assert_in_range(backoff_delay_ms(64, 1, INT64_MAX, &rng),
                        INT64_MAX / 2, INT64_MAX);
        assert_in_range(backoff_delay_ms(63, 3, INT64_MAX, &rng),
                        INT64_MAX / 2, INT64_MAX);
        assert_in_range(backoff_delay_ms(UINT_MAX, INT64_MAX, INT64_MAX, &rng),
                        INT64_MAX / 2, INT64_MAX);
    }
    /* Largest in-range step: 1 << 61 with an unlimited cap. */
    assert_in_range(backoff_delay_ms(62, 1, INT64_MAX, &rng),
                    (int64_t)1 << 60, (int64_t)1 << 61);
}

/* Degenerate parameters are clamped: never below 1, never above the cap. */
static void test_delay_degenerate(void **state)
{
    uint64_t rng = 0; /* zero state is allowed too */
    (void)state;

    assert_int_equal(backoff_delay_ms(1, 0, 0, &rng), 1);
    assert_int_equal(backoff_delay_ms(5, -10, -10, &rng), 1);
    assert_int_equal(backoff_delay_ms(1, 1, 1, &rng), 1);
    assert_int_equal(backoff_delay_ms(3, 1000, 10, &rng) <= 10, 1);
    assert_in_range(backoff_delay_ms(3, 1000, 10, &rng), 5, 10);
    assert_in_range(backoff_delay_ms(1, 0, 100, &rng), 1, 1); /* base->1 */
    assert_in_range(backoff_delay_ms(2, 1, 100, &rng), 1, 2);
    /* No generator: deterministic ceiling of the window. */
    assert_int_equal(backoff_delay_ms(3, 100, 30000, NULL), 400);
    assert_int_equal(backoff_delay_ms(20, 100, 30000, NULL), 30000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rand_known_answers),
        cmocka_unit_test(test_rand_zero_seed),
        cmocka_unit_test(test_delay_sequence),
        cmocka_unit_test(test_delay_bounds),
        cmocka_unit_test(test_delay_growth_and_cap),
        cmocka_unit_test(test_delay_no_overflow),
        cmocka_unit_test(test_delay_degenerate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
