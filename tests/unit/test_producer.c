/* test_producer.c -- libauditq without a Redis: exact errors, and the
 * promise that no call blocks past its timeouts when Redis refuses
 * connections or accepts them and never answers. Uses real loopback
 * sockets (no mocks needed: the failure modes are the kernel's). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auditq.h"

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A listening socket that never accepts: connects succeed (the kernel
 * completes the handshake), commands are never answered. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port with nothing listening: connects are refused at once. */
static int closed_port(void)
{
    int port, fd = silent_listener(&port);
    close(fd);
    return port;
}

static auditq *open_at(int port, const char *extra_key, const char *extra_val)
{
    char url[64];
    auditq_config *cfg = auditq_config_new();
    auditq *q = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    assert_int_equal(auditq_config_set(cfg, "redis_url", url), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "connect_timeout_ms", "200"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "timeout_ms", "300"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "close_timeout_ms", "100"), AUDITQ_OK);
    if (extra_key)
        assert_int_equal(auditq_config_set(cfg, extra_key, extra_val), AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    auditq_config_free(cfg);
    return q;
}

static void test_config_errors(void **state)
{
    (void)state;
    auditq_config *cfg = auditq_config_new();
    static const struct { const char *k, *v; auditq_rc rc; const char *msg; } cases[] = {
        {"batch_size", "0", AUDITQ_ERR_CONFIG, "batch_size = '0': must be an integer from 1 to 100000"},
        {"timeout_ms", "12x", AUDITQ_ERR_CONFIG, "timeout_ms = '12x': must be an integer from 1 to 60000"},
        {"full_policy", "drop", AUDITQ_ERR_CONFIG, "full_policy = 'drop': must be block or error"},
        {"namespace", "a b", AUDITQ_ERR_CONFIG, "namespace = 'a b': must be 1..64 characters of A-Z a-z 0-9 _ . -"},
        {"bogus", "1", AUDITQ_ERR_CONFIG, "unknown setting 'bogus' (see auditq.h for the list)"},
        /* A near miss names the key, as the worker's config does. */
        {"batchsize", "5", AUDITQ_ERR_CONFIG, "unknown setting 'batchsize' (did you mean 'batch_size'?)"},
        {"spool_max_byte", "4096", AUDITQ_ERR_CONFIG,
         "unknown setting 'spool_max_byte' (did you mean 'spool_max_bytes'?)"},
        {"redis_ur", "redis://h", AUDITQ_ERR_CONFIG, "unknown setting 'redis_ur' (did you mean 'redis_url'?)"},
        {"redis_url", "http://x", AUDITQ_ERR_CONFIG,
         "redis_url: Redis URL 'http://x': must start with redis://, rediss:// (TLS) or unix://"},
        {"redis_url", "redis://h:99999", AUDITQ_ERR_CONFIG, "redis_url: Redis URL 'redis://h:99999': port must be 1..65535"},
        {"redis_url", "redis://user:p%40ss@h:1/2", AUDITQ_OK, ""},
        {"sync_connections", "64", AUDITQ_OK, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        auditq_rc rc = auditq_config_set(cfg, cases[i].k, cases[i].v);
        if (rc != cases[i].rc || strcmp(auditq_last_error(), cases[i].msg) != 0)
            fail_msg("%s=%s: rc %d '%s', expected %d '%s'", cases[i].k, cases[i].v, rc,
                     auditq_last_error(), cases[i].rc, cases[i].msg);
    }
    auditq_config_free(cfg);
    auditq_config_free(NULL);
    assert_int_equal(auditq_close(NULL), AUDITQ_OK);
}

static void test_event_errors(void **state)
{
    (void)state;
    auditq_event *ev = auditq_event_new(NULL);
    assert_int_equal(auditq_event_set_json(ev, AUDITQ_CHANGES, "{\"a\":1,}"), AUDITQ_ERR_INVALID_JSON);
    assert_string_equal(auditq_last_error(), "changes: invalid JSON object: offset 7: trailing comma before '}'");
    assert_int_equal(auditq_event_set_json(ev, AUDITQ_METADATA, "[1]"), AUDITQ_ERR_INVALID_JSON);
    assert_int_equal(auditq_event_set(ev, AUDITQ_TENANT_ID, "bad \xff byte"), AUDITQ_ERR_INVALID_UTF8);
    assert_string_equal(auditq_last_error(), "tenant_id: invalid UTF-8 at byte 4");
    assert_int_equal(auditq_event_setn(ev, AUDITQ_ACTOR_ID, "a\0b", 3), AUDITQ_ERR_INVALID_UTF8);
    assert_string_equal(auditq_last_error(), "actor_id: NUL byte at byte 1");
    assert_int_equal(auditq_event_set(ev, AUDITQ_OUTCOME, "maybe"), AUDITQ_ERR_INVALID_ARG);
    assert_int_equal(auditq_event_set(ev, AUDITQ_EVENT_ID, "not-a-uuid"), AUDITQ_ERR_INVALID_ARG);
    assert_int_equal(auditq_event_set(ev, AUDITQ_CHANGES, "{}"), AUDITQ_ERR_INVALID_ARG);
    assert_int_equal(auditq_event_set_priority(ev, (auditq_priority)7), AUDITQ_ERR_INVALID_ARG);
    assert_int_equal(auditq_event_set_time(ev, -5), AUDITQ_ERR_INVALID_ARG);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(auditq_event_set(ev, AUDITQ_ACTION, big), AUDITQ_ERR_TOO_LARGE);
    /* Sending without an action is refused before any I/O. */
    auditq *q = open_at(closed_port(), NULL, NULL);
    assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_ERR_MISSING_FIELD);
    assert_string_equal(auditq_last_error(), "action is required (e.g. \"page.update\")");
    assert_int_equal(auditq_send_async(q, ev, NULL), AUDITQ_ERR_MISSING_FIELD);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_event_free(ev);
    auditq_event_free(NULL);
    for (int rc = 0; rc <= AUDITQ_ERR_PROTOCOL; rc++)
        assert_string_not_equal(auditq_strerror((auditq_rc)rc), "unknown error");
}

