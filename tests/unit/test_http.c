/* test_http.c -- the worker's HTTP endpoint (worker/http.c): the request
 * head parser on a table of good and hostile heads with the exact status
 * each gets, and the server on a real loopback socket: exact response
 * bytes for GET and HEAD, 404/405/431 answers, requests split across many
 * writes, and the connection limit: idle connections give their slots to
 * newcomers (300 silent clients do not stop /healthz and /readyz answering
 * 200 within 100 ms); only 32 connections busy with a response turn the
 * 33rd away with 503. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "aq_test.h"
#include "http.h"

/* ---- parser --------------------------------------------------------------- */

static void test_parse_table(void **state)
{
    static const struct {
        const char *head;
        int want;              /* > 0: the whole head is consumed */
        const char *method, *path;
    } cases[] = {
        { "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 1, "GET", "/metrics" },
        { "GET /metrics HTTP/1.0\r\n\r\n", 1, "GET", "/metrics" },
        { "HEAD /healthz HTTP/1.1\r\n\r\n", 1, "HEAD", "/healthz" },
        { "GET /metrics?x=1&y=2 HTTP/1.1\r\n\r\n", 1, "GET", "/metrics" },
        { "GET /a#frag HTTP/1.1\r\n\r\n", 1, "GET", "/a" },
        { "GET / HTTP/1.1\n\n", 1, "GET", "/" },                         /* bare LF */
        { "\r\nGET /readyz HTTP/1.1\r\n\r\n", 1, "GET", "/readyz" },     /* leading CRLF */
        { "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 1, "POST", "/metrics" },
        { "GET /metrics HTTP/1.1\r\nUser-Agent: Prometheus/2.42.0\r\nAccept: text/plain;q=0.9\r\n"
          "X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n", 1, "GET", "/metrics" },
        /* incomplete */
        { "GET /metrics HTTP/1.1\r\n", 0, NULL, NULL },
        { "GET /metr", 0, NULL, NULL },
        { "", 0, NULL, NULL },
        /* bad */
        { "GET  /metrics HTTP/1.1\r\n\r\n", -400, NULL, NULL },          /* two spaces */
        { "GET /metrics\r\n\r\n", -400, NULL, NULL },                    /* HTTP/0.9 */
        { "GET metrics HTTP/1.1\r\n\r\n", -400, NULL, NULL },            /* not origin-form */
        { "GET http://h/metrics HTTP/1.1\r\n\r\n", -400, NULL, NULL },
        { "GET /metrics HTTP/2.0\r\n\r\n", -505, NULL, NULL },
        { "GET /metrics HTTP/1.x\r\n\r\n", -400, NULL, NULL },
        { "GET /metrics FTP/1.1\r\n\r\n", -400, NULL, NULL },
        { "G(T /metrics HTTP/1.1\r\n\r\n", -400, NULL, NULL },           /* not a token */
        { "VERYLONGMETHODNAME /metrics HTTP/1.1\r\n\r\n", -400, NULL, NULL },
        { "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", -400, NULL, NULL },
        { "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", -400, NULL, NULL },
        { "GET /metrics HTTP/1.1\r\n: empty-name\r\n\r\n", -400, NULL, NULL },
        { "GET /m\x01 HTTP/1.1\r\n\r\n", -400, NULL, NULL },
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_request req;
        size_t len = strlen(cases[i].head);
        int r = http_parse(cases[i].head, len, &req);
        int want = cases[i].want > 0 ? (int)len : cases[i].want;
        if (r != want)
            fail_msg("case %zu (%s): want %d, got %d", i, cases[i].head, want, r);
        if (cases[i].method) {
            assert_string_equal(req.method, cases[i].method);
            assert_string_equal(req.path, cases[i].path);
            assert_int_equal(req.head, strcmp(cases[i].method, "HEAD") == 0);
        }
    }
}

/* Only the head is consumed; a pipelined second request stays unread. */
static void test_parse_length(void **state)
{
    static const char two[] = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    http_request req;
    (void)state;
    assert_int_equal(http_parse(two, sizeof two - 1, &req), 19);
    assert_string_equal(req.path, "/a");
}

static void test_parse_limits(void **state)
{
    char *buf = malloc(HTTP_MAX_REQUEST + HTTP_MAX_TARGET + 64);
    http_request req;
    size_t n;
    (void)state;

    assert_non_null(buf);
    /* Target of exactly HTTP_MAX_TARGET bytes is fine, one more is 414. */
    n = (size_t)sprintf(buf, "GET /");
    memset(buf + n, 'a', HTTP_MAX_TARGET - 1);
    n += HTTP_MAX_TARGET - 1;
    n += (size_t)sprintf(buf + n, " HTTP/1.1\r\n\r\n");
    assert_int_equal(http_parse(buf, n, &req), (int)n);
    assert_int_equal(strlen(req.path), HTTP_MAX_TARGET);
    n = (size_t)sprintf(buf, "GET /");
    memset(buf + n, 'a', HTTP_MAX_TARGET);
    n += HTTP_MAX_TARGET;
    n += (size_t)sprintf(buf + n, " HTTP/1.1\r\n\r\n");
    assert_int_equal(http_parse(buf, n, &req), -414);

    /* A head that does not end within HTTP_MAX_REQUEST bytes: 431, both
     * when the last line is unfinished and when it ends at the limit. */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nX: ");
    memset(buf + n, 'x', HTTP_MAX_REQUEST - n);
    assert_int_equal(http_parse(buf, HTTP_MAX_REQUEST - 1, &req), HTTP_PARSE_MORE);
    assert_int_equal(http_parse(buf, HTTP_MAX_REQUEST, &req), -431);
    buf[HTTP_MAX_REQUEST - 2] = '\r';
    buf[HTTP_MAX_REQUEST - 1] = '\n';
    assert_int_equal(http_parse(buf, HTTP_MAX_REQUEST, &req), -431);
    free(buf);
}

/* ---- server on a real socket ---------------------------------------------- */

static int handler_calls;

static void handler(void *ctx, const http_request *req, http_response *resp)
{
    (void)ctx;
    handler_calls++;
    if (strcmp(req->path, "/hello") == 0) {
        resp->status = 200;
        aq_buf_append(&resp->body, "hello\n", 6);
    } else if (strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/readyz") == 0) {
        resp->status = 200;
        aq_buf_append(&resp->body, "ok\n", 3);
    } else {
        resp->status = 404;
    }
}

static struct ev_loop *loop;
static http_server *srv;
static int port;

static int setup_server(void **state)
{
    char err[256];
    (void)state;
    loop = ev_loop_new(EVFLAG_AUTO);
    /* Port 0: the kernel picks a free one; http_address reports it. */
    srv = http_start(loop, "127.0.0.1:0", handler, NULL, err, sizeof err);
    if (srv == NULL)
        fail_msg("%s", err);
    const char *colon = strrchr(http_address(srv), ':');
    port = atoi(colon + 1);
    assert_true(port > 0);
    handler_calls = 0;
    return 0;
}

static int teardown_server(void **state)
{
    (void)state;
    http_stop(srv);
    ev_loop_destroy(loop);
    return 0;
}

static int connect_port(void)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Runs the loop until the server closed its side of fd; returns what it sent. */
static char *drain(int fd)
{
    static char out[16384];
    size_t n = 0;
    struct timeval tv = { 0, 10000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 500; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        ssize_t r = recv(fd, out + n, sizeof out - 1 - n, 0);
        if (r == 0)
            break;
        if (r > 0)
            n += (size_t)r;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            break;
    }
    out[n] = '\0';
    return out;
}

static char *roundtrip(const char *req, size_t len)
{
    int fd = connect_port();
    assert_int_equal(send(fd, req, len, 0), (ssize_t)len);
    char *out = drain(fd);
    close(fd);
    return out;
}

static void test_server_responses(void **state)
{
    static const char *const want_hello =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\nhello\n";
    static const char *const want_head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
    static const char *const want_404 =
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n404 Not Found\n";
    static const char *const want_405 =
        "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 23\r\nCache-Control: no-store\r\nAllow: GET, HEAD\r\nConnection: close\r\n"
        "\r\n405 Method Not Allowed\n";
    static const char *const want_400 =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n400 Bad Request\n";
    (void)state;

    assert_string_equal(roundtrip("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 32), want_hello);
    assert_string_equal(roundtrip("HEAD /hello HTTP/1.0\r\n\r\n", 24), want_head);
    assert_string_equal(roundtrip("GET /nope HTTP/1.1\r\n\r\n", 22), want_404);
    assert_string_equal(roundtrip("DELETE /hello HTTP/1.1\r\n\r\n", 26), want_405);
    assert_string_equal(roundtrip("GET hello HTTP/1.1\r\n\r\n", 22), want_400);
    /* 405 and 400 never reach the handler. */
    assert_int_equal(handler_calls, 3);
}

static void test_server_split_request(void **state)
{
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    int fd = connect_port();
    (void)state;
    /* One byte per send, the loop running in between. */
    for (size_t i = 0; i < sizeof req - 1; i++) {
        assert_int_equal(send(fd, req + i, 1, 0), 1);
        ev_run(loop, EVRUN_NOWAIT);
    }
    char *out = drain(fd);
    close(fd);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "\r\n\r\nhello\n"));
    assert_int_equal(handler_calls, 1);
}

static void test_server_too_large(void **state)
{
    char *big = malloc(HTTP_MAX_REQUEST + 100);
    size_t n;
    (void)state;
    assert_non_null(big);
    n = (size_t)sprintf(big, "GET /hello HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'x', HTTP_MAX_REQUEST + 100 - n);
    int fd = connect_port();
    /* The server answers after reading HTTP_MAX_REQUEST bytes; the rest may
     * be refused once it has closed, which is fine. */
    (void)send(fd, big, HTTP_MAX_REQUEST + 100, MSG_NOSIGNAL);
    char *out = drain(fd);
    close(fd);
    free(big);
    assert_memory_equal(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n", 46);
    assert_int_equal(handler_calls, 0);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 300 clients connect and say nothing (a scanner, a pool of pre-opened
 * connections): liveness and readiness probes still answer 200 at once.
 * Before, the 32 slots filled up and every probe got 503 until the idle
 * ones timed out 5 s later. */
static void test_server_idle_connections_shed(void **state)
{
    enum { IDLE = 300 };
    static const char want[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\nok\n";
    static const char *const probes[] = { "GET /healthz HTTP/1.1\r\n\r\n", "GET /readyz HTTP/1.1\r\n\r\n" };
    static const char *const names[] = { "/healthz", "/readyz" };
    int fds[IDLE];
    (void)state;

    for (int i = 0; i < IDLE; i++) {
        fds[i] = connect_port();
        ev_run(loop, EVRUN_NOWAIT);
    }
    for (int round = 0; round < 3; round++) {
        for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
            long long t0 = now_ms();
            char *out = roundtrip(probes[p], strlen(probes[p]));
            long long took = now_ms() - t0;
            if (strcmp(out, want) != 0)
                fail_msg("%s with %d idle connections open: got '%s'", names[p], IDLE, out);
            if (took > bound_ms(100))
                fail_msg("%s took %lld ms with %d idle connections open, expected < 100", names[p], took,
                         IDLE);
        }
        /* More idle clients arrive between probes. */
        for (int i = 0; i < 40; i++) {
            close(fds[i + round * 40]);
            fds[i + round * 40] = connect_port();
            ev_run(loop, EVRUN_NOWAIT);
        }
    }
    assert_int_equal(handler_calls, 6);
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
}

/* The limit still holds against clients that are being answered: 32
 * connections whose responses were sent but which have not closed (the
 * server waits for them in DRAIN) leave no idle slot, so the 33rd
 * connection is turned away with 503. */
static void test_server_connection_limit(void **state)
{
    static const char req[] = "GET /hello HTTP/1.1\r\n\r\n";
    int fds[HTTP_MAX_CONNS];
    char buf[512];
    (void)state;
    for (int i = 0; i < HTTP_MAX_CONNS; i++) {
        fds[i] = connect_port();
        assert_int_equal(send(fds[i], req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
        /* Read the response, keep the connection open. */
        struct timeval tv = { 0, 10000 };
        ssize_t n = -1;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        for (int k = 0; k < 500 && n <= 0; k++) {
            ev_run(loop, EVRUN_NOWAIT);
            n = recv(fds[i], buf, sizeof buf, 0);
        }
        assert_true(n > 17);
        assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    }
    int extra = connect_port();
    char *out = drain(extra);
    close(extra);
    assert_string_equal(out, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n");
    /* Freeing one slot lets a new client through. */
    close(fds[0]);
    for (int i = 0; i < 5; i++)
        ev_run(loop, EVRUN_NOWAIT);
    out = roundtrip("GET /hello HTTP/1.1\r\n\r\n", 23);
    assert_memory_equal(out, "HTTP/1.1 200 OK\r\n", 17);
    for (int i = 1; i < HTTP_MAX_CONNS; i++)
        close(fds[i]);
}

static void test_start_errors(void **state)
{
    char err[256];
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    http_server *s;
    char addr[64];
    (void)state;

    /* The port test_server_* used is still bound by srv. */
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_null(http_start(l, addr, handler, NULL, err, sizeof err));
    char want[256];
    snprintf(want, sizeof want, "http_listen = %s: cannot listen: Address already in use; another "
             "process uses that port: choose a free port or stop it", addr);
    assert_string_equal(err, want);

    assert_null(http_start(l, "192.0.2.1:9187", handler, NULL, err, sizeof err));
    assert_string_equal(err, "http_listen = 192.0.2.1:9187: cannot listen: Cannot assign requested "
                             "address; no local interface has that address: use 127.0.0.1, an "
                             "address of this host, or :PORT");
    assert_null(http_start(l, "nocolon", handler, NULL, err, sizeof err));
    assert_string_equal(err, "http_listen = nocolon: must be host:port, [v6addr]:port or :port");

    /* ":0" = every address. */
    s = http_start(l, ":0", handler, NULL, err, sizeof err);
    if (s == NULL)
        fail_msg("%s", err);
    http_stop(s);
    http_stop(NULL);
    ev_loop_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_length),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test_setup_teardown(test_server_responses, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_server_split_request, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_server_too_large, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_server_idle_connections_shed, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_server_connection_limit, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_start_errors, setup_server, teardown_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
