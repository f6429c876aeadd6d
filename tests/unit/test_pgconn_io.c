/* test_pgconn_io.c -- the bounded waits of common/pgconn.c (pgconn_io,
 * pgconn_connect) and the writer's connect on top of them, against a fake
 * server that completes the handshake and then goes silent, or never
 * answers at all. Moved from test_pgw.c with its assertions unchanged. */
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
#include "pgconn.h"
#include "pgw.h"
#include "aq_test.h"

/* ---- bounded waits against a silent server ------------------------------ */

/* A fake PostgreSQL server on 127.0.0.1 for one connection. SILENT_READING
 * answers the startup packet (AuthenticationOk, ReadyForQuery) and then
 * reads and drops everything without answering: a server (or a network)
 * that takes requests and never replies. SILENT_FULL answers the startup and
 * then stops reading too, so the client's sends back up: a stalled link.
 * NO_HANDSHAKE accepts the TCP connection and never answers at all. Each
 * mode lasts until the test writes to stop[1]. */
enum { SILENT_READING, SILENT_FULL, NO_HANDSHAKE };

typedef struct fake_pg {
    int mode;
    int lfd;
    int port;
    int stop[2];
    pthread_t tid;
    int running;
} fake_pg;

/* The one fake server of the running test. Static, not on the test's stack:
 * when an assertion fails cmocka longjmps out of the test body, and the
 * server thread must not be left pointing into a dead stack frame. The
 * tests that start it are registered with fake_pg_teardown, which cmocka
 * runs whether the test passed or failed, so the thread never outlives its
 * test (it used to run on into the next one when an assertion skipped
 * fake_pg_stop). */
static fake_pg the_fake;

static int read_n(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void *fake_pg_main(void *arg)
{
    fake_pg *f = arg;
    int c = accept(f->lfd, NULL, NULL);
    char buf[65536];

    if (c < 0)
        return NULL;
    if (f->mode != NO_HANDSHAKE) {
        uint32_t len;
        /* The startup packet: length (itself included), then the rest. */
        if (read_n(c, &len, 4) == 0 && ntohl(len) >= 8 && ntohl(len) - 4 <= sizeof buf &&
            read_n(c, buf, ntohl(len) - 4) == 0) {
            static const char ok[] = { 'R', 0, 0, 0, 8, 0, 0, 0, 0, 'Z', 0, 0, 0, 5, 'I' };
            if (write(c, ok, sizeof ok) != (ssize_t)sizeof ok)
                goto out;
        }
    }
    for (;;) {
        struct pollfd p[2] = { { .fd = f->stop[0], .events = POLLIN },
                               { .fd = c, .events = f->mode == SILENT_READING ? POLLIN : 0 } };
        if (poll(p, 2, -1) < 0 || p[0].revents)
            break;
        if ((p[1].revents & POLLIN) && read(c, buf, sizeof buf) <= 0)
            break;
    }
out:
    close(c);
    return NULL;
}

static fake_pg *fake_pg_start(int mode)
{
    fake_pg *f = &the_fake;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;

    f->mode = mode;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &alen), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pipe(f->stop), 0);
    assert_int_equal(pthread_create(&f->tid, NULL, fake_pg_main, f), 0);
    f->running = 1;
    return f;
}

/* Stops the server thread and closes its descriptors; a no-op when none
 * runs. Called by the test body and again by the teardown. */
static void fake_pg_stop(fake_pg *f)
{
    if (!f->running)
        return;
    f->running = 0;
    if (write(f->stop[1], "x", 1) != 1)
        abort(); /* a pipe we own: cannot fail; never leave the thread behind */
    pthread_join(f->tid, NULL);
    close(f->stop[0]);
    close(f->stop[1]);
    close(f->lfd);
}

static int fake_pg_teardown(void **state)
{
    (void)state;
    fake_pg_stop(&the_fake);
    return 0;
}

static void fake_url(char *out, size_t n, int port)
{
    /* No TLS or GSS negotiation: the fake speaks only the plain startup. */
    snprintf(out, n, "host=127.0.0.1 port=%d dbname=x user=u sslmode=disable gssencmode=disable", port);
}

/* ms since t0 (monotonic). */
static long long ms_since(int64_t t0)
{
    return (long long)((clock_mono_us() - t0) / 1000);
}

/* A server that takes the request and never answers: the writer gives up
 * after pg_timeout_ms, says so, and drops the connection (transient). */
