/* test_spooler.c -- the library's spool (producer/spooler.c) without a
 * Redis: routing to the spool with exact counters and error texts (Redis
 * refuses connections: a closed loopback port; Redis times out), the cap,
 * a torn tail cut at open, and an ACL refusal explained by the replay (a
 * stand-in Redis). The file itself is test_spool.c; the replay into a real
 * Redis is tests/integration/it_90_spool.sh. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auditq.h"
#include "spool.h"
#include "spool_test.h"

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the library's spool --------------------------------------------------- */

/* A port with nothing listening: connects are refused at once. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static auditq_config *cfg_at(int port, const char *spool_path)
{
    char url[64];
    auditq_config *cfg = auditq_config_new();
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    assert_int_equal(auditq_config_set(cfg, "redis_url", url), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "connect_timeout_ms", "200"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "timeout_ms", "300"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "close_timeout_ms", "2000"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "flush_interval_ms", "5"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "spool_path", spool_path), AUDITQ_OK);
    return cfg;
}

/* An event of fixed encoded size: fixed id, time, and a 1300-byte JSON. */
static auditq_event *fixed_event(int i)
{
    char id[40], json[1400];
    auditq_event *ev = auditq_event_new("spool.test");
    snprintf(id, sizeof id, "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a%04x", i);
    assert_int_equal(auditq_event_set(ev, AUDITQ_EVENT_ID, id), AUDITQ_OK);
    assert_int_equal(auditq_event_set_time(ev, 1767225600000000LL + i), AUDITQ_OK);
    snprintf(json, sizeof json, "{\"pad\":\"%01300d\"}", i);
    assert_int_equal(auditq_event_set_json(ev, AUDITQ_CHANGES, json), AUDITQ_OK);
    auditq_event_set_priority(ev, (auditq_priority)(i % 4));
    return ev;
}

static void test_config_keys(void **state)
{
    (void)state;
    auditq_config *cfg = auditq_config_new();
    static const struct { const char *k, *v; auditq_rc rc; const char *msg; } cases[] = {
        {"spool_fsync", "sometimes", AUDITQ_ERR_CONFIG, "spool_fsync = 'sometimes': must be always, interval or never"},
        {"spool_full_policy", "drop", AUDITQ_ERR_CONFIG, "spool_full_policy = 'drop': must be error or block"},
        {"spool_max_bytes", "100", AUDITQ_ERR_CONFIG,
         "spool_max_bytes = '100': must be an integer from 4096 to 1125899906842624 (bytes)"},
        {"spool_max_bytes", "1G", AUDITQ_ERR_CONFIG,
         "spool_max_bytes = '1G': must be an integer from 4096 to 1125899906842624 (bytes)"},
        {"spool_fsync_interval_ms", "0", AUDITQ_ERR_CONFIG,
         "spool_fsync_interval_ms = '0': must be an integer from 1 to 60000"},
        {"spool_fsync", "interval", AUDITQ_OK, ""},
        {"spool_max_bytes", "1125899906842624", AUDITQ_OK, ""},
        {"spool_path", "", AUDITQ_OK, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(auditq_config_set(cfg, cases[i].k, cases[i].v), cases[i].rc);
        assert_string_equal(auditq_last_error(), cases[i].msg);
    }
    char longp[1100];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(auditq_config_set(cfg, "spool_path", longp), AUDITQ_ERR_CONFIG);
    assert_string_equal(auditq_last_error(), "spool_path: longer than 1023 bytes");
    assert_string_equal(auditq_strerror(AUDITQ_ERR_SPOOL_FULL), "spool full");
    assert_string_equal(auditq_strerror(AUDITQ_ERR_SPOOL), "spool unusable");
    /* A spool_path in a missing directory fails at open, naming it. */
    assert_int_equal(auditq_config_set(cfg, "spool_path", "/nonexistent-dir/x.spool"), AUDITQ_OK);
    auditq *q = NULL;
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_ERR_SPOOL);
    assert_null(q);
    assert_string_equal(auditq_last_error(), "spool_path: cannot open spool /nonexistent-dir/x.spool: No such file "
                                             "or directory; check the path and its permissions");
    auditq_config_free(cfg);
}

