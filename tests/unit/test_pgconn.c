/* test_pgconn.c -- the one PostgreSQL connector (common/pgconn.c): the
 * precedence rule between database_url and auditq's own keywords, in the
 * conninfo and URL forms, with one host and several; and the multi-host
 * connect that moves past a silent host.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "clock.h"
#include "pgconn.h"
#include "aq_test.h"

/* p's keywords as "k=v k=v ..." (the dbname value as given). */
static void dump_keys(const pgconn_params *p, char *out, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; p->keys[i] != NULL; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s=%s", i ? " " : "", p->keys[i], p->vals[i]);
    assert_null(p->vals[p->nkeys]);
}

/* Every host of p as "host|hostaddr|port" joined by ",", '-' for none. */
static void dump_hosts(const pgconn_params *p, char *out, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    if (p->nhosts <= 1)
        return;
    for (int i = 0; i < p->nhosts; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s|%s|%s", i ? "," : "",
                              p->host[i] ? p->host[i] : "-", p->hostaddr[i] ? p->hostaddr[i] : "-",
                              p->port[i] ? p->port[i] : "-");
}

static const struct {
    const char *conninfo;
    const char *keys;   /* after dbname=<conninfo> */
    int nhosts;
    const char *hosts;
    int connect_timeout_ms;  /* each host's time: the URL's connect_timeout wins */
} cases[] = {
    /* Nothing set by the user: every auditq keyword added. */
    { "host=db port=5432 dbname=auditq",
      "application_name=auditq-worker connect_timeout=7 tcp_user_timeout=3000 client_encoding=UTF8",
      1, "", 7000 },
    /* Conninfo form: what it sets wins, the rest is added. */
    { "host=db dbname=auditq application_name=mine connect_timeout=2",
      "tcp_user_timeout=3000 client_encoding=UTF8", 1, "", 2000 },
    { "dbname=auditq tcp_user_timeout=9000 client_encoding=LATIN1",
      "application_name=auditq-worker connect_timeout=7", 1, "", 7000 },
    /* URL form, parameters in the query string. */
    { "postgresql://u@db:5433/auditq?application_name=mine&tcp_user_timeout=1",
      "connect_timeout=7 client_encoding=UTF8", 1, "", 7000 },
    { "postgres://db/auditq", "application_name=auditq-worker connect_timeout=7 "
      "tcp_user_timeout=3000 client_encoding=UTF8", 1, "", 7000 },
    /* A plain database name (libpq does not expand it). */
    { "auditq", "application_name=auditq-worker connect_timeout=7 tcp_user_timeout=3000 "
      "client_encoding=UTF8", 1, "", 7000 },
    /* Multi-host, conninfo form: one port per host. */
    { "host=pg1,pg2 port=5432,5433 dbname=auditq target_session_attrs=read-write",
      "application_name=auditq-worker connect_timeout=7 tcp_user_timeout=3000 client_encoding=UTF8",
      2, "pg1|-|5432,pg2|-|5433", 7000 },
    /* One port for all hosts: left to the conninfo. */
    { "host=a,b,c port=6000 dbname=x connect_timeout=1",
      "application_name=auditq-worker tcp_user_timeout=3000 client_encoding=UTF8",
      3, "a|-|-,b|-|-,c|-|-", 2000 },
    /* hostaddr list beside the host list. */
    { "host=a,b hostaddr=10.0.0.1,10.0.0.2 port=1,2 application_name=x",
      "connect_timeout=7 tcp_user_timeout=3000 client_encoding=UTF8",
      2, "a|10.0.0.1|1,b|10.0.0.2|2", 7000 },
    /* Multi-host, URL form. */
    { "postgresql://u@127.0.0.1:5432,127.0.0.2:5433/auditq?target_session_attrs=read-write"
      "&connect_timeout=4",
      "application_name=auditq-worker tcp_user_timeout=3000 client_encoding=UTF8",
      2, "127.0.0.1|-|5432,127.0.0.2|-|5433", 4000 },
};

static void test_precedence(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const pgconn_opts o = { .conninfo = cases[i].conninfo, .component = "auditq-worker",
                                .connect_timeout_s = 7, .tcp_user_timeout_ms = 3000,
                                .client_encoding = "UTF8" };
        pgconn_params p;
        char err[200], got[1024], want[1024], hosts[512];

        assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), 0);
        dump_keys(&p, got, sizeof got);
        snprintf(want, sizeof want, "dbname=%s %s", cases[i].conninfo, cases[i].keys);
        assert_string_equal(got, want);
        assert_int_equal(p.nhosts, cases[i].nhosts);
        dump_hosts(&p, hosts, sizeof hosts);
        assert_string_equal(hosts, cases[i].hosts);
        assert_int_equal(p.connect_timeout_ms, cases[i].connect_timeout_ms);
        pgconn_params_free(&p);
    }
}

