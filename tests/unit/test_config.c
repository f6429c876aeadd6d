/* test_config.c -- the config table: defaults, file syntax, every error
 * message, precedence (file < env < --set), weights, cross-field checks,
 * the shipped config/auditq.conf, and config_print round-trips. Also the
 * logfmt line format of log.c. Run from the repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Writes text to a fresh temp file; returns its path (static buffer). */
static const char *write_temp(const char *text)
{
    static char path[64];
    int fd;
    size_t len = strlen(text);

    snprintf(path, sizeof path, "/tmp/aq_test_config_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loads text as a config file (on top of defaults); returns rc, err filled. */
static int load_text(aq_config *c, const char *text, char *err, size_t errlen)
{
    const char *path = write_temp(text);
    char copy[64];
    int rc;

    snprintf(copy, sizeof copy, "%s", path);
    rc = config_load_file(c, copy, err, errlen);
    unlink(copy);
    return rc;
}

/* Same, but errors name the file "config/auditq.conf" as a user would see:
 * the temp path is replaced in the message. */
static int load_text_as(aq_config *c, const char *text, char *err, size_t errlen)
{
    const char *path = write_temp(text);
    char copy[64], raw[512];
    size_t plen;
    int rc;

    snprintf(copy, sizeof copy, "%s", path);
    plen = strlen(copy);
    rc = config_load_file(c, copy, raw, sizeof raw);
    unlink(copy);
    if (rc != 0) {
        assert_memory_equal(raw, copy, plen);
        snprintf(err, errlen, "config/auditq.conf%s", raw + plen);
    }
    return rc;
}

static void test_defaults(void **state)
{
    aq_config c;
    (void)state;

    config_defaults(&c);
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(c.database_url, "postgresql://localhost/auditq");
    assert_string_equal(c.namespace_, "auditq");
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.batch_size, 1000);
    assert_int_equal(c.idle_poll_ms, 50);
    assert_int_equal(c.max_attempts, 5);
    assert_int_equal(c.backoff_base_ms, 200);
    assert_int_equal(c.backoff_max_ms, 60000);
    assert_int_equal(c.heartbeat_interval_ms, 1000);
    assert_int_equal(c.heartbeat_timeout_ms, 5000);
    assert_int_equal(c.recovery_interval_ms, 1000);
    assert_int_equal(c.max_recoveries, 5);
    assert_int_equal(c.priority_mode, PRIO_STRICT);
    assert_int_equal(c.weights[0], 8);
    assert_int_equal(c.weights[1], 4);
    assert_int_equal(c.weights[2], 2);
    assert_int_equal(c.weights[3], 1);
    assert_int_equal(c.dead_letter_max, 100000);
    assert_int_equal(c.shutdown_timeout_ms, 30000);
    assert_int_equal(c.redis_connect_timeout_ms, 2000);
    assert_int_equal(c.redis_timeout_ms, 5000);
    assert_int_equal(c.pg_connect_timeout_s, 5);
    assert_int_equal(c.statement_timeout_ms, 60000);
    assert_int_equal(c.pg_timeout_ms, 90000);
    assert_int_equal(c.write_method, WRITE_COPY);
    assert_int_equal(c.max_job_bytes, 65536);
    assert_int_equal(c.partitions_ahead, 3);
    assert_int_equal(c.log_level, LOG_INFO);
    {
        char err[256] = "";
        assert_int_equal(config_validate(&c, err, sizeof err), 0);
    }
}


/* 13 lines exercising comments, quoting, escapes, CRLF and enums; the
 * file-parse tests append one more line each. */
#define SAMPLE_LINES \
        "# a comment line\n" \
        "\n" \
        "   \t\n" \
        "  # indented comment\n" \
        "batch_size=250\n" \
        "  threads   =   4   # trailing comment\n" \
        "database_url = \"host=db password='a \\\"q\\\" \\\\ b' dbname=x#1\"  # '#' is literal\n" \
        "namespace = \"billing\"\n" \
        "redis_url = redis://h:6380/2\r\n" \
        "priority_mode = weighted\n" \
        "weights = \" 10 , 5 ,2,1 \"\n" \
        "write_method = INSERT\n" \
        "log_level = debug\n"

static void test_file_parse(void **state)
{
    aq_config c;
    char err[512] = "";
    (void)state;

    config_defaults(&c);
    assert_int_equal(load_text_as(&c,
        SAMPLE_LINES
        "idle_poll_ms = 20#not-a-comment-needs-space\n",
        err, sizeof err), -1);
    /* ^ the last line is an error: "20#not..." is not an integer. */
    assert_string_equal(err, "config/auditq.conf:14: idle_poll_ms = 20#not-a-comment-needs-space: "
                             "must be an integer from 1 to 10000");

    config_defaults(&c);
    assert_int_equal(load_text(&c,
        SAMPLE_LINES
        "max_job_bytes = +2048\n"
        "batch_size = 300\n",          /* later line wins */
        err, sizeof err), 0);
    assert_int_equal(c.batch_size, 300);
    assert_int_equal(c.threads, 4);
    assert_string_equal(c.namespace_, "billing");
    assert_string_equal(c.database_url, "host=db password='a \"q\" \\ b' dbname=x#1");
    assert_string_equal(c.redis_url, "redis://h:6380/2");
    assert_int_equal(c.priority_mode, PRIO_WEIGHTED);
    assert_int_equal(c.weights[0], 10);
    assert_int_equal(c.weights[1], 5);
    assert_int_equal(c.weights[2], 2);
    assert_int_equal(c.weights[3], 1);
    assert_int_equal(c.write_method, WRITE_INSERT);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.max_job_bytes, 2048);
    /* Untouched settings keep their defaults. */
    assert_int_equal(c.max_attempts, 5);
}

