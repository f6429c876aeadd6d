/* test_selfaudit.c -- unit tests for auditqctl's self-audit (selfaudit.h):
 * which command lines are reads, changes or neither, the action names,
 * password masking in the recorded arguments, and the metadata JSON byte
 * for byte. The recording itself (Redis, the trail, refusals) is
 * tests/integration/it_89_self_audit.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "selfaudit.h"

/* A mutable argv (as main gets) of n strings; free with argv_free. */
static char **argv_of(const char *const *src, int n)
{
    char **v = calloc((size_t)n + 1, sizeof *v);

    assert_non_null(v);
    for (int i = 0; i < n; i++)
        v[i] = strdup(src[i]);
    return v;
}

static void argv_free(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void test_classify(void **state)
{
    static const struct {
        const char *argv[5];
        sa_kind kind;
        const char *action;
    } cases[] = {
        { { "query", "--tenant", "acme" }, SA_READ, "auditq.query" },
        { { "follow" }, SA_READ, "auditq.follow" },
        { { "dlq", "list" }, SA_READ, "auditq.dlq.list" },
        { { "dlq", "show", "1" }, SA_READ, "auditq.dlq.show" },
        { { "dlq", "requeue", "--all" }, SA_CHANGE, "auditq.dlq.requeue" },
        { { "dlq", "requeue", "--all", "--dry-run" }, SA_NONE, "" },
        { { "dlq", "purge", "--all" }, SA_NONE, "" },            /* no --yes: deletes nothing */
        { { "dlq", "purge", "--all", "--yes" }, SA_CHANGE, "auditq.dlq.purge" },
        { { "verify" }, SA_NONE, "" },
        { { "verify", "--event", "x" }, SA_READ, "auditq.verify" },
        { { "verify", "--event=x" }, SA_READ, "auditq.verify" },
        { { "retention", "run" }, SA_CHANGE, "auditq.retention.run" },
        { { "retention", "run", "--dry-run" }, SA_NONE, "" },
        { { "partitions", "ensure" }, SA_CHANGE, "auditq.partitions.ensure" },
        { { "partitions", "list" }, SA_NONE, "" },
        { { "grants", "--writer", "w" }, SA_CHANGE, "auditq.grants" },
        { { "migrate" }, SA_CHANGE, "auditq.migrate" },
        { { "migrate", "--status" }, SA_NONE, "" },
        { { "migrate", "--dry-run" }, SA_NONE, "" },
        { { "spool", "replay", "f" }, SA_CHANGE, "auditq.spool.replay" },
        { { "spool", "inspect", "f" }, SA_NONE, "" },
        { { "hold", "add", "--tenant", "t" }, SA_CHANGE, "auditq.hold.add" },
        { { "hold", "release", "7" }, SA_CHANGE, "auditq.hold.release" },
        { { "hold", "list" }, SA_NONE, "" },
        { { "stats" }, SA_NONE, "" },
        { { "query", "--", "--dry-run" }, SA_READ, "auditq.query" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char action[SA_ACTION_MAX];
        int argc = 0;
        sa_kind k;

        while (argc < 5 && cases[i].argv[argc] != NULL)
            argc++;
        char **v = argv_of(cases[i].argv, argc);

        k = selfaudit_classify(argc, v, action);
        argv_free(v, argc);
        if (k != cases[i].kind || strcmp(action, cases[i].action) != 0)
            fail_msg("case %zu (%s %s): kind %d action '%s', want %d '%s'", i, cases[i].argv[0],
                     argc > 1 ? cases[i].argv[1] : "", k, action, cases[i].kind, cases[i].action);
    }
}

static void test_mask(void **state)
{
    static const char *const cases[][2] = {
        { "redis://u:secret@h:6379/0", "redis://u:***@h:6379/0" },
        { "postgresql://app:p@ss@db/auditq", "postgresql://app:***@db/auditq" },
        { "redis://:secret@h", "redis://:***@h" },
        { "redis://u@h", "redis://u@h" },
        { "postgresql://h/db?user=a&password=pw&sslmode=require",
          "postgresql://h/db?user=a&password=***&sslmode=require" },
        { "host=h password=pw dbname=d", "host=h password=*** dbname=d" },
        { "--tenant", "--tenant" },
        { "a:b@c", "a:b@c" },  /* not a URL */
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];

        selfaudit_mask(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
}

static void test_metadata(void **state)
{
    static const char *const src[] = { "spool", "replay", "redis://u:pw@h/0", "a\"b" };
    char **argv = argv_of(src, 4);
    char *m;

    (void)state;
    m = selfaudit_metadata("alice", "auditq_reader", 4, argv, -1);
    assert_non_null(m);
    assert_non_null(strstr(m, "{\"command\":\"spool\",\"args\":[\"replay\",\"redis://u:***@h/0\",\"a\\\"b\"],"
                              "\"os_user\":\"alice\",\"db_role\":\"auditq_reader\",\"host\":"));
    assert_non_null(strstr(m, ",\"recorded\":\"before_read\"}"));
    assert_null(strstr(m, "pw"));
    free(m);

    selfaudit_count("purged", 3);
    selfaudit_count("matched", 5);
    selfaudit_count("purged", 4);  /* the last value of a key wins */
    m = selfaudit_metadata("alice", "r", 1, argv, 1);
    assert_non_null(m);
    assert_non_null(strstr(m, ",\"exit_status\":1,\"counts\":{\"purged\":4,\"matched\":5}}"));
    free(m);
    argv_free(argv, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_metadata),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
