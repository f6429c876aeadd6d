/* test_shards.c -- unit tests for common/shards.c and keys_init_shard:
 * the cluster hash slot, the shard names, the producer's shard choice and
 * the settings shards_init refuses. (Connecting is covered by it_44 and
 * it_45 against real servers.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keys.h"
#include "shards.h"

static int slot(const char *k)
{
    return redis_key_slot(k, strlen(k));
}

/* The Redis Cluster specification's examples: CRC16("123456789") is
 * 0x31C3; a non-empty {tag} is hashed alone; "{}" hashes the whole key;
 * only the first '{' and the next '}' count. Values cross-checked with
 * CLUSTER KEYSLOT on redis-server 7.0. */
static void test_key_slot(void **state)
{
    (void)state;
    assert_int_equal(slot("123456789"), 0x31C3 & 16383);
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot("{user1000}.following"), slot("{user1000}.followers"));
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("foo{}{bar}"), redis_key_slot("foo{}{bar}", 10));
    assert_int_not_equal(slot("foo{}{bar}"), slot("bar"));
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    assert_int_equal(slot("{auditq}:queue:normal"), slot("auditq"));
    assert_int_equal(slot("{auditq:1}:stats"), slot("auditq:1"));
    assert_int_equal(slot("auditq"), 6299);
    assert_int_equal(slot("auditq:1"), 13348);
    assert_int_equal(slot("somekey"), 11058);
    assert_int_equal(slot("foo{hash_tag}"), 2515);
    assert_int_equal(slot("foo{}{bar}"), 8363);
}

/* Shard 0 keeps today's names; shard i is tagged {ns:i}; every key of a
 * shard is in one slot. */
static void test_shard_keys(void **state)
{
    aq_keys k;
    (void)state;
    assert_int_equal(keys_init_shard(&k, "auditq", 0), 0);
    assert_string_equal(k.queue[0], "{auditq}:queue:critical");
    assert_string_equal(k.inflight_prefix, "{auditq}:inflight:");
    assert_int_equal(keys_init_shard(&k, "auditq", 7), 0);
    assert_int_equal(k.shard, 7);
    assert_string_equal(k.queue[3], "{auditq:7}:queue:low");
    assert_string_equal(k.dead, "{auditq:7}:dead");
    assert_string_equal(k.worker_prefix, "{auditq:7}:worker:");
    const char *all[] = {k.queue[0], k.queue[1], k.queue[2], k.queue[3], k.retry,
                         k.dead, k.workers, k.stats, k.worker_prefix, k.inflight_prefix};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        assert_int_equal(slot(all[i]), slot("auditq:7"));
    assert_int_equal(keys_init_shard(&k, "auditq", -1), -1);
    assert_int_equal(keys_init_shard(&k, "bad ns", 1), -1);
}

/* spread: the caller's counter mod n; tenant: FNV-1a 32-bit of the tenant
 * mod n (the model it_45 and docs/PROTOCOL.md give), the counter ignored;
 * a missing tenant falls back to the counter. */
static void test_pick(void **state)
{
    (void)state;
    assert_int_equal(shard_pick(1, 1, "acme", 4, 99), 0);
    for (unsigned long s = 0; s < 12; s++)
        assert_int_equal(shard_pick(4, 0, "acme", 4, s), (int)(s % 4));
    /* FNV-1a("a") = 0xe40c292c; ("acme") = 0x45fd71af (reference values) */
    assert_int_equal(shard_pick(7, 1, "a", 1, 5), (int)(0xe40c292cu % 7));
    assert_int_equal(shard_pick(16, 1, "acme", 4, 3), (int)(0x45fd71afu % 16));
    assert_int_equal(shard_pick(16, 1, "acme", 4, 3), shard_pick(16, 1, "acme", 4, 11));
    assert_int_equal(shard_pick(4, 1, NULL, 0, 6), 2);
    assert_int_equal(shard_pick(4, 1, "", 0, 7), 3);
}

static aq_redis_target base(void)
{
    aq_redis_target t;
    memset(&t, 0, sizeof t);
    strcpy(t.host, "127.0.0.1");
    t.port = 6379;
    return t;
}

