/* test_pgw.c -- pgw's pure parts: SQLSTATE classification, bisection of
 * batches with bad rows (against a mock transaction), the savepoint search
 * inside one transaction (against a mock probe), and the COPY text and
 * array literal encoders. The bounded waits against a silent server are
 * test_pgconn_io.c's; the database path is covered by the integration
 * tests, which run a real PostgreSQL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "clockskew.h"
#include "pgw.h"
#include "pgw_internal.h"
#include "aq_test.h"

/* ---- pgw_classify -------------------------------------------------------- */

static void test_classify(void **state)
{
    (void)state;
    static const struct { const char *sqlstate; pgw_class want; } cases[] = {
        { "22P02", PGW_CLASS_DATA },      /* invalid_text_representation */
        { "22P05", PGW_CLASS_DATA },      /* untranslatable_character (\u0000 in jsonb) */
        { "22021", PGW_CLASS_DATA },      /* character_not_in_repertoire (bad UTF-8) */
        { "22001", PGW_CLASS_DATA },      /* string_data_right_truncation */
        { "23514", PGW_CLASS_DATA },      /* check_violation */
        { "23502", PGW_CLASS_DATA },      /* not_null_violation */
        { "23505", PGW_CLASS_DATA },      /* unique_violation */
        { "54000", PGW_CLASS_DATA },      /* program_limit_exceeded */
        { "08006", PGW_CLASS_TRANSIENT }, /* connection_failure */
        { "08001", PGW_CLASS_TRANSIENT },
        { "40001", PGW_CLASS_TRANSIENT }, /* serialization_failure */
        { "40P01", PGW_CLASS_TRANSIENT }, /* deadlock_detected */
        { "53300", PGW_CLASS_TRANSIENT }, /* too_many_connections */
        { "53100", PGW_CLASS_TRANSIENT }, /* disk_full */
        { "55P03", PGW_CLASS_TRANSIENT }, /* lock_not_available */
        { "57P01", PGW_CLASS_TRANSIENT }, /* admin_shutdown */
        { "57014", PGW_CLASS_TRANSIENT }, /* query_canceled (statement_timeout) */
        { "58030", PGW_CLASS_TRANSIENT }, /* io_error */
        { "42P01", PGW_CLASS_TRANSIENT }, /* undefined_table: operator must fix */
        { "42501", PGW_CLASS_TRANSIENT }, /* insufficient_privilege */
        { "25P02", PGW_CLASS_TRANSIENT }, /* in_failed_sql_transaction */
        { "XX000", PGW_CLASS_TRANSIENT }, /* internal_error */
        { "2",     PGW_CLASS_TRANSIENT }, /* malformed: not a data class */
        { "",      PGW_CLASS_TRANSIENT },
        { NULL,    PGW_CLASS_TRANSIENT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pgw_class got = pgw_classify(cases[i].sqlstate);
        if (got != cases[i].want)
            fail_msg("pgw_classify(%s) = %d, want %d",
                     cases[i].sqlstate ? cases[i].sqlstate : "NULL", (int)got,
                     (int)cases[i].want);
    }
}

/* ---- faults: what /readyz, the log and the start check name -------------- */

static void test_fault_of(void **state)
{
    (void)state;
    static const struct { const char *sqlstate; int timed_out; pgw_fault want; const char *name; } cases[] = {
        { "28P01", 0, PGW_FAULT_LOGIN, "login refused" },      /* invalid_password */
        { "28000", 0, PGW_FAULT_LOGIN, "login refused" },      /* pg_hba.conf rejects / no such role */
        { "3D000", 0, PGW_FAULT_DATABASE, "database missing" },
        { "42501", 0, PGW_FAULT_PRIVILEGE, "privilege missing" },
        { "42P01", 0, PGW_FAULT_TABLE, "table missing" },
        { "57P01", 0, PGW_FAULT_UNREACHABLE, "unreachable" },  /* pg_terminate_backend, fast shutdown */
        { "57P03", 0, PGW_FAULT_UNREACHABLE, "unreachable" },  /* the database system is starting up */
        { "08006", 0, PGW_FAULT_UNREACHABLE, "unreachable" },
        { "", 0, PGW_FAULT_UNREACHABLE, "unreachable" },       /* no server answer: refused, reset */
        { NULL, 0, PGW_FAULT_UNREACHABLE, "unreachable" },
        { "", 1, PGW_FAULT_STALLED, "stalled" },                /* pg_timeout_ms gave up */
        { "28P01", 1, PGW_FAULT_STALLED, "stalled" },           /* the timeout wins */
        { "53300", 0, PGW_FAULT_SERVER, "server error" },       /* too_many_connections */
        { "40P01", 0, PGW_FAULT_SERVER, "server error" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pgw_fault got = pgw_fault_of(cases[i].sqlstate, cases[i].timed_out);
        if (got != cases[i].want || strcmp(pgw_fault_name(got), cases[i].name) != 0)
            fail_msg("pgw_fault_of(%s, %d) = %d (%s), want %d (%s)",
                     cases[i].sqlstate ? cases[i].sqlstate : "NULL", cases[i].timed_out, (int)got,
                     pgw_fault_name(got), (int)cases[i].want, cases[i].name);
    }
    assert_string_equal(pgw_fault_name(PGW_FAULT_NONE), "");
    assert_true(pgw_fault_is_config(PGW_FAULT_LOGIN) && pgw_fault_is_config(PGW_FAULT_DATABASE) &&
                pgw_fault_is_config(PGW_FAULT_PRIVILEGE) && pgw_fault_is_config(PGW_FAULT_TABLE));
    assert_false(pgw_fault_is_config(PGW_FAULT_UNREACHABLE) || pgw_fault_is_config(PGW_FAULT_STALLED) ||
                 pgw_fault_is_config(PGW_FAULT_SERVER) || pgw_fault_is_config(PGW_FAULT_NONE));
}

/* The error line a user sees: the cause, then the fix naming the role. */
static void test_explain(void **state)
{
    (void)state;
    char buf[600];
    assert_string_equal(
        pgw_explain(PGW_FAULT_LOGIN, "aq_writer",
                    "connect: connection to server at \"127.0.0.1\", port 5432 failed: FATAL: password "
                    "authentication failed for user \"aq_writer\"", buf, sizeof buf),
        "connect: connection to server at \"127.0.0.1\", port 5432 failed: FATAL: password authentication "
        "failed for user \"aq_writer\"; fix the user or password in database_url, or the role or "
        "pg_hba.conf on the server (docs/SECURITY.md)");
    assert_string_equal(
        pgw_explain(PGW_FAULT_PRIVILEGE, "aq_writer",
                    "connect check: 42501 role \"aq_writer\" has no INSERT privilege on audit_events", buf,
                    sizeof buf),
        "connect check: 42501 role \"aq_writer\" has no INSERT privilege on audit_events; as the owner of "
        "audit_events run 'auditqctl grants --writer aq_writer' (INSERT on audit_events, TEMPORARY on "
        "the database; docs/SECURITY.md)");
    assert_string_equal(pgw_explain(PGW_FAULT_TABLE, "", "prepare insert: 42P01 relation \"audit_events\" "
                                    "does not exist", buf, sizeof buf),
                        "prepare insert: 42P01 relation \"audit_events\" does not exist; run 'auditqctl "
                        "migrate' against this database_url");
    /* A server that is away needs no operator: the error alone. */
    assert_string_equal(pgw_explain(PGW_FAULT_UNREACHABLE, "aq_writer", "connect: refused", buf, sizeof buf),
                        "connect: refused");
    assert_string_equal(pgw_fault_fix(PGW_FAULT_STALLED, "x", buf, sizeof buf), "");
}

/* libpq's PQERRORS_VERBOSE text of a refused connect: the SQLSTATE taken
 * out, the message as the default verbosity prints it, on one line. */
static void test_conn_message(void **state)
{
    (void)state;
    char st[6], m[400];
    pgw_conn_message("connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  28P01: password "
                     "authentication failed for user \"aq\"\nLOCATION:  auth_failed, auth.c:323\n",
                     st, m, sizeof m);
    assert_string_equal(st, "28P01");
    assert_string_equal(m, "connection to server at \"127.0.0.1\", port 5432 failed: FATAL: password "
                           "authentication failed for user \"aq\"");
    /* Two addresses tried: the first SQLSTATE is the one returned. */
    pgw_conn_message("connection to server at \"localhost\" (::1), port 5 failed: Connection refused\n"
                     "\tIs the server running on that host and accepting TCP/IP connections?\n"
                     "connection to server at \"localhost\" (127.0.0.1), port 5 failed: FATAL:  3D000: "
                     "database \"nope\" does not exist\nLOCATION:  InitPostgres, postinit.c:1030\n",
                     st, m, sizeof m);
    assert_string_equal(st, "3D000");
    assert_string_equal(m, "connection to server at \"localhost\" (::1), port 5 failed: Connection refused "
                           "Is the server running on that host and accepting TCP/IP connections? connection "
                           "to server at \"localhost\" (127.0.0.1), port 5 failed: FATAL: database \"nope\" "
                           "does not exist");
    /* No server answer at all: no SQLSTATE, the text unchanged. */
    pgw_conn_message("invalid sslmode value: \"bogus\"\n", st, m, sizeof m);
    assert_string_equal(st, "");
    assert_string_equal(m, "invalid sslmode value: \"bogus\"");
}

/* ---- pgw_hold_next: what a thread whose write failed does next ----------- */

static void test_hold_next(void **state)
{
    (void)state;
    const int64_t S = 1000000; /* us per second */
    static const char *const names[] = { "WAIT", "RETRY", "PROBE", "RELEASE" };
    /* Failing since t=10 s, pg_release_after_ms = 5000 (due at 15 s). */
    static const struct {
        int64_t now, retry_at, probe, release_at;
        int connected, stopping;
        pgw_step want;
        int64_t wait;
    } cases[] = {
        /* disconnected: a probe once a second, never more often */
        { 10 * S, 40 * S, 10 * S, 0, 0, 0, PGW_STEP_WAIT, 1 * S },
        { 10 * S + 999999, 40 * S, 10 * S, 0, 0, 0, PGW_STEP_WAIT, 1 },
        { 11 * S, 40 * S, 10 * S, 0, 0, 0, PGW_STEP_PROBE, 0 },
        /* connected (the server refused the statement): no probe, the
         * backoff is kept -- a probe would answer and defeat it */
        { 11 * S, 13 * S, 10 * S, 0, 1, 0, PGW_STEP_WAIT, 2 * S },
        { 13 * S, 13 * S, 10 * S, 0, 1, 0, PGW_STEP_RETRY, 0 },
        /* a 30 s backoff still releases at 15 s */
        { 14 * S, 40 * S, 14 * S, 0, 1, 0, PGW_STEP_WAIT, 1 * S },
        { 15 * S, 40 * S, 14 * S + 500000, 0, 0, 0, PGW_STEP_RELEASE, 0 },
        { 15 * S, 15 * S, 15 * S, 0, 0, 0, PGW_STEP_RELEASE, 0 },   /* release before retry */
        /* a release that failed (Redis away) is not tried again at once:
         * the write goes on meanwhile */
        { 16 * S, 16 * S, 15 * S, 17 * S, 0, 0, PGW_STEP_RETRY, 0 },
        { 16 * S, 20 * S, 16 * S, 17 * S, 0, 0, PGW_STEP_WAIT, 1 * S },
        { 17 * S, 20 * S, 16 * S, 17 * S, 0, 0, PGW_STEP_RELEASE, 0 },
        /* shutdown: release at once, whatever the bound */
        { 10 * S + 1, 40 * S, 10 * S, 0, 1, 1, PGW_STEP_RELEASE, 0 },
        { 10 * S + 1, 40 * S, 10 * S, 11 * S, 1, 1, PGW_STEP_WAIT, 1 * S - 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pgw_hold h = { .failing_since_us = 10 * S, .retry_at_us = cases[i].retry_at,
                       .probe_us = cases[i].probe, .release_at_us = cases[i].release_at,
                       .release_after_ms = 5000, .connected = cases[i].connected,
                       .stopping = cases[i].stopping };
        int64_t wait = -1;
        pgw_step got = pgw_hold_next(&h, cases[i].now, &wait);
        if (got != cases[i].want || wait != cases[i].wait)
            fail_msg("case %zu: %s wait %lld us, want %s wait %lld us", i, names[got], (long long)wait,
                     names[cases[i].want], (long long)cases[i].wait);
    }
}

/* The loop a thread runs on a dead database with a 60 s backoff: it never
 * probes more than once a second, and releases at the bound. */
static void test_hold_probe_rate(void **state)
{
    (void)state;
    const int64_t S = 1000000;
    pgw_hold h = { .failing_since_us = 0, .retry_at_us = 60 * S, .probe_us = 0,
                   .release_after_ms = 5000, .connected = 0 };
    int64_t now = 0, wait;
    int probes = 0;
    pgw_step st;
    while ((st = pgw_hold_next(&h, now, &wait)) != PGW_STEP_RELEASE) {
        assert_int_not_equal(st, PGW_STEP_RETRY);
        if (st == PGW_STEP_PROBE) {
            probes++;
            now += 3000;      /* a refused connect takes a few ms */
            h.probe_us = now;
        } else {
            assert_true(wait > 0);
            now += wait;
        }
    }
    assert_int_equal(now, 5 * S);
    assert_int_equal(probes, 4);  /* at 1, 2, 3, 4 s (+ 3 ms each) */
}

/* ---- pgw_bisect against a mock transaction ------------------------------- */

#define MAX_CALLS 256

typedef struct mock {
    size_t n;
    const unsigned char *bad;  /* bad[i]: row i fails with a data error */
    unsigned transient_at;     /* 1-based call that fails transiently; 0 none */
    unsigned calls;
    unsigned *commits;         /* times each row was committed */
    size_t lo[MAX_CALLS], hi[MAX_CALLS];
} mock;

/* Fails the range if it holds a bad row, naming the first bad row in the
 * message so the test can check the right message reached the right row. */
static int mock_try(void *ctx, size_t lo, size_t hi, char sqlstate[6],
                    char *message, size_t msglen)
{
    mock *m = ctx;
    assert_true(lo < hi);
    assert_true(hi <= m->n);
    if (m->calls < MAX_CALLS) {
        m->lo[m->calls] = lo;
        m->hi[m->calls] = hi;
    }
    m->calls++;
    if (m->calls == m->transient_at)
        return -1;
    for (size_t i = lo; i < hi; i++) {
        if (m->bad[i]) {
            memcpy(sqlstate, "22P02", 6);
            snprintf(message, msglen, "invalid input syntax for type json (row %zu)", i);
            return 1;
        }
    }
    for (size_t i = lo; i < hi; i++)
        m->commits[i]++;
    return 0;
}

typedef struct bisect_case {
    const char *name;
    size_t n;
    size_t bad[8];
    size_t nbad;
    unsigned transient_at;
    int want_rc;
    uint64_t want_transactions;
    uint64_t want_bisections;
    /* Expected calls as (lo, hi) pairs; ncalls 0 = not checked. */
    size_t calls[16][2];
    size_t ncalls;
} bisect_case;

/* Runs one case; returns the mock's results via the out arrays. */
static void run_case(const bisect_case *c, size_t n, const unsigned char *bad,
                     pgw_row_result *res, unsigned *commits, pgw_stats *st, mock *m, int *rc)
{
    memset(m, 0, sizeof *m);
    m->n = n;
    m->bad = bad;
    m->transient_at = c ? c->transient_at : 0;
    m->commits = commits;
    *rc = pgw_bisect(m, mock_try, n, res, st);
}

/* Checks the PGW_DONE contract: each bad row marked with its own message,
 * each good row committed exactly once and not marked. */
static void check_done(size_t n, const unsigned char *bad, const pgw_row_result *res,
                       const unsigned *commits)
{
    char want[200];
    for (size_t i = 0; i < n; i++) {
        if (bad[i]) {
            assert_int_equal(res[i].bad, 1);
            assert_string_equal(res[i].sqlstate, "22P02");
            snprintf(want, sizeof want, "invalid input syntax for type json (row %zu)", i);
            assert_string_equal(res[i].message, want);
            assert_int_equal(commits[i], 0);
        } else {
            if (res[i].bad != 0 || commits[i] != 1)
                fail_msg("row %zu: bad=%d commits=%u, want 0 and 1", i, res[i].bad, commits[i]);
            assert_string_equal(res[i].sqlstate, "");
            assert_string_equal(res[i].message, "");
        }
    }
}

static void test_bisect_table(void **state)
{
    (void)state;
    /* Hand-traced. After a range fails, its left half is tried; if that
     * commits, the right half must hold the bad row and is split without
     * being tried itself (single rows are always tried). */
    static const bisect_case cases[] = {
        { "empty", 0, {0}, 0, 0, PGW_DONE, 0, 0, {{0}}, 0 },
        { "n=1 good", 1, {0}, 0, 0, PGW_DONE, 1, 0, {{0, 1}}, 1 },
        { "n=1 bad", 1, {0}, 1, 0, PGW_DONE, 1, 0, {{0, 1}}, 1 },
        { "none bad", 8, {0}, 0, 0, PGW_DONE, 1, 0, {{0, 8}}, 1 },
        { "bad 3 of 8", 8, {3}, 1, 0, PGW_DONE, 6, 3,
          {{0, 8}, {0, 4}, {0, 2}, {2, 3}, {3, 4}, {4, 8}}, 6 },
        { "bad 0 of 8", 8, {0}, 1, 0, PGW_DONE, 7, 3,
          {{0, 8}, {0, 4}, {0, 2}, {0, 1}, {1, 2}, {2, 4}, {4, 8}}, 7 },
        { "bad 7 of 8", 8, {7}, 1, 0, PGW_DONE, 5, 3,
          {{0, 8}, {0, 4}, {4, 6}, {6, 7}, {7, 8}}, 5 },
        { "bad 4 of 5 (odd n)", 5, {4}, 1, 0, PGW_DONE, 5, 3,
          {{0, 5}, {0, 2}, {2, 3}, {3, 4}, {4, 5}}, 5 },
        { "bad 1,6 of 8", 8, {1, 6}, 2, 0, PGW_DONE, 10, 5,
          {{0, 8}, {0, 4}, {0, 2}, {0, 1}, {1, 2}, {2, 4}, {4, 8}, {4, 6}, {6, 7}, {7, 8}}, 10 },
        { "all 4 bad", 4, {0, 1, 2, 3}, 4, 0, PGW_DONE, 7, 3,
          {{0, 4}, {0, 2}, {0, 1}, {1, 2}, {2, 4}, {2, 3}, {3, 4}}, 7 },
        { "adjacent bad 2,3 of 4", 4, {2, 3}, 2, 0, PGW_DONE, 4, 2,
          {{0, 4}, {0, 2}, {2, 3}, {3, 4}}, 4 },
        /* Transient errors stop at once, whatever was done before. */
        { "transient on first call", 8, {3}, 1, 1, PGW_RETRY, 1, 0, {{0, 8}}, 1 },
        { "transient none bad", 8, {0}, 0, 1, PGW_RETRY, 1, 0, {{0, 8}}, 1 },
        { "transient on 3rd call", 8, {3}, 1, 3, PGW_RETRY, 3, 2,
          {{0, 8}, {0, 4}, {0, 2}}, 3 },
        { "transient after a row was marked", 8, {0}, 1, 5, PGW_RETRY, 5, 3,
          {{0, 8}, {0, 4}, {0, 2}, {0, 1}, {1, 2}}, 5 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const bisect_case *c = &cases[k];
        unsigned char bad[16] = {0};
        unsigned commits[16] = {0};
        pgw_row_result res[16];
        pgw_stats st = { 100, 200, 300, 400, 500 };  /* pgw_bisect adds to it */
        mock m;
        int rc;

        for (size_t i = 0; i < c->nbad; i++)
            bad[c->bad[i]] = 1;
        memset(res, 0x5a, sizeof res);  /* pgw_bisect must clear every entry */
        run_case(c, c->n, bad, res, commits, &st, &m, &rc);

        if (rc != c->want_rc || st.transactions != 100 + c->want_transactions ||
            st.bisections != 400 + c->want_bisections)
            fail_msg("case '%s': rc=%d transactions=+%llu bisections=+%llu, "
                     "want rc=%d +%llu +%llu", c->name, rc,
                     (unsigned long long)(st.transactions - 100),
                     (unsigned long long)(st.bisections - 400), c->want_rc,
                     (unsigned long long)c->want_transactions,
                     (unsigned long long)c->want_bisections);
        /* Row counters belong to the writer's try function, not to bisect. */
        assert_int_equal(st.rows_written, 200);
        assert_int_equal(st.rows_inserted, 300);
        assert_int_equal(st.round_trips, 500);
        assert_int_equal(m.calls, c->want_transactions);
        for (size_t i = 0; i < c->ncalls; i++) {
            if (m.lo[i] != c->calls[i][0] || m.hi[i] != c->calls[i][1])
                fail_msg("case '%s': call %zu was [%zu,%zu), want [%zu,%zu)", c->name,
                         i, m.lo[i], m.hi[i], c->calls[i][0], c->calls[i][1]);
        }
        if (rc == PGW_DONE)
            check_done(c->n, bad, res, commits);
    }
}

/* The transient cases above stop mid-way; rows marked before the stop keep
 * their mark and nothing else is marked. */
static void test_bisect_transient_partial_marks(void **state)
{
    (void)state;
    bisect_case c = { "t", 8, {0}, 1, 5, PGW_RETRY, 5, 3, {{0}}, 0 };
    unsigned char bad[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    unsigned commits[8] = {0};
    pgw_row_result res[8];
    mock m;
    int rc;

    run_case(&c, 8, bad, res, commits, NULL, &m, &rc);  /* st may be NULL */
    assert_int_equal(rc, PGW_RETRY);
    assert_int_equal(m.calls, 5);
    assert_int_equal(res[0].bad, 1);
    assert_string_equal(res[0].sqlstate, "22P02");
    for (size_t i = 1; i < 8; i++)
        assert_int_equal(res[i].bad, 0);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(commits[i], 0);
}

#define BIG 10000

static void big_case(const size_t *badrows, size_t nbad, uint64_t max_tx,
                     uint64_t want_tx_exact)
{
    unsigned char *bad = calloc(BIG, 1);
    unsigned *commits = calloc(BIG, sizeof *commits);
    pgw_row_result *res = calloc(BIG, sizeof *res);
    pgw_stats st = {0};
    mock m;
    int rc;

    assert_non_null(bad);
    assert_non_null(commits);
    assert_non_null(res);
    for (size_t i = 0; i < nbad; i++)
        bad[badrows[i]] = 1;
    run_case(NULL, BIG, bad, res, commits, &st, &m, &rc);
    assert_int_equal(rc, PGW_DONE);
    if (st.transactions > max_tx)
        fail_msg("%llu transactions, want <= %llu", (unsigned long long)st.transactions,
                 (unsigned long long)max_tx);
    if (want_tx_exact)
        assert_int_equal(st.transactions, want_tx_exact);
    assert_int_equal(st.transactions, m.calls);
    check_done(BIG, bad, res, commits);
    size_t marked = 0;
    for (size_t i = 0; i < BIG; i++)
        marked += (size_t)res[i].bad;
    assert_int_equal(marked, nbad);
    free(bad);
    free(commits);
    free(res);
}

/* ceil(log2(10000)) = 14 levels: one bad row costs at most 2 per level + 1. */
static void test_bisect_big_one_bad(void **state)
{
    (void)state;
    static const size_t bad[] = { 7777 };
    /* 21 traced by hand: at 8 of the 14 levels the left half commits and
     * the right half (holding row 7777) is split without being tried. */
    big_case(bad, 1, 2 * 14 + 1, 21);
}

static void test_bisect_big_two_bad(void **state)
{
    (void)state;
    static const size_t bad[] = { 3, 7777 };
    big_case(bad, 2, 2 * (2 * 14) + 1, 0);
}

static void test_bisect_big_none_bad(void **state)
{
    (void)state;
    big_case(NULL, 0, 1, 1);
}

static void test_bisect_all_bad(void **state)
{
    (void)state;
    enum { N = 100 };
    unsigned char bad[N];
    unsigned commits[N] = {0};
    pgw_row_result res[N];
    pgw_stats st = {0};
    mock m;
    int rc;

    memset(bad, 1, sizeof bad);
    run_case(NULL, N, bad, res, commits, &st, &m, &rc);
    assert_int_equal(rc, PGW_DONE);
    /* Every internal node of the split tree fails and is split: 2N-1 tries
     * (no range is ever "known bad" because no left half ever commits). */
    assert_int_equal(st.transactions, 2 * N - 1);
    assert_int_equal(st.bisections, N - 1);
    check_done(N, bad, res, commits);
}

/* ---- pgw_isolate against a mock probe ------------------------------------ */

/* A transaction with staged rows: a probe of [lo, hi) fails if the range
 * holds a bad row (naming the first), else keeps its rows; commit moves
 * the kept rows to commits[]. It checks the protocol as it goes: no call
 * after the commit, no row kept twice. */
typedef struct pmock {
    size_t n;
    const unsigned char *bad;
    unsigned transient_at;   /* 1-based call that fails transiently; 0 none */
    unsigned calls;
    int committed;
    unsigned char *kept;     /* inserted by a kept probe, not yet committed */
    unsigned *commits;
    size_t lo[MAX_CALLS], hi[MAX_CALLS];
    int commit[MAX_CALLS];
} pmock;

static int mock_probe(void *ctx, size_t lo, size_t hi, int commit, char sqlstate[6],
                      char *message, size_t msglen)
{
    pmock *m = ctx;
    assert_false(m->committed);
    assert_true(lo <= hi);
    assert_true(hi <= m->n);
    assert_true(lo < hi || commit);
    if (m->calls < MAX_CALLS) {
        m->lo[m->calls] = lo;
        m->hi[m->calls] = hi;
        m->commit[m->calls] = commit;
    }
    m->calls++;
    if (m->calls == m->transient_at)
        return -1;
    for (size_t i = lo; i < hi; i++) {
        if (m->bad[i]) {
            memcpy(sqlstate, "22P02", 6);
            snprintf(message, msglen, "invalid input syntax for type json (row %zu)", i);
            return 1;
        }
    }
    for (size_t i = lo; i < hi; i++) {
        if (m->kept[i])
            fail_msg("row %zu inserted twice", i);
        m->kept[i] = 1;
    }
    if (commit) {
        m->committed = 1;
        for (size_t i = 0; i < m->n; i++)
            m->commits[i] += m->kept[i];
    }
    return 0;
}

/* Runs pgw_isolate on n rows the way txn_copy does: after the INSERT of
 * the whole batch failed with the first bad row's error. */
static int run_isolate(pmock *m, size_t n, const unsigned char *bad, unsigned transient_at,
                       pgw_row_result *res, unsigned *commits, pgw_stats *st)
{
    char msg[200];
    size_t first = 0;

    memset(m, 0, sizeof *m);
    m->n = n;
    m->bad = bad;
    m->transient_at = transient_at;
    m->kept = calloc(n, 1);
    m->commits = commits;
    assert_non_null(m->kept);
    memset(res, 0, n * sizeof *res);
    while (!bad[first])
        first++;
    snprintf(msg, sizeof msg, "invalid input syntax for type json (row %zu)", first);
    int rc = pgw_isolate(m, mock_probe, 0, n, "22P02", msg, res, st);
    free(m->kept);
    m->kept = NULL;
    return rc;
}

typedef struct isolate_case {
    const char *name;
    size_t n;
    size_t bad[8];
    size_t nbad;
    uint64_t want_probes;     /* st.bisections: probes with rows */
    unsigned want_calls;      /* round trips: probes + a bare COMMIT if needed */
    size_t calls[12][3];      /* (lo, hi, commit); 0 rows = not checked */
    size_t ncalls;
} isolate_case;

static void test_isolate_table(void **state)
{
    (void)state;
    /* Hand-traced: halve to the first bad row (a range that goes in is
     * kept), mark it with the last failing range's error, then try all the
     * rows after it with COMMIT. A single row is never probed alone. */
    static const isolate_case cases[] = {
        { "n=1 bad 0", 1, {0}, 1, 0, 1, {{1, 1, 1}}, 1 },
        { "n=2 bad 0", 2, {0}, 1, 2, 2, {{0, 1, 0}, {1, 2, 1}}, 2 },
        { "n=2 bad 1", 2, {1}, 1, 1, 2, {{0, 1, 0}, {2, 2, 1}}, 2 },
        { "n=3 bad 0", 3, {0}, 1, 2, 2, {{0, 1, 0}, {1, 3, 1}}, 2 },
        { "n=3 bad 1", 3, {1}, 1, 3, 3, {{0, 1, 0}, {1, 2, 0}, {2, 3, 1}}, 3 },
        { "n=3 bad 2", 3, {2}, 1, 2, 3, {{0, 1, 0}, {1, 2, 0}, {3, 3, 1}}, 3 },
        { "n=8 bad 3", 8, {3}, 1, 4, 4, {{0, 4, 0}, {0, 2, 0}, {2, 3, 0}, {4, 8, 1}}, 4 },
        { "n=8 bad 1,6", 8, {1, 6}, 2, 8, 8,
          {{0, 4, 0}, {0, 2, 0}, {0, 1, 0}, {2, 8, 1}, {2, 5, 0}, {5, 6, 0}, {6, 7, 0}, {7, 8, 1}}, 8 },
        { "n=4 all bad", 4, {0, 1, 2, 3}, 4, 7, 8,
          {{0, 2, 0}, {0, 1, 0}, {1, 4, 1}, {1, 2, 0}, {2, 4, 1}, {2, 3, 0}, {3, 4, 1}, {4, 4, 1}}, 8 },
        { "n=5 bad 3,4 (adjacent, last)", 5, {3, 4}, 2, 4, 5,
          {{0, 2, 0}, {2, 3, 0}, {3, 4, 0}, {4, 5, 1}, {5, 5, 1}}, 5 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const isolate_case *c = &cases[k];
        unsigned char bad[16] = {0};
        unsigned commits[16] = {0};
        pgw_row_result res[16];
        pgw_stats st = { 100, 200, 300, 400, 500 };  /* pgw_isolate adds to bisections only */
        pmock m;

        for (size_t i = 0; i < c->nbad; i++)
            bad[c->bad[i]] = 1;
        int rc = run_isolate(&m, c->n, bad, 0, res, commits, &st);
        if (rc != PGW_DONE || st.bisections != 400 + c->want_probes || m.calls != c->want_calls)
            fail_msg("case '%s': rc=%d probes=+%llu calls=%u, want PGW_DONE +%llu %u", c->name, rc,
                     (unsigned long long)(st.bisections - 400), m.calls,
                     (unsigned long long)c->want_probes, c->want_calls);
        assert_int_equal(st.transactions, 100);
        assert_int_equal(st.rows_written, 200);
        assert_int_equal(st.rows_inserted, 300);
        assert_int_equal(st.round_trips, 500);
        assert_true(m.committed);
        for (size_t i = 0; i < c->ncalls; i++) {
            if (m.lo[i] != c->calls[i][0] || m.hi[i] != c->calls[i][1] ||
                (size_t)m.commit[i] != c->calls[i][2])
                fail_msg("case '%s': call %zu was (%zu,%zu,%d), want (%zu,%zu,%zu)", c->name, i,
                         m.lo[i], m.hi[i], m.commit[i], c->calls[i][0], c->calls[i][1],
                         c->calls[i][2]);
        }
        check_done(c->n, bad, res, commits);
    }
}

/* A transient error ends the search at once, uncommitted: the caller
 * rolls back and retries the batch; nothing reached commits[]. */
static void test_isolate_transient(void **state)
{
    (void)state;
    unsigned char bad[8] = { 0, 0, 0, 0, 0, 1, 0, 0 };
    for (unsigned at = 1; at <= 4; at++) {
        unsigned commits[8] = {0};
        pgw_row_result res[8];
        pmock m;
        int rc = run_isolate(&m, 8, bad, at, res, commits, NULL);  /* st may be NULL */
        assert_int_equal(rc, PGW_RETRY);
        assert_int_equal(m.calls, at);
        assert_false(m.committed);
        for (size_t i = 0; i < 8; i++)
            assert_int_equal(commits[i], 0);
    }
}

static unsigned ceil_log2(size_t n)
{
    unsigned l = 0;
    while (((size_t)1 << l) < n)
        l++;
    return l;
}

/* One bad row in 10,000 at the first, middle and last index and a few
 * others: exact probe counts (traced with the rule above), never more than
 * ceil(log2 n) + 1 round trips, the last one committing. */
static void test_isolate_big(void **state)
{
    (void)state;
    static const struct { size_t bad[2]; size_t nbad; uint64_t probes; unsigned calls; } cases[] = {
        { {0}, 1, 14, 14 },      /* 13 failing halves down to row 0, then [1, n) + COMMIT */
        { {1}, 1, 14, 14 },
        { {4999}, 1, 15, 15 },
        { {5000}, 1, 14, 14 },   /* [0, 5000) goes in, 12 halves of [5000, 10000), rest + COMMIT */
        { {7777}, 1, 14, 14 },
        { {9999}, 1, 14, 15 },   /* 14 halves that all go in, then a bare COMMIT */
        { {3, 7777}, 2, 28, 28 },
    };
    unsigned char *bad = calloc(BIG, 1);
    unsigned *commits = calloc(BIG, sizeof *commits);
    pgw_row_result *res = calloc(BIG, sizeof *res);

    assert_non_null(bad);
    assert_non_null(commits);
    assert_non_null(res);
    assert_int_equal(ceil_log2(BIG), 14);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pgw_stats st = {0};
        pmock m;
        memset(bad, 0, BIG);
        memset(commits, 0, BIG * sizeof *commits);
        for (size_t i = 0; i < cases[k].nbad; i++)
            bad[cases[k].bad[i]] = 1;
        assert_int_equal(run_isolate(&m, BIG, bad, 0, res, commits, &st), PGW_DONE);
        if (st.bisections != cases[k].probes || m.calls != cases[k].calls)
            fail_msg("bad row %zu: %llu probes, %u calls; want %llu, %u", cases[k].bad[0],
                     (unsigned long long)st.bisections, m.calls,
                     (unsigned long long)cases[k].probes, cases[k].calls);
        if (cases[k].nbad == 1)
            assert_true(m.calls <= ceil_log2(BIG) + 1);
        assert_true(m.commit[m.calls - 1]);
        check_done(BIG, bad, res, commits);
    }
    free(bad);
    free(commits);
    free(res);
}

/* Every n up to 130, every position of one bad row: at most
 * ceil(log2 n) + 1 round trips, and the contract holds. */
static void test_isolate_sweep(void **state)
{
    (void)state;
    enum { MAXN = 130 };
    for (size_t n = 1; n <= MAXN; n++) {
        for (size_t b = 0; b < n; b++) {
            unsigned char bad[MAXN] = {0};
            unsigned commits[MAXN] = {0};
            pgw_row_result res[MAXN];
            pgw_stats st = {0};
            pmock m;
            bad[b] = 1;
            assert_int_equal(run_isolate(&m, n, bad, 0, res, commits, &st), PGW_DONE);
            if (m.calls > ceil_log2(n) + 1)
                fail_msg("n=%zu bad=%zu: %u round trips > ceil(log2 n) + 1 = %u", n, b, m.calls,
                         ceil_log2(n) + 1);
            check_done(n, bad, res, commits);
        }
    }
}

/* ---- encoders ------------------------------------------------------------ */

typedef struct enc_case {
    const char *in;     /* NULL = SQL NULL */
    size_t len;
    const char *want;
    size_t want_len;
} enc_case;

#define S(lit) (lit), sizeof(lit) - 1

static void test_copy_field(void **state)
{
    (void)state;
    static const enc_case cases[] = {
        { NULL, 0, S("\\N") },
        { S(""), S("") },
        { S("plain text"), S("plain text") },
        { S("a\tb"), S("a\\tb") },
        { S("l1\nl2\r\n"), S("l1\\nl2\\r\\n") },
        { S("back\\slash"), S("back\\\\slash") },
        { S("\\N"), S("\\\\N") },                  /* literal \N is not NULL */
        { S("\\."), S("\\\\.") },                  /* not the end-of-data marker */
        { S("quo\"te's"), S("quo\"te's") },
        { S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") },
        { S("\x01\x1f\x7f,;|"), S("\x01\x1f\x7f,;|") },
        { S("nul\0here"), S("nul\\000here") },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        aq_buf b = {0};
        assert_int_equal(pgw_copy_field(&b, cases[i].in, cases[i].len), 0);
        if (b.len != cases[i].want_len || (b.len && memcmp(b.data, cases[i].want, b.len) != 0))
            fail_msg("case %zu: got %.*s (%zu bytes)", i, (int)b.len, b.data, b.len);
        free(b.data);
    }
}

static void test_array_elem(void **state)
{
    (void)state;
    static const enc_case cases[] = {
        { NULL, 0, S("NULL") },
        { S(""), S("\"\"") },
        { S("NULL"), S("\"NULL\"") },              /* the string, not SQL NULL */
        { S("a,b {c} d"), S("\"a,b {c} d\"") },
        { S("say \"hi\""), S("\"say \\\"hi\\\"\"") },
        { S("c:\\dir\\"), S("\"c:\\\\dir\\\\\"") },
        { S("tab\there\nnl"), S("\"tab\there\nnl\"") },
        { S("  padded  "), S("\"  padded  \"") },
        { S("\xe6\x97\xa5\xe6\x9c\xac"), S("\"\xe6\x97\xa5\xe6\x9c\xac\"") },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        aq_buf b = {0};
        assert_int_equal(pgw_array_elem(&b, cases[i].in, cases[i].len), 0);
        if (b.len != cases[i].want_len || (b.len && memcmp(b.data, cases[i].want, b.len) != 0))
            fail_msg("case %zu: got %.*s (%zu bytes)", i, (int)b.len, b.data, b.len);
        free(b.data);
    }
}

static void set_field(aq_job *j, auditq_field f, const char *s)
{
    j->f[f].p = s;
    j->f[f].len = s ? (uint32_t)strlen(s) : 0;
}

static void test_copy_row(void **state)
{
    (void)state;
    aq_job j;
    aq_buf b = {0};
    static const uint8_t id[16] = { 0x01, 0x8f, 0x3a, 0x5b, 0x7c, 0x9d, 0x7e, 0xf0,
                                    0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef };

    memset(&j, 0, sizeof j);
    memcpy(j.id, id, 16);
    j.occurred_at_us = 1700000000123456;
    j.priority = 1;
    set_field(&j, AUDITQ_TENANT_ID, "acme");
    set_field(&j, AUDITQ_ACTOR_ID, "u\t1");
    set_field(&j, AUDITQ_ACTION, "page.update");
    set_field(&j, AUDITQ_OUTCOME, "success");
    set_field(&j, AUDITQ_USER_AGENT, "");
    set_field(&j, AUDITQ_CHANGES, "{\"t\":\"a\\nb\"}");
    assert_int_equal(pgw_copy_row(&b, &j, 0), 0);

    static const char want[] =
        "0\t018f3a5b-7c9d-7ef0-8123-456789abcdef\t1700000000123456\thigh\t"
        "acme\tu\\t1\t\\N\tpage.update\t\\N\t\\N\tsuccess\t\\N\t\t\\N\t\\N\t"
        "{\"t\":\"a\\\\nb\"}\t\\N\t\\N\n";
    if (b.len != sizeof want - 1 || memcmp(b.data, want, b.len) != 0)
        fail_msg("got %.*s", (int)b.len, b.data);

    /* An unknown priority goes out as NULL (rejected per row by NOT NULL);
     * negative times are written as is. */
    b.len = 0;
    memset(&j, 0, sizeof j);
    j.priority = 9;
    j.occurred_at_us = -1;
    set_field(&j, AUDITQ_ACTION, "x");
    assert_int_equal(pgw_copy_row(&b, &j, 99999), 0);
    static const char want2[] =
        "99999\t00000000-0000-0000-0000-000000000000\t-1\t\\N\t"
        "\\N\t\\N\t\\N\tx\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n";
    if (b.len != sizeof want2 - 1 || memcmp(b.data, want2, b.len) != 0)
        fail_msg("got %.*s", (int)b.len, b.data);

    /* clock_flag (worker/clockskew.h) is the last column: its name, or \N. */
    b.len = 0;
    j.clock_flag = CLOCKSKEW_BACKFILL;
    assert_int_equal(pgw_copy_row(&b, &j, 7), 0);
    static const char want3[] =
        "7\t00000000-0000-0000-0000-000000000000\t-1\t\\N\t"
        "\\N\t\\N\t\\N\tx\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tbackfill\n";
    if (b.len != sizeof want3 - 1 || memcmp(b.data, want3, b.len) != 0)
        fail_msg("got %.*s", (int)b.len, b.data);
    b.len = 0;
    j.clock_flag = CLOCKSKEW_FUTURE;
    assert_int_equal(pgw_copy_row(&b, &j, 7), 0);
    assert_true(b.len > 8 && memcmp(b.data + b.len - 8, "\tfuture\n", 8) == 0);
    free(b.data);
}

/* A writer that was never connected: NULL-safe free, not connected, and a
 * write to an unreachable server is a transient PGW_RETRY with the reason. */
static void test_unreachable(void **state)
{
    (void)state;
    aq_config cfg;
    memset(&cfg, 0, sizeof cfg);
    /* Port 1 on localhost: refused at once, no timeout to wait for. */
    snprintf(cfg.database_url, sizeof cfg.database_url,
             "postgresql://auditq@127.0.0.1:1/auditq");
    cfg.pg_connect_timeout_s = 2;
    cfg.statement_timeout_ms = 1000;

    pgw_free(NULL);
    pgw *w = pgw_new(&cfg);
    assert_non_null(w);
    assert_int_equal(pgw_connected(w), 0);

    aq_job j;
    memset(&j, 0, sizeof j);
    pgw_row_result res[1];
    pgw_stats st = {0};
    char err[256];
    res[0].bad = 7;
    assert_int_equal(pgw_write(w, &j, 1, res, &st, err, sizeof err), PGW_RETRY);
    assert_int_equal(res[0].bad, 0);
    assert_int_equal(st.transactions, 0);
    assert_int_equal(st.round_trips, 0);
    assert_int_equal(pgw_connected(w), 0);
    assert_non_null(strstr(err, "connect: "));
    assert_non_null(strstr(err, "Connection refused"));
    assert_int_equal(pgw_last_fault(w), PGW_FAULT_UNREACHABLE);
    pgw_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_fault_of),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_conn_message),
        cmocka_unit_test(test_hold_next),
        cmocka_unit_test(test_hold_probe_rate),
        cmocka_unit_test(test_bisect_table),
        cmocka_unit_test(test_bisect_transient_partial_marks),
        cmocka_unit_test(test_bisect_big_one_bad),
        cmocka_unit_test(test_bisect_big_two_bad),
        cmocka_unit_test(test_bisect_big_none_bad),
        cmocka_unit_test(test_bisect_all_bad),
        cmocka_unit_test(test_isolate_table),
        cmocka_unit_test(test_isolate_transient),
        cmocka_unit_test(test_isolate_big),
        cmocka_unit_test(test_isolate_sweep),
        cmocka_unit_test(test_copy_field),
        cmocka_unit_test(test_array_elem),
        cmocka_unit_test(test_copy_row),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