/* Every error path of the file loader, with the exact message. The line
 * number is the last line of the text. */
static void test_file_errors(void **state)
{
    static const struct {
        const char *text;
        const char *err;
    } cases[] = {
        { "threads = 2\n\n# x\n\n\n\n\n\n\n\n\nbatch_size = 0\n",
          "config/auditq.conf:12: batch_size = 0: must be an integer from 1 to 100000" },
        { "# one\n\nbath_size = 10\n",
          "config/auditq.conf:3: unknown setting 'bath_size' (did you mean 'batch_size'?)" },
        { "a\nb = 1\n", /* the first bad line stops the load */
          "config/auditq.conf:1: expected 'key = value', got 'a'" },
        { "x=1\n", "config/auditq.conf:1: unknown setting 'x' (see config/auditq.conf for the list)" },
        { "\n\n\n\n\n\npriority_mode = fast\n",
          "config/auditq.conf:7: priority_mode = fast: must be one of strict, weighted" },
        { "write_method = bulk\n",
          "config/auditq.conf:1: write_method = bulk: must be one of copy, insert" },
        { "log_level = trace\n",
          "config/auditq.conf:1: log_level = trace: must be one of error, warn, info, debug" },
        { "threads = 257\n", "config/auditq.conf:1: threads = 257: must be an integer from 0 to 256" },
        { "threads = -1\n", "config/auditq.conf:1: threads = -1: must be an integer from 0 to 256" },
        { "threads = 1.5\n", "config/auditq.conf:1: threads = 1.5: must be an integer from 0 to 256" },
        { "threads = 99999999999999999999\n",
          "config/auditq.conf:1: threads = 99999999999999999999: must be an integer from 0 to 256" },
        { "threads =\n", "config/auditq.conf:1: threads = : must be an integer from 0 to 256" },
        { "threads = \"\"\n", "config/auditq.conf:1: threads = : must be an integer from 0 to 256" },
        { "max_job_bytes = 1023\n",
          "config/auditq.conf:1: max_job_bytes = 1023: must be an integer from 1024 to 16777216" },
        { "namespace = \"a b\"\n",
          "config/auditq.conf:1: namespace = a b: must be 1 to 64 characters from A-Z a-z 0-9 _ . -" },
        { "namespace = \"\"\n",
          "config/auditq.conf:1: namespace = : must be 1 to 64 characters long" },
        { "namespace = 12345678901234567890123456789012345678901234567890123456789012345\n",
          "config/auditq.conf:1: namespace = 12345678901234567890123456789012345678901234567890"
          "123456789012345: must be 1 to 64 characters long" },
        { "redis_url = http://x\n",
          "config/auditq.conf:1: redis_url = http://x: must start with redis://, rediss:// (TLS) "
          "or unix:// (e.g. redis://127.0.0.1:6379)" },
        { "redis_url = \"http://:hunter2@h\"\n",   /* password masked in the error */
          "config/auditq.conf:1: redis_url = http://:***@h: must start with redis://, "
          "rediss:// (TLS) or unix:// (e.g. redis://127.0.0.1:6379)" },
        { "namespace = \"abc\n",
          "config/auditq.conf:1: namespace: missing closing '\"'; end the value with \"" },
        { "namespace = \"abc\" def\n",
          "config/auditq.conf:1: namespace: unexpected text after the closing quote: 'def'" },
        { "namespace = \"a\\nb\"\n",
          "config/auditq.conf:1: namespace: unknown escape '\\n' in quoted value; only \\\" "
          "and \\\\ are allowed" },
        { "= 5\n", "config/auditq.conf:1: expected 'key = value', got '= 5'" },
        { "batch size = 5\n", "config/auditq.conf:1: expected 'key = value', got 'batch size = 5'" },
        { "weights = 8,4,2\n",
          "config/auditq.conf:1: weights = 8,4,2: must be four integers from 1 to 1000 separated "
          "by commas (critical,high,normal,low), e.g. 8,4,2,1" },
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        aq_config c, before;
        char err[512] = "";

        config_defaults(&c);
        before = c;
        if (load_text_as(&c, cases[i].text, err, sizeof err) != -1)
            fail_msg("case %zu loaded without error", i);
        assert_string_equal(err, cases[i].err);
        /* A failing line leaves earlier lines applied but never half-applies
         * itself; the first line of case 0 (threads = 2) is applied. */
        if (i == 0)
            assert_int_equal(c.threads, 2);
        else
            assert_memory_equal(&c, &before, sizeof c);
        /* The buffer loader is the same parser: same message, same state. */
        aq_config b;
        char berr[512] = "";
        config_defaults(&b);
        assert_int_equal(config_load_buffer(&b, cases[i].text, strlen(cases[i].text),
                                             "config/auditq.conf", berr, sizeof berr), -1);
        assert_string_equal(berr, cases[i].err);
        assert_memory_equal(&b, &c, sizeof c);
    }
}