/* Redis refuses: sync and async events go to the spool, the calls return
 * AUDITQ_OK at once, close keeps them on disk, a second handle on the same
 * spool is refused, the next open finds them waiting. */
static void test_spool_when_redis_refuses(void **state)
{
    (void)state;
    char path[PATHLEN], want[1200];
    path_of(path, sizeof path, "lib");
    auditq_config *cfg = cfg_at(closed_port(), path);
    auditq *q = NULL, *q2 = NULL;
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);

    assert_int_equal(auditq_open(cfg, &q2), AUDITQ_ERR_SPOOL);
    snprintf(want, sizeof want,
             "spool_path: spool %s is in use: another auditq handle or process holds its lock (a producer with "
             "this spool_path, or auditqctl spool replay); give every producer process its own spool_path",
             path);
    assert_string_equal(auditq_last_error(), want);

    long long t0 = ms_now(), slowest = 0;
    for (int i = 0; i < 6; i++) {
        auditq_event *ev = fixed_event(i);
        long long t = ms_now();
        assert_int_equal(i < 3 ? auditq_send(q, ev, NULL) : auditq_send_async(q, ev, NULL), AUDITQ_OK);
        if (ms_now() - t > slowest)
            slowest = ms_now() - t;
        auditq_event_free(ev);
    }
    assert_int_equal(auditq_flush(q, 2000), AUDITQ_OK); /* spooled counts as acknowledged */
    if (slowest > 500) /* generous for valgrind; without the spool a send fails, with it one write */
        fail_msg("a send took %lld ms with Redis refusing and a spool", slowest);
    (void)t0;
    auditq_stats st;
    assert_int_equal(auditq_get_stats(q, &st), AUDITQ_OK);
    assert_int_equal(st.spooled, 6);
    assert_int_equal(st.sent_sync, 0);
    assert_int_equal(st.sent_async, 0);
    assert_int_equal(st.queued_async, 3);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.buffered, 0);
    assert_int_equal(st.spool_records, 6);
    assert_int_equal(st.replayed, 0);
    for (int i = 0; i < 200 && st.replay_retries == 0; i++) {
        usleep(10000);
        auditq_get_stats(q, &st);
    }
    assert_true(st.replay_retries >= 1);
    struct stat fst;
    assert_int_equal(stat(path, &fst), 0);
    assert_int_equal(st.spool_bytes, (uint64_t)fst.st_size);
    char prob[512];
    assert_int_equal(auditq_spool_problem(q, prob, sizeof prob), AUDITQ_OK);
    snprintf(want, sizeof want, "spool %s: replay waiting for Redis: cannot connect to Redis at 127.0.0.1:", path);
    assert_memory_equal(prob, want, strlen(want));

    /* Close gives up at the first failed probe, well before close_timeout_ms. */
    t0 = ms_now();
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    if (ms_now() - t0 > 1000)
        fail_msg("close took %lld ms with Redis refusing", ms_now() - t0);

    /* The events wait on disk, in send order, for the next open. */
    char err[512];
    spool *s = spool_open(path, NULL, SPOOL_OPEN_READONLY, NULL, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spool_pending(s), 6);
    spool_chunk ch;
    memset(&ch, 0, sizeof ch);
    assert_int_equal(spool_read_chunk(spool_fd(s), spool_pos(s), spool_size(s), 100, 1 << 20, &ch, err, sizeof err), 0);
    assert_int_equal(ch.n, 6);
    for (int i = 0; i < 6; i++) {
        char id[40];
        snprintf(id, sizeof id, "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a%04x", i);
        assert_non_null(memmem(ch.items[i].data, ch.items[i].len, id, 36));
        assert_int_equal(ch.items[i].prio, i % 4);
    }
    spool_chunk_free(&ch);
    spool_close(s);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    assert_int_equal(auditq_get_stats(q, &st), AUDITQ_OK);
    assert_int_equal(st.spool_records, 6);
    assert_int_equal(st.spooled, 0);
    /* With records waiting, a new sync event joins them without trying Redis. */
    auditq_event *ev = fixed_event(6);
    assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_OK);
    auditq_event_free(ev);
    assert_int_equal(auditq_get_stats(q, &st), AUDITQ_OK);
    assert_int_equal(st.spooled, 1);
    assert_int_equal(st.spool_records, 7);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_config_free(cfg);
}