/* A successful call clears the thread's last error: after AUDITQ_OK,
 * auditq_last_error() is "", whatever failed before it (each row first
 * makes a call fail, then runs one that succeeds). */
static void test_success_clears_last_error(void **state)
{
    (void)state;
    auditq *q = open_at(closed_port(), NULL, NULL);
    auditq_event *ev = auditq_event_new("user.login");
    auditq_stats st;
    char buf[64];

    for (int step = 0; step < 9; step++) {
        assert_int_equal(auditq_config_set(NULL, "batch_size", "1"), AUDITQ_ERR_INVALID_ARG);
        assert_string_equal(auditq_last_error(), "auditq_config_set: NULL argument");
        auditq_rc rc;
        switch (step) {
        case 0: rc = auditq_event_set_priority(ev, AUDITQ_PRIORITY_HIGH); break;
        case 1: rc = auditq_event_set_time(ev, 1700000000000000LL); break;
        case 2: rc = auditq_get_stats(q, &st); break;
        case 3: rc = auditq_spool_problem(q, buf, sizeof buf); break;
        case 4: rc = auditq_send_async(q, ev, NULL); break;
        case 5: rc = auditq_flush(NULL, 0) == AUDITQ_ERR_INVALID_ARG ? auditq_close(NULL) : AUDITQ_ERR_PROTOCOL; break;
        case 6: rc = auditq_event_set(ev, AUDITQ_TENANT_ID, "acme"); break;
        case 7: rc = auditq_event_set_json(ev, AUDITQ_CHANGES, "{}"); break;
        default: rc = auditq_flush(q, 0) == AUDITQ_ERR_TIMEOUT ? auditq_event_set_time(ev, 0) : AUDITQ_ERR_PROTOCOL; break;
        }
        assert_int_equal(rc, AUDITQ_OK);
        if (auditq_last_error()[0] != '\0')
            fail_msg("step %d: AUDITQ_OK but auditq_last_error() is still '%s'", step, auditq_last_error());
    }
    auditq_event_free(ev);
    assert_int_equal(auditq_close(q), AUDITQ_ERR_TIMEOUT); /* the async event, refused */
    assert_int_equal(auditq_close(NULL), AUDITQ_OK);
    assert_string_equal(auditq_last_error(), "");
}