/* config_load_buffer: text that need not end in '\n' nor be NUL-terminated,
 * CRLF lines, NUL bytes, and the same result as the file loader. */
static void test_load_buffer(void **state)
{
    aq_config c, f;
    char err[512] = "";
    (void)state;

    /* Not NUL-terminated, no final newline: only len bytes are read. */
    static const char text[] = "threads = 3\r\n# c\r\nbatch_size = 77XXXX";
    config_defaults(&c);
    assert_int_equal(config_load_buffer(&c, text, sizeof text - 1 - 4, "mem", err, sizeof err), 0);
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.batch_size, 77);
    config_defaults(&f);
    assert_int_equal(load_text(&f, "threads = 3\r\n# c\r\nbatch_size = 77", err, sizeof err), 0);
    assert_memory_equal(&c, &f, sizeof c);
    /* Empty text: defaults. */
    config_defaults(&c);
    assert_int_equal(config_load_buffer(&c, "", 0, "mem", err, sizeof err), 0);
    config_defaults(&f);
    assert_memory_equal(&c, &f, sizeof c);
    /* A NUL byte names its line, like the file loader. */
    static const char nul[] = "threads = 3\nbatch_size = 7\0\n";
    config_defaults(&c);
    assert_int_equal(config_load_buffer(&c, nul, sizeof nul - 1, "x.conf", err, sizeof err), -1);
    assert_string_equal(err, "x.conf:2: line contains a NUL byte; is this a text file?");
    /* A blank last line counts: errors on line 3 say 3. */
    config_defaults(&c);
    assert_int_equal(config_load_buffer(&c, "\n\nnope = 1", 10, "x.conf", err, sizeof err), -1);
    assert_string_equal(err, "x.conf:3: unknown setting 'nope' (see config/auditq.conf for the list)");
}

static void test_file_missing(void **state)
{
    aq_config c;
    char err[256] = "";
    (void)state;

    config_defaults(&c);
    assert_int_equal(config_load_file(&c, "x.conf", err, sizeof err), -1);
    assert_string_equal(err, "cannot open config file 'x.conf': No such file or directory");
}

static void test_env_overrides_file(void **state)
{
    aq_config c;
    char err[256] = "";
    (void)state;

    config_defaults(&c);
    assert_int_equal(load_text(&c, "threads = 3\nbatch_size = 10\nredis_url = redis://file:1\n",
                               err, sizeof err), 0);
    setenv("AUDITQ_THREADS", "7", 1);
    setenv("AUDITQ_REDIS_URL", "redis://env:2", 1);
    setenv("AUDITQ_DATABASE_URL", "host=envdb", 1);
    setenv("AUDITQ_PRIORITY_MODE", "weighted", 1);
    setenv("AUDITQ_WEIGHTS", "1,2,3,4", 1);
    assert_int_equal(config_load_env(&c, err, sizeof err), 0);
    assert_int_equal(c.threads, 7);
    assert_int_equal(c.batch_size, 10);            /* no env var: file wins */
    assert_string_equal(c.redis_url, "redis://env:2");
    assert_string_equal(c.database_url, "host=envdb");
    assert_int_equal(c.priority_mode, PRIO_WEIGHTED);
    assert_int_equal(c.weights[3], 4);

    /* --set beats env. */
    assert_int_equal(config_set(&c, "threads", "9", NULL, err, sizeof err), 0);
    assert_int_equal(c.threads, 9);

    setenv("AUDITQ_BATCH_SIZE", "250", 1);
    setenv("AUDITQ_THREADS", "abc", 1);
    assert_int_equal(config_load_env(&c, err, sizeof err), -1);
    assert_string_equal(err, "AUDITQ_THREADS=abc: threads: must be an integer from 0 to 256");
    setenv("AUDITQ_THREADS", "", 1);
    assert_int_equal(config_load_env(&c, err, sizeof err), -1);
    assert_string_equal(err, "AUDITQ_THREADS=: threads: must be an integer from 0 to 256");
    unsetenv("AUDITQ_THREADS");
    assert_int_equal(config_load_env(&c, err, sizeof err), 0);
    assert_int_equal(c.batch_size, 250);

    /* A password in a bad env URL is not echoed. */
    setenv("AUDITQ_REDIS_URL", "tcp://u:pw@h", 1);
    assert_int_equal(config_load_env(&c, err, sizeof err), -1);
    assert_string_equal(err, "AUDITQ_REDIS_URL=tcp://u:***@h: redis_url: must start with "
                             "redis://, rediss:// (TLS) or unix:// (e.g. redis://127.0.0.1:6379)");

    unsetenv("AUDITQ_REDIS_URL");
    unsetenv("AUDITQ_DATABASE_URL");
    unsetenv("AUDITQ_PRIORITY_MODE");
    unsetenv("AUDITQ_WEIGHTS");
    unsetenv("AUDITQ_BATCH_SIZE");
}

