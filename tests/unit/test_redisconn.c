/* test_redisconn.c -- Redis URL parsing and masking, and the messages for
 * refused logins and ACL denials (common/redisconn.c). The error texts are
 * the exact replies of Redis 7.0 (checked against redis-server 7.0.15 in
 * tests/integration/it_88_security.sh) and the forms of 6.x and 7.2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "redisconn.h"

static void test_parse_ok(void **state)
{
    (void)state;
    aq_redis_target t;
    char err[256] = "";

    assert_int_equal(redis_url_parse("redis://aq-producer:p%40ss%3Aw@h.example:6380/2", &t, err, sizeof err), 0);
    assert_string_equal(t.user, "aq-producer");
    assert_string_equal(t.password, "p@ss:w");
    assert_string_equal(t.host, "h.example");
    assert_int_equal(t.port, 6380);
    assert_int_equal(t.db, 2);
    assert_int_equal(t.tls, 0);

    assert_int_equal(redis_url_parse("redis://:secret@[::1]", &t, err, sizeof err), 0);
    assert_string_equal(t.user, "");
    assert_string_equal(t.password, "secret");
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 6379);

    assert_int_equal(redis_url_parse("redis://secret@h", &t, err, sizeof err), 0);
    assert_string_equal(t.user, "");
    assert_string_equal(t.password, "secret");

    assert_int_equal(redis_url_parse("unix:///run/redis.sock?db=3", &t, err, sizeof err), 0);
    assert_string_equal(t.unix_path, "/run/redis.sock");
    assert_int_equal(t.db, 3);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct { const char *url, *msg; } cases[] = {
        {"http://u:pw@h", "Redis URL 'http://u:***@h': must start with redis://, rediss:// (TLS) or unix://"},
        {"redis://u:pw@h:0", "Redis URL 'redis://u:***@h:0': port must be 1..65535"},
        {"redis://u:pw@h/x", "Redis URL 'redis://u:***@h/x': database after / must be a number"},
        {"redis://u:p%4@h", "Redis URL 'redis://u:***@h': bad user or password (too long, NUL or bad %-escape)"},
        {"redis://u:p%00@h", "Redis URL 'redis://u:***@h': bad user or password (too long, NUL or bad %-escape)"},
        {"redis://h?tls_ca=/ca.pem", "Redis URL 'redis://h?tls_ca=/ca.pem': tls_ca is for TLS: use rediss://"},
        {"redis://h?foo=1", "Redis URL 'redis://h?foo=1': unknown parameter 'foo' (known: tls_ca, tls_cert, "
                            "tls_key, tls_server_name)"},
        {"redis://[::1", "Redis URL 'redis://[::1': unterminated [IPv6] host"},
        {"unix://rel.sock", "Redis URL 'unix://rel.sock': expected unix:///absolute/path.sock"},
    };
    aq_redis_target t;
    char err[300];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        if (redis_url_parse(cases[i].url, &t, err, sizeof err) != -1 || strcmp(err, cases[i].msg) != 0)
            fail_msg("%s: got '%s', expected '%s'", cases[i].url, err, cases[i].msg);
    }
}

static void test_rediss(void **state)
{
    (void)state;
    aq_redis_target t;
    char err[300] = "";
    const char *url = "rediss://aq-worker:pw@redis.example:6390/1?tls_ca=%2Fetc%2Fca.pem&tls_server_name=r1";

    if (!redis_tls_available()) {
        assert_int_equal(redis_url_parse(url, &t, err, sizeof err), -1);
        assert_string_equal(err, "Redis URL 'rediss://aq-worker:***@redis.example:6390/1?tls_ca=%2Fetc%2Fca.pem&"
                                 "tls_server_name=r1': this auditq was built without TLS (hiredis 0.14 has none): "
                                 "use a TLS tunnel and redis://127.0.0.1:PORT, or build with hiredis >= 1.0 and "
                                 "hiredis_ssl (docs/SECURITY.md)");
        return;
    }
    assert_int_equal(redis_url_parse(url, &t, err, sizeof err), 0);
    assert_int_equal(t.tls, 1);
    assert_string_equal(t.tls_ca, "/etc/ca.pem");
    assert_string_equal(t.tls_server_name, "r1");
    assert_int_equal(t.db, 1);
    assert_int_equal(redis_url_parse("rediss://h?tls_cert=/c.pem", &t, err, sizeof err), -1);
    assert_string_equal(err, "Redis URL 'rediss://h?tls_cert=/c.pem': tls_cert and tls_key go together "
                             "(a client certificate and its private key)");
}

static void test_mask(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } cases[] = {
        {"redis://u:pw@h:1/2", "redis://u:***@h:1/2"},
        {"redis://:pw@h", "redis://:***@h"},
        {"redis://pw@h", "redis://***@h"},
        {"redis://u:p@w@h", "redis://u:***@h"},   /* the last '@' ends the password */
        {"redis://h:1", "redis://h:1"},
        {"unix:///s.sock", "unix:///s.sock"},
    };
    char out[128];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        redis_url_mask(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].out);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    aq_redis_target t;
    char err[256], out[300];
    static const struct {
        const char *role, *what, *key, *reply;
        int kind;
        const char *msg;
    } cases[] = {
        {"producer", "LPUSH", "{auditq}:queue:high", "NOPERM this user has no permissions to run the 'lpush' command",
         REDIS_REFUSED_COMMAND,
         "Redis user 'aq-p' may not run LPUSH (NOPERM): grant it (ACL SETUSER aq-p +lpush) or use the producer "
         "rules of docs/SECURITY.md"},
        /* Redis 6.x wording */
        {"producer", "LPUSH", NULL, "NOPERM this user has no permissions to run the 'lpush' command or its subcommand",
         REDIS_REFUSED_COMMAND,
         "Redis user 'aq-p' may not run LPUSH (NOPERM): grant it (ACL SETUSER aq-p +lpush) or use the producer "
         "rules of docs/SECURITY.md"},
        {"producer", "LPUSH", "{other}:queue:high", "NOPERM this user has no permissions to access one of the keys used as arguments",
         REDIS_REFUSED_KEY,
         "Redis user 'aq-p' may not use key '{other}:queue:high' with LPUSH (NOPERM): its key patterns must cover "
         "it, see the producer rules of docs/SECURITY.md"},
        {"worker", "the fetch script", NULL,
         "fetch script: ERR The user executing the script can't run this command or subcommand script: "
         "5e4a4f0bd5a6e35bd3e2d8b2a45f6a14e2b0c7a1, on @user_script:42.",
         REDIS_REFUSED_COMMAND,
         "Redis user 'aq-p' may not run a command the fetch script calls (NOPERM): give it the worker rules of "
         "docs/SECURITY.md (config/users.acl)"},
        {"worker", "the settle script", NULL,
         "settle script: ERR The user executing the script can't access at least one of the keys mentioned in "
         "the command arguments script: 5e4a, on @user_script:3.",
         REDIS_REFUSED_KEY,
         "Redis user 'aq-p' may not use the keys of the settle script (NOPERM): its key patterns must cover them, "
         "see the worker rules of docs/SECURITY.md"},
        /* Redis 7.2 wording inside a script names the command */
        {"worker", "the settle script", NULL,
         "NOPERM User aq-p has no permissions to run the 'zadd' command script: 5e4a, on @user_script:3.",
         REDIS_REFUSED_COMMAND,
         "Redis user 'aq-p' may not run zadd, called by the settle script (NOPERM): give it the worker rules of "
         "docs/SECURITY.md (config/users.acl)"},
        {"worker", "the heartbeat script", NULL,
         "SCRIPT LOAD heartbeat: NOPERM this user has no permissions to run the 'script|load' command",
         REDIS_REFUSED_COMMAND,
         "Redis user 'aq-p' may not run the heartbeat script (NOPERM): grant it (ACL SETUSER aq-p +script|load) "
         "or use the worker rules of docs/SECURITY.md"},
        {"auditqctl", NULL, NULL, "NOPERM this user has no permissions to run the 'time' command",
         REDIS_REFUSED_COMMAND,
         "Redis user 'aq-p' may not run TIME (NOPERM): grant it (ACL SETUSER aq-p +time) or use the auditqctl "
         "rules of docs/SECURITY.md"},
        {"", "", NULL, "WRONGPASS invalid username-password pair or user is disabled.", REDIS_REFUSED_LOGIN,
         "Redis refused the login of user 'aq-p' (WRONGPASS): wrong password, unknown user or user off; fix "
         "redis_url or the ACL (docs/SECURITY.md)"},
        {"worker", "the fetch script", NULL, "fetch script: NOAUTH Authentication required.", REDIS_REFUSED_NOAUTH,
         "Redis at h:7000 wants a login (NOAUTH) and redis_url has none: use redis://USER:PASSWORD@host:port "
         "(docs/SECURITY.md)"},
        {"worker", "the fetch script", NULL, "fetch script: OOM command not allowed when used memory > 'maxmemory'.",
         REDIS_REFUSED_NONE, "untouched"},
        {"worker", "the fetch script", NULL, "BUSY Redis is busy running a script (the key spec says nothing)",
         REDIS_REFUSED_NONE, "untouched"},
    };

    assert_int_equal(redis_url_parse("redis://aq-p:pw@h:7000", &t, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(out, sizeof out, "untouched");
        int kind = redis_explain_refusal(&t, cases[i].role, cases[i].what, cases[i].key, cases[i].reply, out,
                                         sizeof out);
        if (kind != cases[i].kind || strcmp(out, cases[i].msg) != 0)
            fail_msg("case %zu: kind %d '%s', expected %d '%s'", i, kind, out, cases[i].kind, cases[i].msg);
        assert_int_equal(redis_refusal_kind(cases[i].reply), cases[i].kind);
    }
    /* No user in the URL: AUTH with a password alone logs in "default". */
    assert_int_equal(redis_url_parse("redis://:pw@h", &t, err, sizeof err), 0);
    assert_int_equal(redis_explain_refusal(&t, "", NULL, NULL, "WRONGPASS invalid username-password pair", out,
                                           sizeof out),
                     REDIS_REFUSED_LOGIN);
    assert_string_equal(out, "Redis refused the login of user 'default' (WRONGPASS): wrong password, unknown user "
                             "or user off; fix redis_url or the ACL (docs/SECURITY.md)");
}

