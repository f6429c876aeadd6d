/* test_writer.c -- the writer thread's "bad row -> retry or dead letter"
 * decision (worker/writer.c writer_row_decide): a row PostgreSQL took, a
 * refused row's retries with their backoff, the dead letter at
 * max_attempts with its exact reason, rows that arrive with more attempts
 * than a reloaded max_attempts allows, every data-error SQLSTATE alike, a
 * poison row's whole life, and the jitter sequence left untouched by rows
 * that draw no delay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backoff.h"
#include "writer.h"

#define SEED 0x1234567890ABCDEFULL
/* The settings' defaults (common/config.c). */
#define MAX_ATTEMPTS 5
#define BASE_MS 200
#define CAP_MS 60000

static pgw_row_result refused(const char *sqlstate, const char *message)
{
    pgw_row_result r;
    memset(&r, 0, sizeof r);
    r.bad = 1;
    snprintf(r.sqlstate, sizeof r.sqlstate, "%s", sqlstate);
    snprintf(r.message, sizeof r.message, "%s", message);
    return r;
}

/* A row PostgreSQL took (committed, or ON CONFLICT DO NOTHING): written,
 * whatever its attempts, and no jitter is drawn. */
static void test_written(void **state)
{
    (void)state;
    pgw_row_result ok;
    writer_row_verdict v;
    uint64_t rng = SEED;

    memset(&ok, 0, sizeof ok);
    writer_row_decide(&ok, 0, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_WRITTEN);
    assert_int_equal(v.attempts, 0);
    assert_int_equal(v.delay_ms, 0);
    assert_string_equal(v.reason, "");
    /* A row that had been refused 4 times and now went in. */
    writer_row_decide(&ok, 4, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_WRITTEN);
    assert_true(rng == SEED);
}

/* First refusal with the defaults: retry number 1, due after the first
 * backoff step (200 ms, equal jitter: 100..200 ms), exactly the delay
 * backoff_delay_ms draws from the same generator state. */
static void test_first_refusal_retries(void **state)
{
    (void)state;
    pgw_row_result r = refused("23514", "new row for relation \"audit_events\" violates check constraint \"audit_events_action_check\"");
    writer_row_verdict v;
    uint64_t rng = SEED, ref = SEED;

    writer_row_decide(&r, 0, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_RETRY);
    assert_int_equal(v.attempts, 1);
    assert_int_equal(v.delay_ms, backoff_delay_ms(1, BASE_MS, CAP_MS, &ref));
    assert_true(v.delay_ms >= 100 && v.delay_ms <= 200);
    assert_true(rng == ref); /* one draw, no more */
    assert_string_equal(v.reason, "");
}

/* The refusal that reaches max_attempts is a dead letter: its reason names
 * the count and PostgreSQL's message; no jitter is drawn. */
static void test_dead_at_max_attempts(void **state)
{
    (void)state;
    pgw_row_result r = refused("23514", "new row for relation \"audit_events\" violates check constraint \"audit_events_action_check\"");
    writer_row_verdict v;
    uint64_t rng = SEED;

    writer_row_decide(&r, 3, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_RETRY);
    assert_int_equal(v.attempts, 4);
    assert_true(v.delay_ms >= 800 && v.delay_ms <= 1600);

    rng = SEED;
    writer_row_decide(&r, 4, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_DEAD);
    assert_int_equal(v.attempts, 5);
    assert_int_equal(v.delay_ms, 0);
    assert_string_equal(v.reason, "postgres rejected the row 5 times: new row for relation \"audit_events\" "
                                  "violates check constraint \"audit_events_action_check\"");
    assert_true(rng == SEED);
}

/* max_attempts = 1 (the lowest the setting allows): never retried. */
static void test_max_attempts_one(void **state)
{
    (void)state;
    pgw_row_result r = refused("22001", "value too long for type character varying(64)");
    writer_row_verdict v;
    uint64_t rng = SEED;

    writer_row_decide(&r, 0, 1, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_DEAD);
    assert_int_equal(v.attempts, 1);
    assert_string_equal(v.reason, "postgres rejected the row 1 times: value too long for type character varying(64)");
}

/* A SIGHUP lowered max_attempts from 10 to 3 while a job carrying 7
 * attempts waited in the retry set: its next refusal is its last. And a
 * hostile job carrying the codec's cap (attempts 1000000) does not wrap. */