static void test_set(void **state)
{
    aq_config c, before;
    char err[256] = "";
    (void)state;

    config_defaults(&c);
    assert_int_equal(config_set(&c, "batch_size", "5000", "--set", err, sizeof err), 0);
    assert_int_equal(c.batch_size, 5000);
    assert_int_equal(config_set(&c, "log_level", "warn", "--set", err, sizeof err), 0);
    assert_int_equal(c.log_level, LOG_WARN);
    assert_int_equal(config_set(&c, "namespace", "a.b-c_D9", "--set", err, sizeof err), 0);
    assert_string_equal(c.namespace_, "a.b-c_D9");
    assert_int_equal(config_set(&c, "database_url", "", "--set", err, sizeof err), 0);
    assert_string_equal(c.database_url, "");

    before = c;
    assert_int_equal(config_set(&c, "batch_size", "0", "--set", err, sizeof err), -1);
    assert_string_equal(err, "--set: batch_size = 0: must be an integer from 1 to 100000");
    assert_int_equal(config_set(&c, "treads", "2", NULL, err, sizeof err), -1);
    assert_string_equal(err, "--set: unknown setting 'treads' (did you mean 'threads'?)");
    assert_int_equal(config_set(&c, "namespace", "a\tb", NULL, err, sizeof err), -1);
    assert_string_equal(err, "--set: namespace = a\tb: must not contain control characters");
    assert_memory_equal(&c, &before, sizeof c);
}

/* Test hooks exist only in the test build (-DAQ_TEST_HOOKS, as the
 * Makefile builds tests/auditq-worker-hooks); this one, like the installed
 * worker, refuses them by name from a file, --set and the environment. */
static void test_hooks_refused(void **state)
{
    aq_config c, before;
    char err[512] = "";
    (void)state;

    config_defaults(&c);
    before = c;
    assert_int_equal(config_set(&c, "crash_after_commit", "2", NULL, err, sizeof err), -1);
    assert_string_equal(err, "--set: crash_after_commit is a test hook, not available in this build; "
                             "remove it (only the test build, tests/auditq-worker-hooks, has it)");
    assert_int_equal(load_text_as(&c, "batch_size = 10\ncrash_after_commit = 0\n", err, sizeof err), -1);
    assert_string_equal(err, "config/auditq.conf:2: crash_after_commit is a test hook, not available in "
                             "this build; remove it (only the test build, tests/auditq-worker-hooks, has it)");
    setenv("AUDITQ_CRASH_AFTER_COMMIT", "1", 1);
    assert_int_equal(config_load_env(&c, err, sizeof err), -1);
    unsetenv("AUDITQ_CRASH_AFTER_COMMIT");
    assert_string_equal(err, "AUDITQ_CRASH_AFTER_COMMIT=1: crash_after_commit is a test hook, not "
                             "available in this build; unset AUDITQ_CRASH_AFTER_COMMIT");
    config_defaults(&c);
    assert_memory_equal(&c, &before, sizeof c);
}

static char env_warnings[1024];

static void collect_warning(void *ctx, const char *msg)
{
    size_t n = strlen(env_warnings);
    (void)ctx;
    snprintf(env_warnings + n, sizeof env_warnings - n, "%s\n", msg);
}

/* A misspelled AUDITQ_* variable is named, with the closest setting's
 * variable; real settings and other variables are not. */
static void test_env_unknown(void **state)
{
    (void)state;
    setenv("AUDITQ_BATCHSIZE", "50", 1);
    setenv("AUDITQ_THREADS", "2", 1);
    setenv("AUDITQ_ZZZZZZZZZZZZ", "1", 1);
    setenv("NOT_AUDITQ_BATCHSIZE", "1", 1);
    env_warnings[0] = '\0';
    config_env_unknown(collect_warning, NULL);
    unsetenv("AUDITQ_BATCHSIZE");
    unsetenv("AUDITQ_THREADS");
    unsetenv("AUDITQ_ZZZZZZZZZZZZ");
    unsetenv("NOT_AUDITQ_BATCHSIZE");
    /* environ order is the order of setenv here (glibc appends). */
    assert_string_equal(env_warnings,
                        "AUDITQ_BATCHSIZE is not a setting and is ignored (did you mean AUDITQ_BATCH_SIZE?)\n"
                        "AUDITQ_ZZZZZZZZZZZZ is not a setting and is ignored (each setting KEY of "
                        "config/auditq.conf is AUDITQ_<KEY>)\n");
    env_warnings[0] = '\0';
    config_env_unknown(collect_warning, NULL);
    assert_string_equal(env_warnings, "");
}