/* redis_sentinels: the list syntax, the pairing with redis_master_name,
 * and which error replies drop a connection (Sentinel fail-over). */
static void test_sentinels(void **state)
{
    (void)state;
    aq_redis_target t;
    char err[300] = "";
    static const struct {
        const char *list, *name, *err;
    } bad[] = {
        {"10.0.0.5", "m", "redis_sentinels: '10.0.0.5' is not host:port (e.g. 10.0.0.5:26379, [::1]:26379); "
                          "separate sentinels with commas"},
        {"a:1, b:99999", "m", "redis_sentinels: 'b:99999' is not host:port (e.g. 10.0.0.5:26379, [::1]:26379); "
                              "separate sentinels with commas"},
        {" , ", "m", "redis_sentinels: no host:port listed"},
        {"a:1", "", "redis_sentinels is set, so redis_master_name must be too: the name the sentinels monitor "
                    "the master under (sentinel.conf 'sentinel monitor NAME ...'), 1..127 characters without "
                    "spaces"},
        {"a:1", "my master", "redis_sentinels is set, so redis_master_name must be too: the name the sentinels "
                             "monitor the master under (sentinel.conf 'sentinel monitor NAME ...'), 1..127 "
                             "characters without spaces"},
    };

    assert_int_equal(redis_url_parse("redis://u:pw@ignored:1/3", &t, err, sizeof err), 0);
    assert_int_equal(redis_target_sentinels(&t, "10.0.0.5:26379, [::1]:26380,s3:26381", "mymaster", err, sizeof err),
                     0);
    assert_string_equal(t.sentinels, "10.0.0.5:26379, [::1]:26380,s3:26381");
    assert_string_equal(t.master_name, "mymaster");
    assert_string_equal(t.password, "pw"); /* the URL keeps credentials and db */
    assert_int_equal(t.db, 3);
    assert_int_equal(redis_target_sentinels(&t, "", "ignored", err, sizeof err), 0);
    assert_string_equal(t.sentinels, "");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (redis_target_sentinels(&t, bad[i].list, bad[i].name, err, sizeof err) != -1 ||
            strcmp(err, bad[i].err) != 0)
            fail_msg("case %zu: '%s'", i, err);
    }
    assert_int_equal(redis_url_parse("unix:///tmp/r.sock", &t, err, sizeof err), 0);
    assert_int_equal(redis_target_sentinels(&t, "a:1", "m", err, sizeof err), -1);
    assert_string_equal(err, "redis_sentinels cannot be used with a unix:// redis_url: use "
                             "redis://[user:password@]any/db for the credentials and database");

    assert_true(redis_reply_wants_reconnect("READONLY You can't write against a read only replica."));
    assert_true(redis_reply_wants_reconnect("LOADING Redis is loading the dataset in memory"));
    assert_true(redis_reply_wants_reconnect("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."));
    assert_true(redis_reply_wants_reconnect("NOREPLICAS Not enough good replicas to write."));
    assert_true(redis_reply_wants_reconnect(
        "ERR Error running script (call to f_1234): @user_script:5: @user_script: 5: -READONLY You can't write "
        "against a read only replica."));
    assert_false(redis_reply_wants_reconnect("OOM command not allowed when used memory > 'maxmemory'."));
    assert_false(redis_reply_wants_reconnect("NOSCRIPT No matching script."));
    assert_false(redis_reply_wants_reconnect(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_rediss),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sentinels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