/* spool_max_bytes with each policy: exact counts and texts. */
static void test_spool_cap(void **state)
{
    (void)state;
    char path[PATHLEN], want[1200], cap[32];
    int port = closed_port();
    auditq_stats st;
    auditq *q = NULL;

    /* Measure one record. */
    path_of(path, sizeof path, "cap");
    auditq_config *cfg = cfg_at(port, path);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    auditq_event *ev = fixed_event(0);
    assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_OK);
    auditq_get_stats(q, &st);
    uint64_t rec = st.spool_bytes - SPOOL_HEADER_SIZE;
    assert_true(rec > 1300 && rec < 1500);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_config_free(cfg);

    /* error: room for exactly 3; the 4th and 5th are refused at once. */
    uint64_t limit = SPOOL_HEADER_SIZE + 3 * rec;
    snprintf(cap, sizeof cap, "%llu", (unsigned long long)limit);
    path_of(path, sizeof path, "cap-error");
    cfg = cfg_at(port, path);
    assert_int_equal(auditq_config_set(cfg, "spool_max_bytes", cap), AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    for (int i = 0; i < 5; i++) {
        long long t = ms_now();
        assert_int_equal(auditq_send(q, ev, NULL), i < 3 ? AUDITQ_OK : AUDITQ_ERR_SPOOL_FULL);
        if (i >= 3) {
            assert_true(ms_now() - t < 500); /* at once: no wait with policy error */
            snprintf(want, sizeof want,
                     "spool %s is full: %llu bytes, spool_max_bytes=%llu; Redis: cannot connect to Redis at "
                     "127.0.0.1:%d: Connection refused",
                     path, (unsigned long long)limit, (unsigned long long)limit, port);
            assert_string_equal(auditq_last_error(), want);
        }
    }
    auditq_get_stats(q, &st);
    assert_int_equal(st.spooled, 3);
    assert_int_equal(st.spool_rejected_full, 2);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.spool_records, 3);
    assert_int_equal(st.spool_bytes, limit);
    assert_int_equal(auditq_close(q), AUDITQ_OK);

    /* block: the refused call first waits timeout_ms (300) for the replay. */
    path_of(path, sizeof path, "cap-block");
    assert_int_equal(auditq_config_set(cfg, "spool_path", path), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "spool_full_policy", "block"), AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_OK);
    long long t = ms_now();
    assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_ERR_SPOOL_FULL);
    long long took = ms_now() - t;
    if (took < 290 || took > 1500)
        fail_msg("block policy waited %lld ms, expected ~300", took);
    snprintf(want, sizeof want,
             "spool %s is full: %llu bytes, spool_max_bytes=%llu (waited timeout_ms for the replay); Redis: "
             "cannot connect to Redis at 127.0.0.1:%d: Connection refused",
             path, (unsigned long long)limit, (unsigned long long)limit, port);
    assert_string_equal(auditq_last_error(), want);
    auditq_get_stats(q, &st);
    assert_int_equal(st.spooled, 3);
    assert_int_equal(st.spool_rejected_full, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(auditq_close(q), AUDITQ_OK);

    /* async: batches of one; 3 fit, the 4th stays in the buffer (counted
     * once), the 5th queues behind it; close cannot place them: reported. */
    path_of(path, sizeof path, "cap-async");
    assert_int_equal(auditq_config_set(cfg, "spool_path", path), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "batch_size", "1"), AUDITQ_OK);
    assert_int_equal(auditq_config_set(cfg, "close_timeout_ms", "200"), AUDITQ_OK);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(auditq_send_async(q, ev, NULL), AUDITQ_OK);
    assert_int_equal(auditq_flush(q, 300), AUDITQ_ERR_TIMEOUT);
    auditq_get_stats(q, &st);
    assert_int_equal(st.queued_async, 5);
    assert_int_equal(st.spooled, 3);
    assert_int_equal(st.spool_rejected_full, 1);
    assert_int_equal(st.buffered, 2);
    assert_int_equal(st.errors, 0);
    assert_int_equal(auditq_close(q), AUDITQ_ERR_TIMEOUT);
    snprintf(want, sizeof want, "auditq_close: 2 events could not be delivered to Redis within "
             "close_timeout_ms=200 and are lost; last error: cannot connect to Redis at 127.0.0.1:%d: "
             "Connection refused", port);
    assert_string_equal(auditq_last_error(), want);
    auditq_event_free(ev);
    auditq_config_free(cfg);
}

