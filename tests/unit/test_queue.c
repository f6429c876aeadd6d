/* test_queue.c -- the C side of the fetch and settle scripts' replies
 * (worker/queue.c): queue_fetch_parse and queue_wrong_parse on the exact
 * shapes the scripts return (a batch, nothing to take, oversized jobs
 * dead-lettered, keys of the wrong type) and on malformed ones; the one
 * wrong-type message (common/redisconn.c); and worker/keyhealth.c: what
 * /readyz and /metrics get from reports of wrong-typed keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "keyhealth.h"
#include "keys.h"
#include "queue.h"
#include "redisconn.h"

/* Replies built as hiredis builds them (heap, freed by freeReplyObject). */
static redisReply *mk(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->type = type;
    return r;
}

static redisReply *mk_str(const char *s)
{
    redisReply *r = mk(REDIS_REPLY_STRING);
    r->len = strlen(s);
    r->str = strdup(s);
    assert_non_null(r->str);
    return r;
}

static redisReply *mk_int(long long v)
{
    redisReply *r = mk(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

/* An array of n replies (NULL-terminated argument list). */
static redisReply *mk_arr(size_t n, ...)
{
    va_list ap;
    redisReply *r = mk(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = n ? calloc(n, sizeof *r->element) : NULL;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

/* {token, jobs, dead-lettered, wrong}: a batch of two from the high queue. */
static void test_fetch_batch(void **state)
{
    queue_batch b;
    char err[200] = "";
    (void)state;

    redisReply *r = mk_arr(4, mk_str("1:42"), mk_arr(2, mk_str("job-a"), mk_str("job-bb")), mk_int(0),
                           mk_arr(0));
    assert_int_equal(queue_fetch_parse(r, &b, err, sizeof err), 0);
    assert_string_equal(b.token, "1:42");
    assert_int_equal(b.priority, 1);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.items[1]->len, 6);
    assert_memory_equal(b.items[1]->str, "job-bb", 6);
    assert_int_equal(b.dead_oversized, 0);
    assert_int_equal(b.wrong.n, 0);
    queue_batch_free(&b);
}

/* The low queue a string, strict mode, everything else empty: nothing to
 * take, and the key named with its type and what was expected. */
static void test_fetch_wrong_queue(void **state)
{
    queue_batch b;
    char err[200] = "";
    (void)state;

    redisReply *r = mk_arr(4, mk_str(""), mk_arr(0), mk_int(0),
                           mk_arr(3, mk_str("{auditq}:queue:low"), mk_str("string"), mk_str("list")));
    assert_int_equal(queue_fetch_parse(r, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.wrong.n, 1);
    assert_string_equal(b.wrong.k[0].key, "{auditq}:queue:low");
    assert_string_equal(b.wrong.k[0].type, "string");
    assert_string_equal(b.wrong.k[0].expected, "list");
    queue_batch_free(&b);

    /* A batch from another queue carries the same report. */
    r = mk_arr(4, mk_str("0:7"), mk_arr(1, mk_str("j")), mk_int(0),
               mk_arr(6, mk_str("{auditq}:queue:low"), mk_str("string"), mk_str("list"),
                      mk_str("{auditq}:stats"), mk_str("zset"), mk_str("hash")));
    assert_int_equal(queue_fetch_parse(r, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.priority, 0);
    assert_int_equal(b.wrong.n, 2);
    assert_string_equal(b.wrong.k[1].key, "{auditq}:stats");
    assert_string_equal(b.wrong.k[1].type, "zset");
    assert_string_equal(b.wrong.k[1].expected, "hash");
    queue_batch_free(&b);
}

/* Every job fetched was oversized and dead-lettered: no batch, the count. */
static void test_fetch_all_oversized(void **state)
{
    queue_batch b;
    char err[200] = "";
    (void)state;

    redisReply *r = mk_arr(4, mk_str(""), mk_arr(0), mk_int(3), mk_arr(0));
    assert_int_equal(queue_fetch_parse(r, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.dead_oversized, 3);
    queue_batch_free(&b);
}

/* Shapes no script of ours returns are refused with a reason, freed. */
static void test_fetch_malformed(void **state)
{
    queue_batch b;
    char err[200];
    (void)state;

    redisReply *bad[] = {
        mk_arr(0),                                                           /* the old empty reply */
        mk_arr(3, mk_str("1:1"), mk_arr(0), mk_int(0)),                      /* no wrong list */
        mk_arr(4, mk_int(1), mk_arr(0), mk_int(0), mk_arr(0)),               /* token not a string */
        mk_arr(4, mk_str("1:1"), mk_arr(1, mk_int(5)), mk_int(0), mk_arr(0)), /* a job not a string */
        mk_arr(4, mk_str(""), mk_arr(1, mk_str("j")), mk_int(0), mk_arr(0)), /* jobs without a token */
        mk_arr(4, mk_str("1:1"), mk_arr(0), mk_int(-1), mk_arr(0)),          /* negative count */
        mk_arr(4, mk_str(""), mk_arr(0), mk_int(0), mk_arr(2, mk_str("k"), mk_str("string"))),
        mk_str("OK"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(queue_fetch_parse(bad[i], &b, err, sizeof err), -1);
        assert_non_null(strstr(err, "fetch: "));
        assert_null(b.reply); /* freed (ASan/valgrind check there is no leak) */
        assert_int_equal(b.n, 0);
    }
}

/* At most QUEUE_WRONG_MAX keys: a script checks no more per call. */
static void test_wrong_parse_bounds(void **state)
{
    queue_wrongset ws;
    (void)state;

    /* Built by hand: mk_arr reads one variadic argument per element. */
    redisReply *list = mk_arr(0);
    list->elements = 3 * (QUEUE_WRONG_MAX + 1);
    list->element = calloc(list->elements, sizeof *list->element);
    assert_non_null(list->element);
    for (size_t i = 0; i < list->elements; i++)
        list->element[i] = mk_str(i % 3 == 0 ? "k" : i % 3 == 1 ? "set" : "list");
    assert_int_equal(queue_wrong_parse(list, &ws), -1);
    assert_int_equal(ws.n, QUEUE_WRONG_MAX);
    freeReplyObject(list);

    list = mk_arr(0);
    assert_int_equal(queue_wrong_parse(list, &ws), 0);
    assert_int_equal(ws.n, 0);
    freeReplyObject(list);
}

/* The one message, with and without the type TYPE reported. */
static void test_explain_wrongtype(void **state)
{
    char out[400];
    (void)state;

    redis_explain_wrongtype("{auditq}:queue:low", "string", "list",
                            "nothing is fetched from it meanwhile; the other queues are served", out, sizeof out);
    assert_string_equal(out, "redis key {auditq}:queue:low is a string, expected a list: inspect it with "
                             "TYPE/GET, then RENAME it away or DEL it; nothing is fetched from it meanwhile; "
                             "the other queues are served");
    redis_explain_wrongtype("{auditq}:retry", NULL, "zset", NULL, out, sizeof out);
    assert_string_equal(out, "redis key {auditq}:retry is not a zset (WRONGTYPE): inspect it with TYPE/GET, "
                             "then RENAME it away or DEL it; nothing else is read from it");
    assert_true(redis_is_wrongtype("WRONGTYPE Operation against a key holding the wrong kind of value"));
    assert_false(redis_is_wrongtype("ERR unknown command"));
    assert_false(redis_is_wrongtype(NULL));
}

/* Reports from several sources make one entry per key; /readyz's text
 * names each current key with what waits; /metrics' snapshot has them. */
static void test_keyhealth(void **state)
{
    aq_keys k;
    keyhealth h;
    metrics_wrongkey snap[METRICS_WRONG_MAX];
    char text[2000];
    (void)state;

    assert_int_equal(keys_init(&k, "auditq"), 0);
    keyhealth_init(&h, &k);
    assert_int_equal(keyhealth_describe(&h, text, sizeof text), 0);
    assert_string_equal(text, "");

    keyhealth_report(&h, "{auditq}:queue:low", "string", "list", "fetch");
    keyhealth_report(&h, "{auditq}:queue:low", "", "list", "settle"); /* unknown type keeps "string" */
    keyhealth_report(&h, "{auditq}:dead", "hash", "list", "sample");
    assert_int_equal(keyhealth_snapshot(&h, snap, METRICS_WRONG_MAX), 2);
    assert_string_equal(snap[0].key, "{auditq}:queue:low");
    assert_string_equal(snap[0].type, "string");
    assert_int_equal(snap[0].current, 1);
    assert_int_equal(keyhealth_describe(&h, text, sizeof text), 2);
    assert_string_equal(text,
        "redis key {auditq}:queue:low is a string, expected a list: inspect it with TYPE/GET, then RENAME it "
        "away or DEL it; nothing is fetched from it meanwhile; the other queues are served; also "
        "redis key {auditq}:dead is a hash, expected a list: inspect it with TYPE/GET, then RENAME it away or "
        "DEL it; meanwhile a batch with a dead letter stays in flight and a queue whose next job is "
        "oversized waits; the rest is served");

    /* What waits, per kind of key. */
    assert_string_equal(keyhealth_effect(&k, "{auditq}:stats"), "meanwhile events are stored but not counted in it");
    assert_string_equal(keyhealth_effect(&k, "{auditq}:inflight:h:1:abc:0"),
                        "meanwhile the thread it belongs to fetches nothing and its jobs are not recovered");
    assert_string_equal(keyhealth_effect(&k, "{auditq}:worker:h:1:abc"),
                        "meanwhile that worker fetches nothing and its batches are not recovered");
    assert_string_equal(keyhealth_effect(&k, "{auditq}:workers"),
                        "meanwhile heartbeats are not recorded and dead workers' batches are not recovered");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_batch),
        cmocka_unit_test(test_fetch_wrong_queue),
        cmocka_unit_test(test_fetch_all_oversized),
        cmocka_unit_test(test_fetch_malformed),
        cmocka_unit_test(test_wrong_parse_bounds),
        cmocka_unit_test(test_explain_wrongtype),
        cmocka_unit_test(test_keyhealth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