static void test_more_attempts_than_allowed(void **state)
{
    (void)state;
    pgw_row_result r = refused("22P02", "invalid input syntax for type uuid: \"x\"");
    writer_row_verdict v;
    uint64_t rng = SEED;

    writer_row_decide(&r, 7, 3, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_DEAD);
    assert_int_equal(v.attempts, 8);
    assert_string_equal(v.reason, "postgres rejected the row 8 times: invalid input syntax for type uuid: \"x\"");

    writer_row_decide(&r, 1000000, 1000, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_DEAD);
    assert_int_equal(v.attempts, 1000001);
    assert_string_equal(v.reason, "postgres rejected the row 1000001 times: invalid input syntax for type uuid: \"x\"");
    assert_true(rng == SEED);
}

/* Every row-level refusal is the row's own data error: the SQLSTATE does
 * not change the decision (only the message travels into the reason). */
static void test_every_sqlstate_alike(void **state)
{
    (void)state;
    static const char *const states[][2] = {
        {"23514", "new row violates check constraint"},
        {"22P02", "invalid input syntax for type json"},
        {"22001", "value too long for type character varying(64)"},
        {"23502", "null value in column \"actor\" violates not-null constraint"},
        {"22021", "invalid byte sequence for encoding \"UTF8\": 0x00"},
        {"XX000", "an internal error on this row"},
    };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        pgw_row_result r = refused(states[i][0], states[i][1]);
        writer_row_verdict v;
        uint64_t rng = SEED, ref = SEED;
        char want[400];

        writer_row_decide(&r, 1, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
        assert_int_equal(v.action, WRITER_ROW_RETRY);
        assert_int_equal(v.attempts, 2);
        assert_int_equal(v.delay_ms, backoff_delay_ms(2, BASE_MS, CAP_MS, &ref));
        writer_row_decide(&r, MAX_ATTEMPTS - 1, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
        assert_int_equal(v.action, WRITER_ROW_DEAD);
        snprintf(want, sizeof want, "postgres rejected the row 5 times: %s", states[i][1]);
        assert_string_equal(v.reason, want);
    }
}

/* A poison row's whole life with the defaults: four retries, due after
 * 100..200, 200..400, 400..800 and 800..1600 ms, then a dead letter at the
 * fifth refusal. */
static void test_poison_row_life(void **state)
{
    (void)state;
    pgw_row_result r = refused("23514", "new row violates check constraint");
    writer_row_verdict v;
    uint64_t rng = SEED;
    uint32_t attempts = 0;
    int retries = 0;

    for (;;) {
        writer_row_decide(&r, attempts, MAX_ATTEMPTS, BASE_MS, CAP_MS, &rng, &v);
        assert_int_equal(v.attempts, attempts + 1);
        attempts = v.attempts;
        if (v.action == WRITER_ROW_DEAD)
            break;
        assert_int_equal(v.action, WRITER_ROW_RETRY);
        int64_t step = (int64_t)BASE_MS << retries;
        assert_true(v.delay_ms >= step / 2 && v.delay_ms <= step);
        retries++;
        assert_true(retries < 100);
    }
    assert_int_equal(retries, 4);
    assert_int_equal(attempts, 5);
    assert_string_equal(v.reason, "postgres rejected the row 5 times: new row violates check constraint");
}

/* Late retries wait at most backoff_max_ms (a reload may have raised
 * max_attempts to 1000): retry 999 waits 30..60 s. */
static void test_delay_capped(void **state)
{
    (void)state;
    pgw_row_result r = refused("23514", "check");
    writer_row_verdict v;
    uint64_t rng = SEED;

    writer_row_decide(&r, 998, 1000, BASE_MS, CAP_MS, &rng, &v);
    assert_int_equal(v.action, WRITER_ROW_RETRY);
    assert_int_equal(v.attempts, 999);
    assert_true(v.delay_ms >= CAP_MS / 2 && v.delay_ms <= CAP_MS);
}

/* The longest message pgw keeps (199 bytes) is in the reason whole. */
static void test_long_message_whole(void **state)
{
    (void)state;
    char msg[200], want[400];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    pgw_row_result r = refused("22001", msg);
    writer_row_verdict v;
    uint64_t rng = SEED;

    assert_int_equal(strlen(r.message), 199);
    writer_row_decide(&r, 1000, 1000, BASE_MS, CAP_MS, &rng, &v);
    snprintf(want, sizeof want, "postgres rejected the row 1001 times: %s", msg);
    assert_string_equal(v.reason, want);
    assert_int_equal(strlen(v.reason), strlen("postgres rejected the row 1001 times: ") + 199);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_written),
        cmocka_unit_test(test_first_refusal_retries),
        cmocka_unit_test(test_dead_at_max_attempts),
        cmocka_unit_test(test_max_attempts_one),
        cmocka_unit_test(test_more_attempts_than_allowed),
        cmocka_unit_test(test_every_sqlstate_alike),
        cmocka_unit_test(test_poison_row_life),
        cmocka_unit_test(test_delay_capped),
        cmocka_unit_test(test_long_message_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