/* A Redis that accepts connections and never answers: the first LPUSH
 * times out (it may or may not have been executed: the spooled copy carries
 * the same event_id and occurred_at) and is spooled; later sends join the
 * backlog at once; close gives up after the one probe it allows itself. */
static void test_spool_when_redis_times_out(void **state)
{
    (void)state;
    char path[PATHLEN];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    path_of(path, sizeof path, "silent");
    auditq_config *cfg = cfg_at(ntohs(a.sin_port), path);
    auditq *q = NULL;
    auditq_stats st;
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    auditq_event *ev = fixed_event(1);
    char id[AUDITQ_ID_SIZE];
    long long t = ms_now();
    assert_int_equal(auditq_send(q, ev, id), AUDITQ_OK);
    long long first = ms_now() - t;
    if (first < 250 || first > 1500)
        fail_msg("first send took %lld ms, expected ~timeout_ms=300 before spooling", first);
    assert_string_equal(id, "0190f3b2-5c4e-7a21-9d3b-6c2f1e8a0001");
    t = ms_now();
    for (int i = 0; i < 5; i++)
        assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_OK);
    if (ms_now() - t > 500)
        fail_msg("5 sends behind a backlog took %lld ms", ms_now() - t);
    auditq_get_stats(q, &st);
    assert_int_equal(st.spooled, 6);
    assert_int_equal(st.sent_sync, 0);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.spool_records, 6);
    t = ms_now();
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    if (ms_now() - t > 1900)
        fail_msg("close took %lld ms against a silent Redis (close_timeout_ms=2000)", ms_now() - t);
    char err[512];
    spool *s = spool_open(path, NULL, SPOOL_OPEN_READONLY, NULL, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spool_pending(s), 6);
    spool_close(s);
    auditq_event_free(ev);
    auditq_config_free(cfg);
    close(fd);
}

/* A producer killed mid-append leaves a torn record: the next open cuts
 * it, counts it and says so; the whole records before it stay. */
static void test_open_cuts_torn_tail(void **state)
{
    (void)state;
    char path[PATHLEN], want[1200], prob[1200];
    path_of(path, sizeof path, "torn-lib");
    auditq_config *cfg = cfg_at(closed_port(), path);
    auditq *q = NULL;
    auditq_stats st;
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    for (int i = 0; i < 3; i++) {
        auditq_event *ev = fixed_event(i);
        assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_OK);
        auditq_event_free(ev);
    }
    auditq_get_stats(q, &st);
    uint64_t rec = (st.spool_bytes - SPOOL_HEADER_SIZE) / 3;
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    uint64_t cut_at = SPOOL_HEADER_SIZE + 2 * rec + 100;
    assert_int_equal(truncate(path, (off_t)cut_at), 0);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    auditq_get_stats(q, &st);
    assert_int_equal(st.spool_corrupt_records, 1);
    assert_int_equal(st.spool_records, 2);
    assert_int_equal(st.spool_bytes, SPOOL_HEADER_SIZE + 2 * rec);
    assert_int_equal(auditq_spool_problem(q, prob, sizeof prob), AUDITQ_OK);
    snprintf(want, sizeof want,
             "spool %s: cut off a damaged tail at offset %llu (100 bytes): incomplete record: %llu payload bytes "
             "declared, 80 present",
             path, (unsigned long long)(SPOOL_HEADER_SIZE + 2 * rec), (unsigned long long)(rec - SPOOL_REC_HEADER));
    /* ...followed by the replay's "; replay waiting for Redis: ..." once it tried */
    assert_memory_equal(prob, want, strlen(want) + 1 - (prob[strlen(want)] != '\0'));
    if (prob[strlen(want)])
        assert_memory_equal(prob + strlen(want), "; replay waiting for Redis: cannot connect", 42);
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_config_free(cfg);
}