/* The one rule for an option's value on every command line. */
static void test_arg_value(void **state)
{
    static const struct {
        const char *opt, *value, *err; /* err NULL: accepted */
    } cases[] = {
        { "--tenant", "acme", NULL },
        { "--tenant", "", NULL },
        { "--tenant", "-", NULL },            /* stdin by convention */
        { "-b", "-5", NULL },                 /* a number: the option's own check judges it */
        { "--limit", "-1", NULL },
        { "--tenant", "--desc",
          "option '--tenant' needs a value, but the next argument '--desc' is an option; "
          "to give a value that starts with '-', write --tenant=--desc" },
        { "-c", "--check",
          "option '-c' needs a value, but the next argument '--check' is an option; "
          "to give a value that starts with '-', write -c--check" },
        { "--reason", "-x",
          "option '--reason' needs a value, but the next argument '-x' is an option; "
          "to give a value that starts with '-', write --reason=-x" },
        { "--tenant", NULL, "option '--tenant' needs a value" },
    };
    char err[512];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = config_arg_value(cases[i].opt, cases[i].value, err, sizeof err);
        if (cases[i].err == NULL) {
            if (rc != 0)
                fail_msg("%s %s: refused: %s", cases[i].opt, cases[i].value, err);
        } else {
            assert_int_equal(rc, -1);
            assert_string_equal(err, cases[i].err);
        }
    }
    /* getopt form: only a separate value is checked, named as typed. */
    {
        char *argv[] = { (char *)"prog", (char *)"--redis-url", (char *)"--async", (char *)"--tenant=-x",
                         (char *)"-vc", (char *)"--x", NULL };
        assert_int_equal(config_getopt_value(argv, 3, argv[2], err, sizeof err), -1);
        assert_string_equal(err, "option '--redis-url' needs a value, but the next argument '--async' is an "
                                 "option; to give a value that starts with '-', write --redis-url=--async");
        assert_int_equal(config_getopt_value(argv, 4, argv[3] + 9, err, sizeof err), 0);
        assert_int_equal(config_getopt_value(argv, 6, argv[5], err, sizeof err), -1);
        assert_string_equal(err, "option '-c' needs a value, but the next argument '--x' is an option; "
                                 "to give a value that starts with '-', write -c--x");
    }
}

static void test_weights(void **state)
{
    static const struct {
        const char *in;
        int ok;
        int w[4];
    } cases[] = {
        { "8,4,2,1", 1, { 8, 4, 2, 1 } },
        { "1000,1,1,1000", 1, { 1000, 1, 1, 1000 } },
        { " 3 ,\t2, 2 ,1", 1, { 3, 2, 2, 1 } },
        { "8,4,2", 0, { 0 } },
        { "8,4,2,0", 0, { 0 } },
        { "a,b,c,d", 0, { 0 } },
        { "8,4,2,1,1", 0, { 0 } },
        { "8,4,,1", 0, { 0 } },
        { "8,4,2,1001", 0, { 0 } },
        { "8,4,2,1,", 0, { 0 } },
        { "", 0, { 0 } },
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        aq_config c;
        char err[512] = "", want[512];

        config_defaults(&c);
        if (cases[i].ok) {
            assert_int_equal(config_set(&c, "weights", cases[i].in, NULL, err, sizeof err), 0);
            assert_memory_equal(c.weights, cases[i].w, sizeof c.weights);
        } else {
            assert_int_equal(config_set(&c, "weights", cases[i].in, NULL, err, sizeof err), -1);
            snprintf(want, sizeof want,
                     "--set: weights = %s: must be four integers from 1 to 1000 separated by "
                     "commas (critical,high,normal,low), e.g. 8,4,2,1", cases[i].in);
            assert_string_equal(err, want);
            assert_int_equal(c.weights[0], 8);
            assert_int_equal(c.weights[3], 1);
        }
    }
}

static void test_validate(void **state)
{
    aq_config c;
    char err[512] = "";
    (void)state;

    config_defaults(&c);
    c.heartbeat_interval_ms = 3000;    /* timeout 5000 < 6000 */
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    assert_string_equal(err, "heartbeat_timeout_ms (5000) must be at least 2 * "
                             "heartbeat_interval_ms (3000); raise heartbeat_timeout_ms to 6000 "
                             "or lower heartbeat_interval_ms");
    c.heartbeat_timeout_ms = 6000;     /* exactly 2x is fine */
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    c.backoff_base_ms = 1000;
    c.backoff_max_ms = 999;
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    assert_string_equal(err, "backoff_max_ms (999) must be at least backoff_base_ms (1000); "
                             "raise backoff_max_ms or lower backoff_base_ms");
    c.backoff_max_ms = 1000;
    assert_int_equal(config_validate(&c, err, sizeof err), 0);

    /* The server's statement_timeout must fire before the client gives up. */
    c.statement_timeout_ms = 90000;    /* = pg_timeout_ms's default */
    assert_int_equal(config_validate(&c, err, sizeof err), -1);
    assert_string_equal(err, "pg_timeout_ms (90000) must exceed statement_timeout_ms (90000); "
                             "raise pg_timeout_ms, lower statement_timeout_ms, or set "
                             "pg_timeout_ms = 0 (no limit)");
    c.pg_timeout_ms = 90001;
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    c.pg_timeout_ms = 0;               /* no client-side limit */
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    c.pg_timeout_ms = 1000;
    c.statement_timeout_ms = 0;        /* no server-side limit: any client limit goes */
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
}