static void test_timeout_no_answer(void **state)
{
    (void)state;
    aq_config cfg;
    char err[512];
    aq_job j;
    pgw_row_result res[1];

    fake_pg *f = fake_pg_start(SILENT_READING);
    memset(&cfg, 0, sizeof cfg);
    fake_url(cfg.database_url, sizeof cfg.database_url, f->port);
    cfg.pg_connect_timeout_s = 5;
    cfg.statement_timeout_ms = 100;
    cfg.pg_timeout_ms = 300;
    memset(&j, 0, sizeof j);

    pgw *w = pgw_new(&cfg);
    int64_t t0 = clock_mono_us();
    assert_int_equal(pgw_write(w, &j, 1, res, NULL, err, sizeof err), PGW_RETRY);
    long long took = ms_since(t0);
    assert_string_equal(err, "connect setup: no answer from PostgreSQL within 300 ms (pg_timeout_ms); "
                             "connection dropped");
    assert_true(took >= 300 && took < bound_ms(2000));
    assert_int_equal(pgw_connected(w), 0);
    assert_int_equal(pgw_last_fault(w), PGW_FAULT_STALLED);
    pgw_free(w);
    fake_pg_stop(f);
}

/* A server that accepts and never answers the startup: the writer's
 * connect gives up after pg_connect_timeout_s and calls it a stall, as
 * /readyz then says; a probe does the same. */
static void test_connect_stalled(void **state)
{
    (void)state;
    aq_config cfg;
    char err[512];
    aq_job j;
    pgw_row_result res[1];

    fake_pg *f = fake_pg_start(NO_HANDSHAKE);
    memset(&cfg, 0, sizeof cfg);
    fake_url(cfg.database_url, sizeof cfg.database_url, f->port);
    cfg.pg_connect_timeout_s = 1;
    cfg.pg_timeout_ms = 300;
    memset(&j, 0, sizeof j);
    pgw *w = pgw_new(&cfg);
    int64_t t0 = clock_mono_us();
    assert_int_equal(pgw_write(w, &j, 1, res, NULL, err, sizeof err), PGW_RETRY);
    long long took = ms_since(t0);
    assert_string_equal(err, "connect: no answer from PostgreSQL within 1 s (pg_connect_timeout_s)");
    assert_true(took >= 1000 && took < bound_ms(3000));
    assert_int_equal(pgw_last_fault(w), PGW_FAULT_STALLED);
    assert_string_equal(pgw_fault_name(pgw_last_fault(w)), "stalled");
    pgw_free(w);
    fake_pg_stop(f);
}

/* A link that stops taking data: a request bigger than every socket buffer
 * on the way backs up; the send gives up after timeout_ms and says so. */
static void test_timeout_send_stalls(void **state)
{
    (void)state;
    char url[256], m[300];
    const size_t big = 64u << 20;

    fake_pg *f = fake_pg_start(SILENT_FULL);
    fake_url(url, sizeof url, f->port);
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    pgconn_io io;
    assert_int_equal(pgconn_io_init(&io, c, 300), 0);
    char *sql = malloc(big);
    assert_non_null(sql);
    memcpy(sql, "SELECT '", 8);
    memset(sql + 8, 'x', big - 11);
    memcpy(sql + big - 3, "'", 2);
    sql[big - 1] = '\0';
    int64_t t0 = clock_mono_us();
    PGresult *r = pgconn_io_exec(&io, sql, 0, NULL);
    long long took = ms_since(t0);
    assert_int_not_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(io.timed_out, 2);
    assert_string_equal(pgconn_io_error(&io, r, m, sizeof m),
                        "PostgreSQL took no data for 300 ms (pg_timeout_ms); connection dropped");
    assert_true(took >= 300 && took < bound_ms(2000));
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQclear(r);
    PQfinish(c);
    free(sql);
    fake_pg_stop(f);
}

/* Connecting to a server that accepts and never answers: pgconn_connect
 * gives up after its timeout (ms, not libpq's whole seconds). */
static void test_connect_timeout(void **state)
{
    (void)state;
    char url[256];
    int timed_out = -1;

    fake_pg *f = fake_pg_start(NO_HANDSHAKE);
    fake_url(url, sizeof url, f->port);
    const pgconn_opts o = { .conninfo = url };
    pgconn_params p;
    char err[200];
    assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), 0);
    int64_t t0 = clock_mono_us();
    PGconn *c = pgconn_connect(&p, 250, PQERRORS_DEFAULT, &timed_out, NULL, 0);
    long long took = ms_since(t0);
    assert_null(c);
    assert_int_equal(timed_out, 1);
    assert_true(took >= 250 && took < bound_ms(1500));
    fake_pg_stop(f);

    /* Refused at once: a connection in CONNECTION_BAD, not a timeout. */
    pgconn_params_free(&p);
    snprintf(url, sizeof url, "host=127.0.0.1 port=1 dbname=x user=u sslmode=disable gssencmode=disable");
    assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), 0);
    c = pgconn_connect(&p, 2000, PQERRORS_DEFAULT, &timed_out, NULL, 0);
    assert_non_null(c);
    assert_int_equal(timed_out, 0);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(strstr(PQerrorMessage(c), "refused"));
    PQfinish(c);
    pgconn_params_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_timeout_no_answer, fake_pg_teardown),
        cmocka_unit_test_teardown(test_timeout_send_stalls, fake_pg_teardown),
        cmocka_unit_test_teardown(test_connect_timeout, fake_pg_teardown),
        cmocka_unit_test_teardown(test_connect_stalled, fake_pg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