/* A stand-in Redis that answers every command with an ACL refusal of
 * LPUSH, as a Redis whose user lacks +lpush does (a refused PING at
 * connect means "logged in"). It parses RESP so that each pipelined
 * command gets exactly one reply. */
struct fake_redis {
    int lfd, port;
    atomic_int stop;
    pthread_t th;
};

static void fake_serve(struct fake_redis *f, int fd)
{
    static const char no[] = "-NOPERM this user has no permissions to run the 'lpush' command\r\n";
    char buf[1 << 16];
    size_t len = 0;

    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t got = read(fd, buf + len, sizeof buf - len);
        if (got <= 0)
            return;
        len += (size_t)got;
        for (;;) { /* every complete command: *N\r\n ($L\r\n<L bytes>\r\n) x N */
            size_t at = 0;
            char *end;
            if (len < 4 || buf[0] != '*')
                break;
            long n = strtol(buf + 1, &end, 10);
            at = (size_t)(end - buf) + 2;
            int complete = at <= len;
            for (long i = 0; complete && i < n; i++) {
                if (at + 4 > len || buf[at] != '$') {
                    complete = 0;
                    break;
                }
                long l = strtol(buf + at + 1, &end, 10);
                at = (size_t)(end - buf) + 2 + (size_t)l + 2;
                complete = at <= len;
            }
            if (!complete)
                break;
            assert_int_equal(write(fd, no, sizeof no - 1), (ssize_t)(sizeof no - 1));
            memmove(buf, buf + at, len - at);
            len -= at;
        }
    }
}

static void *fake_main(void *arg)
{
    struct fake_redis *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_serve(f, fd);
        close(fd);
    }
    return NULL;
}

static void fake_start(struct fake_redis *f)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    atomic_store(&f->stop, 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake_redis *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

/* The replay pushes with the same sender as the async flusher, so an ACL
 * refusal is explained the same way: the user, the command and the fix. */
static void test_replay_explains_acl_refusal(void **state)
{
    (void)state;
    char path[PATHLEN], want[1200], prob[1200];
    path_of(path, sizeof path, "acl");
    auditq_config *cfg = cfg_at(closed_port(), path);
    auditq *q = NULL;
    auditq_stats st;

    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    for (int i = 0; i < 2; i++) {
        auditq_event *ev = fixed_event(i);
        assert_int_equal(auditq_send(q, ev, NULL), AUDITQ_OK); /* Redis down: spooled */
        auditq_event_free(ev);
    }
    assert_int_equal(auditq_close(q), AUDITQ_OK);
    auditq_config_free(cfg);

    struct fake_redis f;
    fake_start(&f);
    cfg = cfg_at(f.port, path);
    assert_int_equal(auditq_open(cfg, &q), AUDITQ_OK);
    snprintf(want, sizeof want,
             "spool %s: replay waiting for Redis: Redis user 'default' may not run LPUSH (NOPERM): grant it "
             "(ACL SETUSER default +lpush) or use the producer rules of docs/SECURITY.md", path);
    prob[0] = '\0';
    for (int i = 0; i < 300 && strcmp(prob, want) != 0; i++) {
        usleep(10000);
        assert_int_equal(auditq_spool_problem(q, prob, sizeof prob), AUDITQ_OK);
    }
    assert_string_equal(prob, want);
    assert_int_equal(auditq_get_stats(q, &st), AUDITQ_OK);
    assert_true(st.replay_retries >= 1);
    assert_int_equal(st.replayed, 0);
    assert_int_equal(st.spool_records, 2);
    assert_int_equal(st.spool_errors, 0);
    assert_int_equal(auditq_close(q), AUDITQ_OK); /* the records stay on disk */
    auditq_config_free(cfg);
    fake_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_spool_when_redis_refuses),
        cmocka_unit_test(test_spool_when_redis_times_out),
        cmocka_unit_test(test_spool_cap),
        cmocka_unit_test(test_open_cuts_torn_tail),
        cmocka_unit_test(test_replay_explains_acl_refusal),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