static void test_refused_fails_fast(void **state)
{
    (void)state;
    auditq *q = open_at(closed_port(), NULL, NULL);
    auditq_event *ev = auditq_event_new("user.login");
    long long t0 = ms_now();
    assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_ERR_CONNECT);
    assert_true(ms_now() - t0 < 200); /* refused: no timeout to wait out */
    assert_non_null(strstr(auditq_last_error(), "Connection refused"));
    assert_int_equal(auditq_ping(q), AUDITQ_ERR_CONNECT);
    auditq_stats st;
    assert_int_equal(auditq_get_stats(q, &st), AUDITQ_OK);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.sent_sync, 0);
    auditq_event_free(ev);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
}

static void test_silent_redis_times_out(void **state)
{
    (void)state;
    int port, fd = silent_listener(&port);
    auditq *q = open_at(port, NULL, NULL);
    auditq_event *ev = auditq_event_new("user.login");
    char id[AUDITQ_ID_SIZE];
    long long t0 = ms_now();
    auditq_rc rc = auditq_send(q, ev, id);
    long long took = ms_now() - t0;
    assert_int_equal(rc, AUDITQ_ERR_TIMEOUT);
    /* bounded by connect_timeout_ms (200) + timeout_ms (300) */
    if (took < 250 || took > 500 + 250)
        fail_msg("sync send against a silent server took %lld ms, expected ~300 (<= 750)", took);
    assert_int_equal(strlen(id), 36); /* the id to retry with */
    auditq_event_free(ev);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    close(fd);
}