static void test_init_layouts(void **state)
{
    aq_shards s;
    char err[600];
    aq_redis_target b = base();
    (void)state;

    /* all on redis_url */
    assert_int_equal(shards_init(&s, "auditq", 3, &b, "", 0, err, sizeof err), 0);
    assert_int_equal(s.n, 3);
    assert_null(s.cl);
    assert_string_equal(s.target[2].host, "127.0.0.1");
    assert_string_equal(s.keys[2].stats, "{auditq:2}:stats");
    shards_free(&s);
    /* 5 shards on 2 servers: shard i on entry i mod 2 */
    assert_int_equal(shards_init(&s, "ns", 5, &b, "redis://a:1, redis://:pw@b:2/3", 0, err, sizeof err), 0);
    assert_string_equal(s.target[0].host, "a");
    assert_int_equal(s.target[1].port, 2);
    assert_string_equal(s.target[1].password, "pw");
    assert_int_equal(s.target[1].db, 3);
    assert_string_equal(s.target[4].host, "a");
    assert_string_equal(s.target[3].host, "b");
    char w[300];
    shard_where(&s, 3, w, sizeof w);
    assert_string_equal(w, "b:2");
    shards_free(&s);
    /* cluster: seeds known, owners unknown until asked */
    assert_int_equal(shards_init(&s, "auditq", 6, &b, "redis://10.0.0.2:7001", 1, err, sizeof err), 0);
    assert_non_null(s.cl);
    assert_int_equal(s.cl->nnodes, 2);
    assert_int_equal(s.slot[0], 6299);
    assert_int_equal(s.slot[1], slot("auditq:1"));
    shard_where(&s, 1, w, sizeof w);
    assert_non_null(strstr(w, "owner not yet known"));
    shards_free(&s);
}

static void test_init_refusals(void **state)
{
    aq_shards s;
    char err[600];
    aq_redis_target b = base();
    (void)state;

    assert_int_equal(shards_init(&s, "auditq", 0, &b, "", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "redis_shards = 0: use 1..256"));
    assert_int_equal(shards_init(&s, "auditq", 2, &b, "redis://a:1,redis://b:2,redis://c:3", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "redis_shard_urls lists 3 servers but redis_shards is 2"));
    assert_non_null(strstr(err, "raise redis_shards to at least 3"));
    assert_int_equal(shards_init(&s, "auditq", 2, &b, "redis://a:1,ftp://b", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "redis_shard_urls: entry 2:"));
    aq_redis_target sb = b;
    strcpy(sb.sentinels, "127.0.0.1:26379");
    strcpy(sb.master_name, "m");
    assert_int_equal(shards_init(&s, "auditq", 2, &sb, "", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "redis_sentinels cannot be combined with redis_cluster = on"));
    assert_int_equal(shards_init(&s, "auditq", 2, &sb, "redis://a:1", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "unset redis_shard_urls"));
    aq_redis_target db = b;
    db.db = 2;
    assert_int_equal(shards_init(&s, "auditq", 2, &db, "", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "database 0 only"));
    assert_int_equal(shards_init(&s, "auditq", 2, &b, "unix:///tmp/r.sock", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "needs host:port nodes"));
    /* a shard count the same for everyone, even when all on one server */
    assert_int_equal(shards_from_settings(&s, "auditq", 2, "redis://h:1", "", "", "", "", "", 0, err, sizeof err), 0);
    shards_free(&s);
    assert_int_equal(shards_from_settings(&s, "auditq", 2, "nope://h", "", "", "", "", "", 0, err, sizeof err), -2);
}

/* Connecting to a cluster where no node answers names the shard, its
 * slot, the nodes tried, and what to check. */
static void test_cluster_unreachable(void **state)
{
    aq_shards s;
    char err[1400];
    aq_redis_target b = base();
    (void)state;
    b.port = 1; /* nothing listens on port 1 */
    assert_int_equal(shards_init(&s, "auditq", 2, &b, "", 1, err, sizeof err), 0);
    assert_null(shard_connect(&s, 1, 200, 200, err, sizeof err, NULL));
    assert_non_null(strstr(err, "no reachable master serves shard 1"));
    assert_non_null(strstr(err, "{auditq:1}"));
    assert_non_null(strstr(err, "127.0.0.1:1 ("));
    assert_non_null(strstr(err, "check that redis_url and redis_shard_urls name live cluster nodes"));
    shards_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_slot),      cmocka_unit_test(test_shard_keys),
        cmocka_unit_test(test_pick),          cmocka_unit_test(test_init_layouts),
        cmocka_unit_test(test_init_refusals), cmocka_unit_test(test_cluster_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