/* The shipped example must load cleanly and match the built-in defaults
 * (it documents them). */
static void test_shipped_conf(void **state)
{
    aq_config c, d;
    char err[512] = "";
    (void)state;

    config_defaults(&c);
    if (config_load_file(&c, "config/auditq.conf", err, sizeof err) != 0)
        fail_msg("config/auditq.conf: %s", err);
    assert_int_equal(config_validate(&c, err, sizeof err), 0);
    config_defaults(&d);
    assert_memory_equal(&c, &d, sizeof c);
}

/* Every setting is documented in config/auditq.conf, and its "Env:" line
 * says the same as the table about SIGHUP ("SIGHUP reloads it." for
 * reloadable rows, "Needs a restart." for the others). The table's view
 * comes from config_print ("env AUDITQ_X, SIGHUP reloads it"). */
static void test_shipped_conf_reload_marks(void **state)
{
    aq_config c;
    char *printed = NULL, *conf = NULL;
    size_t plen = 0, clen = 0;
    FILE *f;
    int settings = 0;
    (void)state;

    config_defaults(&c);
    f = open_memstream(&printed, &plen);
    assert_non_null(f);
    config_print(&c, f);
    fclose(f);
    f = fopen("config/auditq.conf", "r");
    assert_non_null(f);
    assert_true(getdelim(&conf, &clen, '\0', f) > 0);
    fclose(f);

    for (const char *p = strstr(printed, "env AUDITQ_"); p != NULL; p = strstr(p + 1, "env AUDITQ_")) {
        char var[80], want[160];
        size_t n = strcspn(p + 4, ",\n");
        int reloadable = strncmp(p + 4 + n, ", SIGHUP reloads it\n", 20) == 0;
        assert_true(n < sizeof var);
        memcpy(var, p + 4, n);
        var[n] = '\0';
        snprintf(want, sizeof want, "Env: %s. %s\n", var,
                 reloadable ? "SIGHUP reloads it." : "Needs a restart.");
        if (strstr(conf, want) == NULL)
            fail_msg("config/auditq.conf lacks \"%.*s\" (or says the opposite)", (int)strlen(want) - 1, want);
        settings++;
    }
    assert_true(settings >= 34);
    free(printed);
    free(conf);
}

/* Prints c, parses the text into a fresh config, returns it in *out. */
static void print_and_reparse(const aq_config *c, aq_config *out, char **text)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char err[512] = "";

    assert_non_null(f);
    config_print(c, f);
    fclose(f);
    config_defaults(out);
    /* Start from different values so a missing line would show. */
    out->batch_size = 7;
    out->weights[2] = 99;
    if (load_text(out, buf, err, sizeof err) != 0)
        fail_msg("printed config does not parse: %s\n%s", err, buf);
    *text = buf;
}

static void test_print_roundtrip(void **state)
{
    aq_config c, back;
    char *text;
    (void)state;

    config_defaults(&c);
    print_and_reparse(&c, &back, &text);
    assert_memory_equal(&c, &back, sizeof c);
    /* Each setting is "# help" then "name = value". */
    assert_non_null(strstr(text, "\n# Most events written to PostgreSQL in one transaction\n"
                                 "# range 1..100000, default 1000, env AUDITQ_BATCH_SIZE, SIGHUP reloads it\n"
                                 "batch_size = 1000\n"));
    assert_non_null(strstr(text, "\nredis_url = \"redis://127.0.0.1:6379\"\n"));
    assert_non_null(strstr(text, "\nweights = 8,4,2,1\n"));
    assert_non_null(strstr(text, "\npriority_mode = strict\n"));
    assert_non_null(strstr(text, "\nlog_level = info\n"));
    free(text);

    /* Non-default values, quotes and backslashes survive the round trip. */
    {
        char err[256];
        static const char *const sets[][2] = {
            { "redis_url", "unix:///run/redis/redis.sock?db=3" },
            { "database_url", "host=db dbname='a \"b\" \\\\ c#d' user=x" },
            { "namespace", "ns.1-x_Y" },
            { "threads", "16" },
            { "batch_size", "100000" },
            { "priority_mode", "weighted" },
            { "weights", "1000,3,2,1" },
            { "write_method", "insert" },
            { "log_level", "error" },
            { "statement_timeout_ms", "0" },
        };
        for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
            assert_int_equal(config_set(&c, sets[i][0], sets[i][1], NULL, err, sizeof err), 0);
        print_and_reparse(&c, &back, &text);
        assert_memory_equal(&c, &back, sizeof c);
        assert_non_null(strstr(text, "\ndatabase_url = \"host=db dbname='a \\\"b\\\" \\\\\\\\ c#d' "
                                     "user=x\"\n"));
        free(text);
    }
}