/* The keywords a component leaves out are not added at all. */
static void test_only_what_is_asked(void **state)
{
    (void)state;
    const pgconn_opts o = { .conninfo = "postgresql://db/x", .component = "auditqctl",
                            .connect_timeout_s = 10 };
    pgconn_params p;
    char err[200], got[512];

    assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), 0);
    dump_keys(&p, got, sizeof got);
    assert_string_equal(got, "dbname=postgresql://db/x application_name=auditqctl connect_timeout=10");
    pgconn_params_free(&p);
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct { const char *conninfo, *err; } bad[] = {
        { "host=a,b,c port=1,2 dbname=x",
          "3 host(s) but 2 port(s); give one port for all hosts or one per host" },
        { "host=a,b hostaddr=1.1.1.1 dbname=x",
          "2 host(s) but 1 hostaddr(s); give one hostaddr per host" },
        { "host=a dbname", "missing \"=\" after \"dbname\" in connection info string" },
        { "postgresql://db/x?nosuch=1", "invalid URI query parameter: \"nosuch\"" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const pgconn_opts o = { .conninfo = bad[i].conninfo, .component = "auditqctl" };
        pgconn_params p;
        char err[300];

        assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), -1);
        assert_string_equal(err, bad[i].err);
        pgconn_params_free(&p);
    }
}

static void test_reason(void **state)
{
    (void)state;
    char out[300];

    pgconn_reason(out, sizeof out, "connection to server at \"127.0.0.1\", port 1 failed: Connection "
                  "refused\n\tIs the server running on that host and accepting TCP/IP connections?\n");
    assert_string_equal(out, "connection to server at \"127.0.0.1\", port 1 failed: Connection refused");
    pgconn_reason(out, sizeof out, "connection to server at \"a\", port 1 failed: FATAL:  x\n"
                  "connection to server at \"b\", port 2 failed: session is read-only\n");
    assert_string_equal(out, "connection to server at \"a\", port 1 failed: FATAL:  x; "
                        "connection to server at \"b\", port 2 failed: session is read-only");
}

/* A listening socket nobody accepts from: the kernel completes the TCP
 * handshake, then nothing is ever said -- a silent server. */
static int silent_listener(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* host 1 silent, host 2 refusing: the connect gives host 1 its 300 ms and
 * then tries host 2 (libpq's non-blocking connect alone would stay on
 * host 1), and reports both. */
static void test_multihost_moves_past_silent_host(void **state)
{
    (void)state;
    int port, timed_out = -1;
    int fd = silent_listener(&port);
    char url[300], err[200], msg[1024], want[300];
    pgconn_params p;

    snprintf(url, sizeof url, "host=127.0.0.1,127.0.0.1 port=%d,1 dbname=x user=u sslmode=disable "
             "gssencmode=disable", port);
    const pgconn_opts o = { .conninfo = url, .component = "auditq-worker" };
    assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), 0);
    assert_int_equal(p.nhosts, 2);
    int64_t t0 = clock_mono_us();
    PGconn *c = pgconn_connect(&p, 300, PQERRORS_DEFAULT, &timed_out, msg, sizeof msg);
    long long took = (long long)((clock_mono_us() - t0) / 1000);
    assert_non_null(c);
    assert_int_equal(timed_out, 0);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    snprintf(want, sizeof want, "connection to server at \"127.0.0.1\", port %d failed: no answer "
             "within 300 ms\n", port);
    assert_memory_equal(msg, want, strlen(want));
    assert_non_null(strstr(msg + strlen(want), "port 1 failed: Connection refused"));
    assert_true(took >= 300 && took < bound_ms(2000));
    PQfinish(c);

    /* Both silent: a timeout, as for one silent host. */
    snprintf(url, sizeof url, "host=127.0.0.1,127.0.0.1 port=%d,%d dbname=x user=u sslmode=disable "
             "gssencmode=disable", port, port);
    pgconn_params_free(&p);
    assert_int_equal(pgconn_params_init(&p, &o, err, sizeof err), 0);
    t0 = clock_mono_us();
    c = pgconn_connect(&p, 200, PQERRORS_DEFAULT, &timed_out, msg, sizeof msg);
    took = (long long)((clock_mono_us() - t0) / 1000);
    assert_null(c);
    assert_int_equal(timed_out, 1);
    assert_true(took >= 400 && took < bound_ms(2000));
    pgconn_params_free(&p);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_only_what_is_asked),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_multihost_moves_past_silent_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
