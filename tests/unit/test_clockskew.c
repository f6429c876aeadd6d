/* test_clockskew.c -- the classification of an event's occurred_at against
 * the worker's clock (worker/clockskew.c): both bounds at their exact
 * edges, the "0 = off" bounds, hostile extremes, and the dead-letter
 * reason's exact text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "clockskew.h"

/* 2026-12-04T12:00:00Z */
#define NOW_US INT64_C(1796385600000000)
#define MS INT64_C(1000)

static void test_future_edges(void **state)
{
    (void)state;
    /* clock_skew_future_ms = 300000: "more than" the bound is future. */
    assert_int_equal(clockskew_classify(NOW_US + 299999 * MS, NOW_US, 300000, 0), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US + 300000 * MS, NOW_US, 300000, 0), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US + 300000 * MS + 1, NOW_US, 300000, 0), CLOCKSKEW_FUTURE);
    assert_int_equal(clockskew_classify(NOW_US + 300001 * MS, NOW_US, 300000, 0), CLOCKSKEW_FUTURE);
    assert_int_equal(clockskew_classify(NOW_US, NOW_US, 300000, 0), CLOCKSKEW_NONE);
    /* 1 ms bound: 1 ms ahead is plain, 1 ms + 1 us is not. */
    assert_int_equal(clockskew_classify(NOW_US + MS, NOW_US, 1, 0), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US + MS + 1, NOW_US, 1, 0), CLOCKSKEW_FUTURE);
    /* 0 = no check, however far. */
    assert_int_equal(clockskew_classify(INT64_MAX, NOW_US, 0, 0), CLOCKSKEW_NONE);
}

static void test_backfill_edges(void **state)
{
    (void)state;
    /* backfill_max_age_ms = 604800000 (7 days). */
    assert_int_equal(clockskew_classify(NOW_US - 604799999 * MS, NOW_US, 0, 604800000), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US - 604800000 * MS, NOW_US, 0, 604800000), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US - 604800000 * MS - 1, NOW_US, 0, 604800000),
                     CLOCKSKEW_BACKFILL);
    assert_int_equal(clockskew_classify(NOW_US - 604800001 * MS, NOW_US, 0, 604800000), CLOCKSKEW_BACKFILL);
    /* 2020 arriving today. */
    assert_int_equal(clockskew_classify(INT64_C(1583402400000000), NOW_US, 300000, 604800000),
                     CLOCKSKEW_BACKFILL);
    assert_int_equal(clockskew_classify(INT64_MIN, NOW_US, 0, 0), CLOCKSKEW_NONE);
}

/* Both checks on; the extremes of int64 (a hostile job) do not overflow. */
static void test_both_and_extremes(void **state)
{
    (void)state;
    assert_int_equal(clockskew_classify(INT64_MAX, NOW_US, 300000, 604800000), CLOCKSKEW_FUTURE);
    assert_int_equal(clockskew_classify(INT64_MIN, NOW_US, 300000, 604800000), CLOCKSKEW_BACKFILL);
    assert_int_equal(clockskew_classify(INT64_MIN, INT64_MAX, 1, 1), CLOCKSKEW_BACKFILL);
    assert_int_equal(clockskew_classify(INT64_MAX, INT64_MIN, 1, 1), CLOCKSKEW_FUTURE);
    assert_int_equal(clockskew_classify(NOW_US - 1, NOW_US, 300000, 604800000), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US + 1, NOW_US, 300000, 604800000), CLOCKSKEW_NONE);
    assert_int_equal(clockskew_classify(NOW_US + 2147483647 * MS + 1, NOW_US, 2147483647, 0),
                     CLOCKSKEW_FUTURE);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(clockskew_name(CLOCKSKEW_FUTURE), "future");
    assert_string_equal(clockskew_name(CLOCKSKEW_BACKFILL), "backfill");
    assert_null(clockskew_name(CLOCKSKEW_NONE));
    assert_null(clockskew_name(7));
}

static void test_reason(void **state)
{
    char out[300], iso[64];
    (void)state;

    clockskew_reason(out, sizeof out, CLOCKSKEW_FUTURE, NOW_US + 300001 * MS, NOW_US, 300000);
    assert_string_equal(out, "occurred_at 2026-12-04T12:05:00.001000Z is 300001 ms ahead of the "
                        "worker's clock 2026-12-04T12:00:00.000000Z, more than "
                        "clock_skew_future_ms=300000 (clock_skew_policy=dead_letter)");
    /* 1 us past the bound reads as bound + 1 ms, never as the bound. */
    clockskew_reason(out, sizeof out, CLOCKSKEW_BACKFILL, NOW_US - 604800000 * MS - 1, NOW_US,
                     604800000);
    assert_string_equal(out, "occurred_at 2026-11-27T11:59:59.999999Z is 604800001 ms behind the "
                        "worker's clock 2026-12-04T12:00:00.000000Z, more than "
                        "backfill_max_age_ms=604800000 (clock_skew_policy=dead_letter)");
    assert_string_equal(clockskew_iso(iso, sizeof iso, -1), "1969-12-31T23:59:59.999999Z");
    assert_string_equal(clockskew_iso(iso, sizeof iso, 0), "1970-01-01T00:00:00.000000Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_future_edges),
        cmocka_unit_test(test_backfill_edges),
        cmocka_unit_test(test_both_and_extremes),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