static void test_print_masks_passwords(void **state)
{
    static const struct {
        const char *key, *value, *printed;
    } cases[] = {
        { "redis_url", "redis://:s3cret@h:6379/1", "redis_url = \"redis://:***@h:6379/1\"" },
        { "redis_url", "redis://alice:p@ss@h", "redis_url = \"redis://alice:***@h\"" },
        { "redis_url", "redis://alice@h", "redis_url = \"redis://alice@h\"" },
        { "database_url", "postgresql://u:pw@db:5432/auditq?sslmode=require",
          "database_url = \"postgresql://u:***@db:5432/auditq?sslmode=require\"" },
        { "database_url", "postgres://db/a?user=u&password=pw&sslmode=disable",
          "database_url = \"postgres://db/a?user=u&password=***&sslmode=disable\"" },
        { "database_url", "host=db password=pw user=u",
          "database_url = \"host=db password=*** user=u\"" },
        { "database_url", "host=db password = 'a \\' b' user=u",   /* blanks kept */
          "database_url = \"host=db password = *** user=u\"" },
        { "database_url", "host=db  dbname = x", "database_url = \"host=db  dbname = x\"" },
        { "database_url", "host=db user=u", "database_url = \"host=db user=u\"" },
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        aq_config c;
        char err[256], *buf = NULL;
        size_t len = 0;
        FILE *f;

        config_defaults(&c);
        assert_int_equal(config_set(&c, cases[i].key, cases[i].value, NULL, err, sizeof err), 0);
        f = open_memstream(&buf, &len);
        assert_non_null(f);
        config_print(&c, f);
        fclose(f);
        if (strstr(buf, cases[i].printed) == NULL)
            fail_msg("case %zu: want %s in\n%s", i, cases[i].printed, buf);
        assert_null(strstr(buf, "s3cret"));
        assert_null(strstr(buf, "pw"));
        assert_null(strstr(buf, "p@ss"));
        /* The struct keeps the real value: only the output is masked. */
        assert_string_equal(strcmp(cases[i].key, "redis_url") == 0 ? c.redis_url : c.database_url,
                            cases[i].value);
        free(buf);
    }
}

/* ---- config_reload (SIGHUP) ---- */

typedef struct seen {
    config_change ch[16];
    int n;
} seen;

static void record_change(void *ctx, const config_change *ch)
{
    seen *s = ctx;
    assert_true(s->n < 16);
    s->ch[s->n++] = *ch;
}

static void test_reload(void **state)
{
    aq_config live, next, before;
    char err[512] = "";
    seen s;
    (void)state;

    config_defaults(&live);
    next = live;
    assert_int_equal(config_set(&next, "batch_size", "7", NULL, err, sizeof err), 0);
    assert_int_equal(config_set(&next, "threads", "4", NULL, err, sizeof err), 0);
    assert_int_equal(config_set(&next, "log_level", "debug", NULL, err, sizeof err), 0);
    assert_int_equal(config_set(&next, "weights", "1,2,3,4", NULL, err, sizeof err), 0);
    assert_int_equal(config_set(&next, "database_url", "postgresql://u:secret@db/a", NULL, err, sizeof err), 0);

    memset(&s, 0, sizeof s);
    assert_int_equal(config_reload(&live, &next, record_change, &s, err, sizeof err), 3);
    /* Reported in table order; passwords masked; non-reloadable kept. */
    assert_int_equal(s.n, 5);
    assert_string_equal(s.ch[0].name, "database_url");
    assert_string_equal(s.ch[0].old_value, "postgresql://localhost/auditq");
    assert_string_equal(s.ch[0].new_value, "postgresql://u:***@db/a");
    assert_int_equal(s.ch[0].applied, 0);
    assert_string_equal(s.ch[1].name, "threads");
    assert_string_equal(s.ch[1].old_value, "0");
    assert_string_equal(s.ch[1].new_value, "4");
    assert_int_equal(s.ch[1].applied, 0);
    assert_string_equal(s.ch[2].name, "batch_size");
    assert_string_equal(s.ch[2].old_value, "1000");
    assert_string_equal(s.ch[2].new_value, "7");
    assert_int_equal(s.ch[2].applied, 1);
    assert_string_equal(s.ch[3].name, "weights");
    assert_string_equal(s.ch[3].old_value, "8,4,2,1");
    assert_string_equal(s.ch[3].new_value, "1,2,3,4");
    assert_string_equal(s.ch[4].name, "log_level");
    assert_string_equal(s.ch[4].old_value, "info");
    assert_string_equal(s.ch[4].new_value, "debug");
    assert_int_equal(s.ch[4].applied, 1);
    assert_int_equal(live.batch_size, 7);
    assert_int_equal(live.log_level, LOG_DEBUG);
    assert_int_equal(live.weights[3], 4);
    assert_int_equal(live.threads, 0);
    assert_string_equal(live.database_url, "postgresql://localhost/auditq");

    /* Again with the same input: only the restart-needing ones differ. */
    memset(&s, 0, sizeof s);
    assert_int_equal(config_reload(&live, &next, record_change, &s, err, sizeof err), 0);
    assert_int_equal(s.n, 2);

    /* A result that fails validation changes nothing and reports nothing. */
    assert_int_equal(config_set(&next, "backoff_base_ms", "5000", NULL, err, sizeof err), 0);
    assert_int_equal(config_set(&next, "backoff_max_ms", "100", NULL, err, sizeof err), 0);
    assert_int_equal(config_set(&next, "batch_size", "9", NULL, err, sizeof err), 0);
    before = live;
    memset(&s, 0, sizeof s);
    assert_int_equal(config_reload(&live, &next, record_change, &s, err, sizeof err), -1);
    assert_string_equal(err, "backoff_max_ms (100) must be at least backoff_base_ms (5000); "
                             "raise backoff_max_ms or lower backoff_base_ms");
    assert_int_equal(s.n, 0);
    assert_memory_equal(&live, &before, sizeof live);

    /* Long values are cut, marked with "...". */
    config_defaults(&live);
    next = live;
    char longdir[400];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    assert_int_equal(config_set(&next, "archive_dir", longdir, NULL, err, sizeof err), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(config_reload(&live, &next, record_change, &s, err, sizeof err), 1);
    assert_int_equal(strlen(s.ch[0].new_value), sizeof s.ch[0].new_value - 1);
    assert_string_equal(s.ch[0].new_value + sizeof s.ch[0].new_value - 4, "...");
    assert_string_equal(live.archive_dir, longdir);
}

static void test_log_level_parse(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse("error"), LOG_ERROR);
    assert_int_equal(log_level_parse("warn"), LOG_WARN);
    assert_int_equal(log_level_parse("info"), LOG_INFO);
    assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
    assert_int_equal(log_level_parse("trace"), -1);
    assert_int_equal(log_level_parse(""), -1);
    assert_int_equal(log_level_parse(NULL), -1);
}