static void test_async_buffer_full_never_drops_silently(void **state)
{
    (void)state;
    auditq *q = open_at(closed_port(), "buffer_events", "10");
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    /* full_policy=error: the 11th event is refused, not dropped. */
    auditq_config *cfg = auditq_config_new();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", closed_port());
    auditq_config_set(cfg, "redis_url", url);
    auditq_config_set(cfg, "buffer_events", "10");
    auditq_config_set(cfg, "full_policy", "error");
    auditq_config_set(cfg, "close_timeout_ms", "100");
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    auditq_event *ev = auditq_event_new("file.upload");
    for (int i = 0; i < 10; i++)
        assert_int_equal(auditq_send_async(q, ev, NULL), AUDITQ_OK);
    long long t0 = ms_now();
    assert_int_equal(auditq_send_async(q, ev, NULL), AUDITQ_ERR_BUFFER_FULL);
    assert_true(ms_now() - t0 < 50);
    /* full_policy=block waits enqueue_timeout_ms, then refuses. */
    auditq_config_set(cfg, "full_policy", "block");
    auditq_config_set(cfg, "enqueue_timeout_ms", "100");
    auditq *q2 = NULL;
    assert_int_equal(auditq_open(cfg, &q2), AUDITQ_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(auditq_send_async(q2, ev, NULL), AUDITQ_OK);
    t0 = ms_now();
    assert_int_equal(auditq_send_async(q2, ev, NULL), AUDITQ_ERR_BUFFER_FULL);
    long long took = ms_now() - t0;
    if (took < 90 || took > 400)
        fail_msg("blocked %lld ms, expected ~100", took);
    auditq_stats st;
    auditq_get_stats(q, &st);
    assert_int_equal(st.queued_async, 10);
    assert_int_equal(st.rejected_full, 1);
    assert_int_equal(st.buffered, 10);
    assert_int_equal(auditq_flush(q, 50), AUDITQ_ERR_TIMEOUT);
    /* close cannot deliver: it says so */
    assert_int_equal(auditq_close(q), AUDITQ_ERR_TIMEOUT);
    /* ... and why: the flusher's last failure. */
    char want[256];
    snprintf(want, sizeof want, "auditq_close: 10 events could not be delivered to Redis within "
             "close_timeout_ms=100 and are lost; last error: cannot connect to Redis at %s: Connection refused",
             url + 8);
    assert_string_equal(auditq_last_error(), want);
    assert_int_equal(auditq_close(q2), AUDITQ_ERR_TIMEOUT);
    auditq_event_free(ev);
    auditq_config_free(cfg);
}

#if defined(__SANITIZE_THREAD__)
#define AQ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AQ_TSAN 1
#endif
#endif
#ifndef AQ_TSAN
#define AQ_TSAN 0
#endif

/* The child of fork() drops its copy of a handle with auditq_abandon: it
 * returns at once (no flusher or replay thread to join in the child), the
 * parent keeps the spool's lock while it lives (the child cannot open the
 * same spool, it can open its own), and once the parent closes its handle
 * the lock is free again -- while the child still runs. Were the child's
 * copy of the spool descriptor left open (no auditq_abandon), the flock
 * would stay held by the child and the parent's reopen would fail with
 * AUDITQ_ERR_SPOOL. */
static void test_abandon_in_fork_child(void **state)
{
    (void)state;
    char dir[] = "/tmp/aq-abandon-XXXXXX", path[128], child_path[160];
    int up[2], down[2];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/app.spool", dir);
    auditq *q = open_at(closed_port(), "spool_path", path);
    auditq_event *ev = auditq_event_new("user.login");
    for (int i = 0; i < 3; i++)
        assert_int_equal(auditq_send_async(q, ev, NULL), AUDITQ_OK);
    assert_int_equal(auditq_flush(q, 2000), AUDITQ_OK); /* spooled: Redis refuses */
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        char c = 0;
        close(up[0]); /* EOF on down[0] once the parent is gone, even if it fails an assert */
        close(down[1]);
        /* Returns: no thread of the parent is joined or waited for (a
         * hang here would be caught by the unit test timeout). */
        if (auditq_abandon(q) != AUDITQ_OK)
            code = 1;
#if !AQ_TSAN
        /* A new handle starts threads: TSan kills a child that starts a
         * thread after a multi-threaded fork (die_after_fork), so under
         * TSan the test checks the abandon and the lock only. */
        auditq_config *cfg = auditq_config_new();
        auditq *again = NULL;
        auditq_config_set(cfg, "redis_url", "redis://127.0.0.1:1");
        auditq_config_set(cfg, "spool_path", path);
        if (auditq_open(cfg, &again) != AUDITQ_ERR_SPOOL) /* the parent's lock */
            code = 2;
        snprintf(child_path, sizeof child_path, "%s.child", path);
        auditq_config_set(cfg, "spool_path", child_path);
        if (auditq_open(cfg, &again) != AUDITQ_OK || auditq_close(again) != AUDITQ_OK)
            code = 3;
        auditq_config_free(cfg);
#else
        (void)child_path;
#endif
        /* The code goes up the pipe; the child then waits for the parent
         * to finish its checks and ends by exec'ing true, not by exit: what
         * the parent's flusher and replay threads had allocated (their
         * batch buffers) is in the child's copy of the heap with no thread
         * left to free it, and memcheck's leak check at exit (make
         * valgrind) would count it against the test; an exec ends the
         * process image without one. */
        c = (char)code;
        if (write(up[1], &c, 1) == 1)
            (void)read(down[0], &c, 1);
        execl("/bin/true", "true", (char *)NULL);
        _exit(5);
    }
    char c = 0;
    close(up[1]);
    close(down[0]);
    assert_int_equal(read(up[0], &c, 1), 1);
    assert_int_equal(c, 0); /* the child's checks (1: abandon, 2, 3: opens in the child) */
    assert_int_equal(auditq_close(q), AUDITQ_OK); /* Redis still refuses: the 3 stay spooled */
    q = open_at(closed_port(), "spool_path", path); /* fails if the child held the lock */
    auditq_stats st;
    assert_int_equal(auditq_get_stats(q, &st), AUDITQ_OK);
    assert_int_equal(st.spool_records, 3);
    assert_int_equal(write(down[1], "x", 1), 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(auditq_abandon(NULL), AUDITQ_OK);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_event_free(ev);
    close(up[0]);
    close(down[1]);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_event_errors),
        cmocka_unit_test(test_success_clears_last_error),
        cmocka_unit_test(test_refused_fails_fast),
        cmocka_unit_test(test_silent_redis_times_out),
        cmocka_unit_test(test_async_buffer_full_never_drops_silently),
        cmocka_unit_test(test_abandon_in_fork_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