/* Runs log calls with stderr redirected to a temp file; returns its text. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/aq_test_log_XXXXXX";
    int fd = mkstemp(path), saved;
    static char out[8192];
    ssize_t n;

    assert_true(fd >= 0);
    fflush(stderr);
    saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    n = pread(fd, out, sizeof out - 1, 0);
    assert_true(n >= 0);
    out[n] = '\0';
    close(fd);
    unlink(path);
    return out;
}

static void test_log_q(void **state)
{
    char b[32];
    (void)state;
    assert_string_equal(log_q(b, sizeof b, "plain"), "\"plain\"");
    assert_string_equal(log_q(b, sizeof b, "relation \"x\" at C:\\d\n"),
                        "\"relation \\\"x\\\" at C:\\\\d\\n\"");
    assert_string_equal(log_q(b, sizeof b, NULL), "\"\"");
    /* Cut to fit, never inside an escape, marked with "...". */
    assert_string_equal(log_q(b, sizeof b, "aaaaaaaaaaaaaaaaaaaaaa\"bbbbbbbbbbbb"),
                        "\"aaaaaaaaaaaaaaaaaaaaaa\\\"b...\"");
    assert_string_equal(log_q(b, sizeof b, "aaaaaaaaaaaaaaaaaaaaaaaa\"bbbbbbbbbbbb"),
                        "\"aaaaaaaaaaaaaaaaaaaaaaaa...\"");
    assert_string_equal(log_q(b, 5, "abc"), "\"\"");
}

static void log_calls(void)
{
    log_level = LOG_INFO;
    log_info("worker \"w1\" started\\ok\nnext", " threads=%d id=%s", 2, "host:123");
    log_debug("hidden", NULL);
    log_warn("no space before fields", "k=v");
    log_error("bell\a", NULL);
}

static void test_log_format(void **state)
{
    const char *out;
    (void)state;

    out = capture_stderr(log_calls);
    /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ is 27 bytes; check shape then the rest. */
    const char *lines[] = {
        " level=info msg=\"worker \\\"w1\\\" started\\\\ok\\nnext\" threads=2 id=host:123\n",
        " level=warn msg=\"no space before fields\" k=v\n",
        " level=error msg=\"bell\\x07\"\n",
    };
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(lines[i]);
        assert_memory_equal(out, "ts=", 3);
        for (size_t k = 3; k < 3 + 24; k++) {
            char ch = out[k];
            switch (k - 3) {
            case 4: case 7: assert_int_equal(ch, '-'); break;
            case 10: assert_int_equal(ch, 'T'); break;
            case 13: case 16: assert_int_equal(ch, ':'); break;
            case 19: assert_int_equal(ch, '.'); break;
            case 23: assert_int_equal(ch, 'Z'); break;
            default: assert_true(ch >= '0' && ch <= '9');
            }
        }
        assert_memory_equal(out + 27, lines[i], len);
        out += 27 + len;
    }
    assert_string_equal(out, "");
    log_level = LOG_INFO;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_parse),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_load_buffer),
        cmocka_unit_test(test_env_overrides_file),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_shipped_conf),
        cmocka_unit_test(test_shipped_conf_reload_marks),
        cmocka_unit_test(test_print_roundtrip),
        cmocka_unit_test(test_print_masks_passwords),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_hooks_refused),
        cmocka_unit_test(test_env_unknown),
        cmocka_unit_test(test_arg_value),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_format),
        cmocka_unit_test(test_log_q),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
