/* config.c -- the worker/tool settings, driven by ONE declarative table.
 *
 * Every setting is a row of cf_table[] below: name, type, target field,
 * default (as text), bounds, whether SIGHUP may change it, and one help
 * line.  Everything else walks that table, so a new setting is one row:
 *   config_defaults   parses each row's default text through cf_apply
 *   config_load_file  "key = value" lines   -> config_set (config_file.c)
 *   config_load_buffer  the same lines from memory (the fuzzer's entry)
 *   config_load_env   AUDITQ_<NAME> for each row
 *   config_env_unknown  AUDITQ_* variables that name no row (a typo such as
 *                     AUDITQ_BATCHSIZE), for the caller to warn about
 *   config_arg_value  the one rule for option values on every command line
 *   config_set        the --set key=value flag
 *   config_print      "# help" + "name = value", itself a valid file, with
 *                     passwords masked (config_mask_url, config_mask.c)
 *   config_reload     SIGHUP: copies the rows marked reloadable, reports
 *                     the others as needing a restart
 * (PgBouncer's CF_ABS table in src/main.c, Redis createIntConfig.)
 *
 * Errors are for humans reading a terminal: they name where the value came
 * from (file:line, AUDITQ_X=..., --set), the key, the value, the reason and
 * what to write instead.
 */
#include "config.h"
#include "log.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum { CF_STR, CF_INT, CF_ENUM, CF_WEIGHTS } cf_type;

typedef struct cf_enum {
    const char *name;
    int value;
} cf_enum;

typedef struct cf_entry {
    const char *name;
    cf_type type;
    size_t off;           /* offsetof(aq_config, field) */
    size_t size;          /* sizeof the field (CF_STR: buffer incl. NUL) */
    const char *def;      /* default, as it would be written in the file */
    long min, max;        /* CF_INT: value bounds; CF_STR: length bounds;
                           * CF_WEIGHTS: bounds of each of the four items */
    const cf_enum *enums; /* CF_ENUM: NULL-terminated */
    int (*check)(const char *v, char *why, size_t whylen); /* CF_STR extra */
    bool reloadable;      /* may change on SIGHUP without a restart */
    bool secret_url;      /* may hold a password: masked by config_print */
    const char *help;
} cf_entry;

static const cf_enum cf_prio_modes[] = {
    { "strict", PRIO_STRICT }, { "weighted", PRIO_WEIGHTED }, { NULL, 0 }
};
static const cf_enum cf_write_methods[] = {
    { "copy", WRITE_COPY }, { "insert", WRITE_INSERT }, { NULL, 0 }
};
static const cf_enum cf_archive_modes[] = {
    { "schema", ARCHIVE_SCHEMA }, { "csv", ARCHIVE_CSV }, { NULL, 0 }
};
static const cf_enum cf_clock_policies[] = {
    { "flag", CLOCK_POLICY_FLAG }, { "dead_letter", CLOCK_POLICY_DEAD_LETTER }, { NULL, 0 }
};
static const cf_enum cf_self_audit[] = {
    { "required", SELF_AUDIT_REQUIRED }, { "optional", SELF_AUDIT_OPTIONAL }, { NULL, 0 }
};
static const cf_enum cf_on_off[] = {
    { "on", 1 }, { "off", 0 }, { NULL, 0 }
};
static const cf_enum cf_log_levels[] = {
    { "error", LOG_ERROR }, { "warn", LOG_WARN }, { "info", LOG_INFO },
    { "debug", LOG_DEBUG }, { NULL, 0 }
};

static int cf_check_namespace(const char *v, char *why, size_t whylen);
static int cf_check_redis_url(const char *v, char *why, size_t whylen);
static int cf_check_opt_redis_url(const char *v, char *why, size_t whylen);
static int cf_check_ident(const char *v, char *why, size_t whylen);
static int cf_check_sentinels(const char *v, char *why, size_t whylen);
static int cf_check_listen(const char *v, char *why, size_t whylen);

#define F(field) offsetof(aq_config, field), sizeof(((aq_config *)0)->field)
#define STR(n, field, def, lo, check, reload, secret, help) \
    { n, CF_STR, F(field), def, lo, (long)sizeof(((aq_config *)0)->field) - 1, NULL, check, reload, secret, help }
#define INT(n, field, def, lo, hi, reload, help) \
    { n, CF_INT, F(field), def, lo, hi, NULL, NULL, reload, false, help }
#define ENUM(n, field, def, names, reload, help) \
    { n, CF_ENUM, F(field), def, 0, 0, names, NULL, reload, false, help }
#define WEIGHTS(n, field, def, lo, hi, reload, help) \
    { n, CF_WEIGHTS, F(field), def, lo, hi, NULL, NULL, reload, false, help }

/* Order = order of config_print and of config/auditq.conf's sections. */
static const cf_entry cf_table[] = {
    /* connections */
    STR("redis_url", redis_url, "redis://127.0.0.1:6379", 1, cf_check_redis_url, false, true,
        "Redis to read jobs from: redis[s]://[user[:password]@]host[:port][/db][?tls_ca=FILE...] or unix:///path[?db=N]"),
    STR("redis_sentinels", redis_sentinels, "", 0, cf_check_sentinels, false, false,
        "Redis Sentinel: host:port list of sentinels asked for the master on every connect; when set "
        "it decides the server and redis_url gives only credentials, database and TLS; \"\" = none"),
    STR("redis_master_name", redis_master_name, "", 0, NULL, false, false,
        "Redis Sentinel: the name the sentinels monitor the master under (needed with redis_sentinels)"),
    STR("redis_sentinel_user", redis_sentinel_user, "", 0, NULL, false, false,
        "Redis Sentinel: the ACL user to log in to the sentinels as (with redis_sentinel_password); "
        "\"\" = requirepass's default user"),
    STR("redis_sentinel_password", redis_sentinel_password, "", 0, NULL, false, true,
        "Redis Sentinel: the password the sentinels want (sentinel.conf requirepass or the ACL user's); "
        "\"\" = they need no login"),
    INT("redis_shards", redis_shards, "1", 1, 256, false,
        "Redis shards the namespace's queues are spread over: shard 0 uses keys {namespace}:..., "
        "shard i {namespace:i}:...; producers and workers must agree (docs/SCALING.md)"),
    STR("redis_shard_urls", redis_shard_urls, "", 0, NULL, false, true,
        "Redis servers holding the shards, comma-separated URLs: shard i on entry i mod N; "
        "\"\" = every shard on redis_url (or, with redis_cluster, where the cluster puts it)"),
    ENUM("redis_cluster", redis_cluster, "off", cf_on_off, false,
        "on: Redis is a Redis Cluster; redis_url and redis_shard_urls are seed nodes and each "
        "shard goes to the master serving its hash tag's slot (MOVED/ASK followed)"),
    STR("database_url", database_url, "postgresql://localhost/auditq", 0, NULL, false, true,
        "PostgreSQL to write events to: a libpq URI or conninfo string (\"host=... dbname=...\"); "
        "\"\" = libpq defaults and PG* variables; several hosts with target_session_attrs=read-write "
        "for fail-over"),
    STR("namespace", namespace_, "auditq", 1, cf_check_namespace, false, false,
        "Prefix of every Redis key; producers and workers must agree on it"),
    INT("redis_connect_timeout_ms", redis_connect_timeout_ms, "2000", 1, 60000, false,
        "Give up connecting to Redis after this many milliseconds"),
    INT("redis_timeout_ms", redis_timeout_ms, "5000", 1, 600000, false,
        "Give up on one Redis command after this many milliseconds"),
    INT("pg_connect_timeout_s", pg_connect_timeout_s, "5", 1, 600, false,
        "Give up connecting to PostgreSQL after this many seconds (per host listed in database_url)"),
    INT("statement_timeout_ms", statement_timeout_ms, "60000", 0, 86400000, false,
        "PostgreSQL statement_timeout for each batch write, in milliseconds; 0 = none"),
    INT("pg_timeout_ms", pg_timeout_ms, "90000", 0, 86400000, false,
        "Give up on PostgreSQL when it neither takes a request nor answers for this many "
        "milliseconds (a stalled network): the connection is dropped and the batch retried; "
        "0 = none (must exceed statement_timeout_ms)"),
    /* throughput */
    INT("threads", threads, "0", 0, 256, false,
        "Worker threads, each with its own Redis and PostgreSQL connection; 0 = number of cores"),
    INT("batch_size", batch_size, "1000", 1, 100000, true,
        "Most events written to PostgreSQL in one transaction"),
    INT("idle_poll_ms", idle_poll_ms, "50", 1, 10000, true,
        "Longest sleep when every queue is empty, in milliseconds"),
    ENUM("write_method", write_method, "copy", cf_write_methods, false,
         "How batches are written: copy (COPY FROM STDIN, fastest) or insert (INSERT with array parameters)"),
    ENUM("pg_sync_fence", pg_sync_fence, "on", cf_on_off, false,
         "on = every batch transaction first writes a WAL record (pg_logical_emit_message), so its "
         "commit waits for the synchronous standby even when the rows were already there: a batch "
         "is never acknowledged by an old primary cut off from its standby; off = not"),
    INT("max_job_bytes", max_job_bytes, "65536", 1024, 16777216, false,
        "Largest encoded event accepted, in bytes; bigger jobs are dead-lettered"),
    INT("partitions_ahead", partitions_ahead, "3", 0, 120, false,
        "Monthly partitions of the events table the worker creates ahead of time"),
    /* reliability */
    INT("max_attempts", max_attempts, "5", 1, 1000, true,
        "Times PostgreSQL may reject one row (a data error) before it is dead-lettered; the row is retried with backoff in between"),
    INT("backoff_base_ms", backoff_base_ms, "200", 1, 3600000, true,
        "First retry delay after a failure, in milliseconds; doubles on each retry"),
    INT("backoff_max_ms", backoff_max_ms, "60000", 1, 86400000, true,
        "Longest retry delay, in milliseconds (must be >= backoff_base_ms)"),
    INT("pg_release_after_ms", pg_release_after_ms, "5000", 100, 3600000, true,
        "A writer thread whose PostgreSQL writes keep failing this long gives its batch back to the "
        "front of its queue, for a healthy worker, and fetches no more until its PostgreSQL answers "
        "again, in milliseconds"),
    INT("heartbeat_interval_ms", heartbeat_interval_ms, "1000", 100, 60000, false,
        "How often each worker refreshes its heartbeat in Redis, in milliseconds"),
    INT("heartbeat_timeout_ms", heartbeat_timeout_ms, "5000", 500, 600000, false,
        "A worker whose heartbeat is older than this is dead and its jobs are recovered, in "
        "milliseconds (must be >= 2 * heartbeat_interval_ms)"),
    INT("recovery_interval_ms", recovery_interval_ms, "1000", 100, 60000, false,
        "How often to look for dead workers' in-flight jobs, in milliseconds"),
    INT("max_recoveries", max_recoveries, "5", 1, 1000, false,
        "A job recovered more often than this is treated as poison and dead-lettered"),
    INT("dead_letter_max", dead_letter_max, "100000", 1, 100000000, true,
        "Most jobs kept in the dead-letter list; the oldest are dropped beyond it"),
    /* priorities */
    ENUM("priority_mode", priority_mode, "strict", cf_prio_modes, true,
         "strict: always drain higher priorities first; weighted: share batches by weights"),
    WEIGHTS("weights", weights, "8,4,2,1", 1, 1000, true,
            "weighted mode: relative shares of critical,high,normal,low (four integers 1..1000)"),
    /* shutdown */
    INT("shutdown_timeout_ms", shutdown_timeout_ms, "30000", 0, 3600000, false,
        "On SIGTERM, finish in-flight batches for at most this long, in milliseconds; 0 = no limit"),
    /* logging */
    ENUM("log_level", log_level, "info", cf_log_levels, true,
         "Least severe log lines written to stderr: error, warn, info or debug"),
    INT("summary_interval_ms", summary_interval_ms, "10000", 0, 86400000, true,
        "How often the worker logs a one-line throughput and lag summary, in milliseconds; 0 = never"),
    /* operations */
    STR("http_listen", http_listen, "", 0, cf_check_listen, false, false,
        "Address of the worker's HTTP endpoint (/metrics, /healthz, /readyz) as host:port, "
        "e.g. 127.0.0.1:9187; \"\" = off"),
    INT("hot_months", hot_months, "3", 1, 1200, true,
        "Retention: months of events kept in audit_events (the current month counts as one)"),
    INT("retain_months", retain_months, "24", 1, 1200, true,
        "Retention: months of events kept at all; older archived partitions are dropped "
        "(must be >= hot_months; compliance setups often need 84)"),
    ENUM("archive_mode", archive_mode, "schema", cf_archive_modes, true,
         "Retention: partitions older than hot_months are moved to archive_schema (schema) or "
         "exported to archive_dir as gzip CSV with a manifest and dropped (csv)"),
    STR("archive_schema", archive_schema, "auditq_archive", 1, cf_check_ident, true, false,
        "Retention: schema that holds archived partitions (archive_mode = schema)"),
    STR("archive_dir", archive_dir, "", 0, NULL, true, false,
        "Retention: directory for exported partitions (archive_mode = csv)"),
    INT("retention_interval_s", retention_interval_s, "0", 0, 31536000, true,
        "The worker runs retention this often, in seconds; 0 = never (run 'auditqctl retention run' "
        "from cron instead)"),
    /* clocks */
    INT("clock_skew_future_ms", clock_skew_future_ms, "300000", 0, 2147483647, true,
        "An event whose occurred_at is more than this many milliseconds ahead of the worker's "
        "clock is handled by clock_skew_policy (clock_flag 'future'); 0 = no check"),
    INT("backfill_max_age_ms", backfill_max_age_ms, "604800000", 0, 2147483647, true,
        "An event whose occurred_at is more than this many milliseconds behind the worker's "
        "clock is handled by clock_skew_policy (clock_flag 'backfill'); 0 = no check"),
    ENUM("clock_skew_policy", clock_skew_policy, "flag", cf_clock_policies, true,
         "flag: store such an event with clock_flag set; dead_letter: dead-letter it with a "
         "reason naming occurred_at, the worker's time and the bound"),
    /* integrity (docs/INTEGRITY.md) */
    STR("seal_key_file", seal_key_file, "", 0, NULL, false, false,
        "Signing key (from 'auditqctl keygen PATH') the worker seals checkpoints with; "
        "sealing is on when set"),
    INT("checkpoint_interval_ms", checkpoint_interval_ms, "1000", 100, 3600000, false,
        "Sealing: a checkpoint is signed at most this often, in milliseconds, when there is new evidence"),
    STR("anchor_dir", anchor_dir, "", 0, NULL, false, false,
        "Sealing: directory each signed checkpoint is published to as a file (fsynced); "
        "\"\" = none; verify reads it too"),
    STR("anchor_command", anchor_command, "", 0, NULL, false, false,
        "Sealing: shell command each signed checkpoint is piped to (stdin), e.g. logger -t auditq; "
        "\"\" = none"),
    STR("verify_key_file", verify_key_file, "", 0, NULL, true, false,
        "auditqctl verify: the verifier key (PATH.pub of 'auditqctl keygen PATH'); or --key"),
    /* self-audit (docs/SECURITY.md) */
    ENUM("self_audit", self_audit, "required", cf_self_audit, false,
         "auditqctl: required = every read of event content and every change is recorded in the "
         "trail and --no-self-audit is refused; optional = --no-self-audit is honoured. Only a "
         "config file given with -c can make it optional"),
    STR("self_audit_redis_url", self_audit_redis_url, "", 0, cf_check_opt_redis_url, false, true,
        "auditqctl: the Redis URL its self-audit events are pushed through, e.g. as the ACL user "
        "aq-producer; \"\" = redis_url"),
    ENUM("worker_self_audit", worker_self_audit, "on", cf_on_off, true,
         "auditq-worker: on = its start, graceful stop, reloads (the settings that changed) and "
         "every dead-lettering are recorded as events (auditq.worker.*) in the trail; off = not "
         "(a reload that switches it off is still recorded)"),
#ifdef AQ_TEST_HOOKS
    /* testing: only in the test build (Makefile: tests/auditq-worker-hooks) */
    INT("crash_after_commit", crash_after_commit, "0", 0, 1000000000, false,
        "TEST HOOK, never set in production: _exit(137) between commit and ack after this many "
        "batches; 0 = off"),
#endif
};

/* Test hooks: settings that exist only in builds made for tests (compiled
 * with -DAQ_TEST_HOOKS). Any other build refuses them by name, from a file,
 * --set or the environment, so a hook left in a production configuration
 * is an error at start rather than a crash waiting to happen. */
static const char *const cf_test_hooks[] = { "crash_after_commit" };
#undef F
#undef STR
#undef INT
#undef ENUM
#undef WEIGHTS

#define CF_COUNT (sizeof cf_table / sizeof cf_table[0])
#define CF_ENV_PREFIX "AUDITQ_"

/* ---- small helpers ------------------------------------------------------ */

static const cf_entry *cf_lookup(const char *name)
{
    for (size_t i = 0; i < CF_COUNT; i++)
        if (strcmp(cf_table[i].name, name) == 0)
            return &cf_table[i];
    return NULL;
}

/* The closest setting name within edit distance 3, or NULL. */
static const char *cf_suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = 4;

    for (size_t i = 0; i < CF_COUNT; i++) {
        size_t d = text_edit_distance(name, cf_table[i].name);
        if (d < best_d) {
            best_d = d;
            best = cf_table[i].name;
        }
    }
    return best;
}

/* 1 if name is a test hook this build does not have. */
static int cf_missing_hook(const char *name)
{
    for (size_t i = 0; i < sizeof cf_test_hooks / sizeof cf_test_hooks[0]; i++)
        if (strcmp(name, cf_test_hooks[i]) == 0)
            return cf_lookup(name) == NULL;
    return 0;
}

static void cf_unknown_key(const char *where, const char *key, char *err, size_t errlen)
{
    const char *s = cf_suggest(key);

    if (cf_missing_hook(key))
        text_errf(err, errlen, "%s: %s is a test hook, not available in this build; remove it "
                "(only the test build, tests/auditq-worker-hooks, has it)", where, key);
    else if (s != NULL)
        text_errf(err, errlen, "%s: unknown setting '%s' (did you mean '%s'?)", where, key, s);
    else
        text_errf(err, errlen, "%s: unknown setting '%s' (see config/auditq.conf for the list)",
                where, key);
}

/* Strict decimal integer: the whole string, no leading blanks, in range. */
static int cf_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!(isdigit((unsigned char)s[0]) || ((s[0] == '-' || s[0] == '+')
                                           && isdigit((unsigned char)s[1]))))
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int cf_check_namespace(const char *v, char *why, size_t whylen)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-') {
            text_errf(why, whylen, "must be 1 to 64 characters from A-Z a-z 0-9 _ . -");
            return -1;
        }
    }
    return 0;
}

/* A PostgreSQL identifier we may put in SQL unquoted: lower case, so the
 * name the user writes is the name the catalog holds. */
static int cf_check_ident(const char *v, char *why, size_t whylen)
{
    if (!((*v >= 'a' && *v <= 'z') || *v == '_'))
        goto bad;
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            goto bad;
    return 0;
bad:
    text_errf(why, whylen, "must be a lower-case SQL name: a-z or _ first, then a-z 0-9 _ (e.g. auditq_archive)");
    return -1;
}

/* "" (off), or host:port with port 1..65535; host may be [v6] or empty
 * (all addresses). The socket code resolves the host. */
static int cf_check_listen(const char *v, char *why, size_t whylen)
{
    const char *colon = strrchr(v, ':');
    char *end;
    long port;

    if (*v == '\0')
        return 0;
    if (colon == NULL)
        goto bad;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 1 || port > 65535)
        goto bad;
    return 0;
bad:
    text_errf(why, whylen, "must be host:port, e.g. 127.0.0.1:9187 (loopback only) or :9187 (all addresses)");
    return -1;
}

/* Each item ends in :PORT; the host part and the pairing with
 * redis_master_name are checked where the target is built
 * (redis_target_sentinels: config.c stays free of the Redis module). */
static int cf_check_sentinels(const char *v, char *why, size_t whylen)
{
    const char *p = v;
    while (*p) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        const char *colon = n ? memrchr(p, ':', n) : NULL;
        char *end;
        long port = 0;
        if (n == 0)
            break;
        if (colon && colon > p && colon + 1 < p + n) {
            errno = 0;
            port = strtol(colon + 1, &end, 10);
            if (errno || end != p + n)
                port = 0;
        }
        if (port < 1 || port > 65535) {
            text_errf(why, whylen, "'%.*s' is not host:port (e.g. 10.0.0.5:26379); separate sentinels "
                      "with commas", (int)(n > 80 ? 80 : n), p);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* Only the scheme is checked here; redis_url_parse checks the rest when the
 * worker connects (config.c stays free of the Redis module), including
 * whether this build has TLS for rediss://. */
/* "" (use redis_url) or a Redis URL. */
static int cf_check_opt_redis_url(const char *v, char *why, size_t whylen)
{
    return v[0] == '\0' ? 0 : cf_check_redis_url(v, why, whylen);
}

static int cf_check_redis_url(const char *v, char *why, size_t whylen)
{
    if (strncmp(v, "redis://", 8) == 0 || strncmp(v, "rediss://", 9) == 0 || strncmp(v, "unix://", 7) == 0)
        return 0;
    text_errf(why, whylen,
            "must start with redis://, rediss:// (TLS) or unix:// (e.g. redis://127.0.0.1:6379)");
    return -1;
}

/* Parses "a,b,c,d" (blanks around items allowed) into w[4]. */
static int cf_parse_weights(const char *s, long min, long max, int w[4])
{
    char item[32];
    const char *p = s;

    for (int i = 0; i < 4; i++) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        long v;

        if ((i < 3) != (comma != NULL))
            return -1;        /* too few or too many items */
        while (n > 0 && isspace((unsigned char)*p)) {
            p++;
            n--;
        }
        while (n > 0 && isspace((unsigned char)p[n - 1]))
            n--;
        if (n == 0 || n >= sizeof item)
            return -1;
        memcpy(item, p, n);
        item[n] = '\0';
        if (cf_parse_long(item, min, max, &v) != 0)
            return -1;
        w[i] = (int)v;
        p = comma != NULL ? comma + 1 : p + n;
    }
    return 0;
}

/* ---- applying one value -------------------------------------------------- */

/* Where a value came from, for error messages. */
typedef enum { ORIGIN_PLAIN, ORIGIN_ENV } cf_origin_kind;

static void cf_value_error(const cf_entry *e, const char *value, cf_origin_kind kind,
                           const char *where, const char *why, char *err, size_t errlen)
{
    if (kind == ORIGIN_ENV)
        text_errf(err, errlen, "%s=%s: %s: %s", where, value, e->name, why);
    else
        text_errf(err, errlen, "%s: %s = %s: %s", where, e->name, value, why);
}

/* Parses `value` for row e and stores it in c. On error leaves c unchanged
 * and writes the message; `where` is "file:line", "--set" or the variable
 * name (kind ORIGIN_ENV). */
static int cf_apply(aq_config *c, const cf_entry *e, const char *value, cf_origin_kind kind,
                    const char *where, char *err, size_t errlen)
{
    char why[256];
    char *field = (char *)c + e->off;
    long v;

    switch (e->type) {
    case CF_STR: {
        size_t n = strlen(value);
        if (n < (size_t)e->min || n > (size_t)e->max) {
            if (e->min > 0)
                text_errf(why, sizeof why, "must be %ld to %ld characters long", e->min, e->max);
            else
                text_errf(why, sizeof why, "must be at most %ld characters long", e->max);
            goto bad;
        }
        for (size_t i = 0; i < n; i++) {
            /* A control character cannot be written back by config_print. */
            if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) {
                text_errf(why, sizeof why, "must not contain control characters");
                goto bad;
            }
        }
        if (e->check != NULL && e->check(value, why, sizeof why) != 0)
            goto bad;
        /* Zero the tail so two configs with equal settings compare equal. */
        memset(field, 0, e->size);
        memcpy(field, value, n);
        return 0;
    }
    case CF_INT:
        if (cf_parse_long(value, e->min, e->max, &v) != 0) {
            text_errf(why, sizeof why, "must be an integer from %ld to %ld", e->min, e->max);
            goto bad;
        }
        *(int *)(void *)field = (int)v;
        return 0;
    case CF_ENUM: {
        size_t len = 0;
        for (const cf_enum *en = e->enums; en->name != NULL; en++) {
            if (strcasecmp(en->name, value) == 0) {
                *(int *)(void *)field = en->value;
                return 0;
            }
        }
        len = (size_t)snprintf(why, sizeof why, "must be one of ");
        for (const cf_enum *en = e->enums; en->name != NULL && len < sizeof why; en++)
            len += (size_t)snprintf(why + len, sizeof why - len, "%s%s",
                                    en == e->enums ? "" : ", ", en->name);
        goto bad;
    }
    case CF_WEIGHTS: {
        int w[4];
        if (cf_parse_weights(value, e->min, e->max, w) != 0) {
            text_errf(why, sizeof why,
                    "must be four integers from %ld to %ld separated by commas "
                    "(critical,high,normal,low), e.g. 8,4,2,1", e->min, e->max);
            goto bad;
        }
        memcpy(field, w, sizeof w);
        return 0;
    }
    }
    text_errf(why, sizeof why, "internal error: bad setting type");
bad:
    if (e->secret_url) {
        /* The value is echoed to a terminal or log: keep the password out. */
        char masked[1100];
        config_mask_url(value, masked, sizeof masked);
        cf_value_error(e, masked, kind, where, why, err, errlen);
    } else {
        cf_value_error(e, value, kind, where, why, err, errlen);
    }
    return -1;
}

/* ---- public API ---------------------------------------------------------- */

void config_defaults(aq_config *c)
{
    char err[512];

    /* memset first: padding and string tails must be zero for memcmp. */
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CF_COUNT; i++) {
        /* A default that fails its own bounds is a bug in the table; the
         * unit test asserts every default applies. */
        (void)cf_apply(c, &cf_table[i], cf_table[i].def, ORIGIN_PLAIN, "default", err, sizeof err);
    }
}

int config_set(aq_config *c, const char *key, const char *value, const char *origin,
               char *err, size_t errlen)
{
    const cf_entry *e = cf_lookup(key);
    const char *where = origin != NULL ? origin : "--set";

    if (e == NULL) {
        cf_unknown_key(where, key, err, errlen);
        return -1;
    }
    return cf_apply(c, e, value, ORIGIN_PLAIN, where, err, errlen);
}

/* AUDITQ_<NAME upper-cased> into var (cap bytes). */
static void cf_env_name(const char *name, char *var, size_t cap)
{
    size_t n = sizeof CF_ENV_PREFIX - 1;

    memcpy(var, CF_ENV_PREFIX, n);
    for (const char *s = name; *s && n + 1 < cap; s++)
        var[n++] = (char)toupper((unsigned char)*s);
    var[n] = '\0';
}

int config_load_env(aq_config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof cf_test_hooks / sizeof cf_test_hooks[0]; i++) {
        char var[96];
        const char *v;

        cf_env_name(cf_test_hooks[i], var, sizeof var);
        v = getenv(var);
        if (v != NULL && cf_missing_hook(cf_test_hooks[i])) {
            text_errf(err, errlen, "%s=%s: %s is a test hook, not available in this build; unset %s",
                    var, v, cf_test_hooks[i], var);
            return -1;
        }
    }
    for (size_t i = 0; i < CF_COUNT; i++) {
        char var[96];
        const char *v;

        cf_env_name(cf_table[i].name, var, sizeof var);
        v = getenv(var);
        if (v != NULL && cf_apply(c, &cf_table[i], v, ORIGIN_ENV, var, err, errlen) != 0)
            return -1;
    }
    return 0;
}

void config_env_unknown(void (*warn)(void *ctx, const char *msg), void *ctx)
{
    size_t plen = sizeof CF_ENV_PREFIX - 1;

    for (char **e = environ; e != NULL && *e != NULL; e++) {
        const char *eq = strchr(*e, '=');
        char var[96], key[96], sug[96], msg[400];
        size_t n;
        const char *s;

        if (strncmp(*e, CF_ENV_PREFIX, plen) != 0 || eq == NULL)
            continue;
        n = (size_t)(eq - *e);
        if (n >= sizeof var)
            n = sizeof var - 1;
        memcpy(var, *e, n);
        var[n] = '\0';
        /* The setting it would name: the rest, lower-cased. */
        for (size_t i = plen; i <= n; i++)
            key[i - plen] = (char)tolower((unsigned char)var[i]);
        if (cf_lookup(key) != NULL || cf_missing_hook(key))
            continue;     /* a setting (or a hook config_load_env refuses) */
        s = cf_suggest(key);
        if (s != NULL) {
            cf_env_name(s, sug, sizeof sug);
            snprintf(msg, sizeof msg, "%s is not a setting and is ignored (did you mean %s?)", var, sug);
        } else {
            snprintf(msg, sizeof msg, "%s is not a setting and is ignored (each setting KEY of "
                     "config/auditq.conf is AUDITQ_<KEY>)", var);
        }
        warn(ctx, msg);
    }
}

int config_arg_value(const char *opt, const char *value, char *err, size_t errlen)
{
    if (value == NULL) {
        text_errf(err, errlen, "option '%s' needs a value", opt);
        return -1;
    }
    /* "-" (stdin, by convention) and negative numbers are values; the
     * option's own check judges them and names the option. */
    if (value[0] != '-' || value[1] == '\0' || isdigit((unsigned char)value[1]))
        return 0;
    if (strncmp(opt, "--", 2) == 0)
        text_errf(err, errlen, "option '%s' needs a value, but the next argument '%s' is an option; "
                "to give a value that starts with '-', write %s=%s", opt, value, opt, value);
    else
        text_errf(err, errlen, "option '%s' needs a value, but the next argument '%s' is an option; "
                "to give a value that starts with '-', write %s%s", opt, value, opt, value);
    return -1;
}

int config_getopt_value(char *const *argv, int optind_now, const char *optarg_now, char *err,
                        size_t errlen)
{
    char opt[64];
    const char *typed;

    /* Attached ("--tenant=-x", "-c-x"): taken as written. */
    if (optind_now < 2 || optarg_now != argv[optind_now - 1])
        return 0;
    typed = argv[optind_now - 2];
    if (strncmp(typed, "--", 2) == 0)
        snprintf(opt, sizeof opt, "%s", typed);
    else     /* "-c", or the last letter of a bundle such as "-vc" */
        snprintf(opt, sizeof opt, "-%c", typed[0] != '\0' && typed[1] != '\0' ? typed[strlen(typed) - 1] : '?');
    return config_arg_value(opt, optarg_now, err, errlen);
}

int config_validate(const aq_config *c, char *err, size_t errlen)
{
    /* One missed heartbeat must not declare a live worker dead. */
    if ((long)c->heartbeat_timeout_ms < 2L * c->heartbeat_interval_ms) {
        text_errf(err, errlen,
                "heartbeat_timeout_ms (%d) must be at least 2 * heartbeat_interval_ms (%d); "
                "raise heartbeat_timeout_ms to %ld or lower heartbeat_interval_ms",
                c->heartbeat_timeout_ms, c->heartbeat_interval_ms,
                2L * c->heartbeat_interval_ms);
        return -1;
    }
    if (c->redis_sentinels[0] && !c->redis_master_name[0]) {
        text_errf(err, errlen,
                "redis_sentinels is set but redis_master_name is empty: set it to the name the "
                "sentinels monitor the master under (sentinel.conf: sentinel monitor NAME ...)");
        return -1;
    }
    if (c->retain_months < c->hot_months) {
        text_errf(err, errlen,
                "retain_months (%d) must be at least hot_months (%d); "
                "raise retain_months or lower hot_months",
                c->retain_months, c->hot_months);
        return -1;
    }
    if (c->archive_mode == ARCHIVE_CSV && c->archive_dir[0] == '\0') {
        text_errf(err, errlen,
                "archive_mode = csv needs archive_dir; set archive_dir to a directory that will "
                "hold the exported partitions, or use archive_mode = schema");
        return -1;
    }
    /* The server's own timeout must fire first: it cancels the statement
     * and says why, where the client's can only drop the connection. */
    if (c->pg_timeout_ms > 0 && c->statement_timeout_ms > 0 && c->pg_timeout_ms <= c->statement_timeout_ms) {
        text_errf(err, errlen,
                "pg_timeout_ms (%d) must exceed statement_timeout_ms (%d); "
                "raise pg_timeout_ms, lower statement_timeout_ms, or set pg_timeout_ms = 0 (no limit)",
                c->pg_timeout_ms, c->statement_timeout_ms);
        return -1;
    }
    if (c->backoff_max_ms < c->backoff_base_ms) {
        text_errf(err, errlen,
                "backoff_max_ms (%d) must be at least backoff_base_ms (%d); "
                "raise backoff_max_ms or lower backoff_base_ms",
                c->backoff_max_ms, c->backoff_base_ms);
        return -1;
    }
    return 0;
}

/* Writes s double-quoted with " and \ escaped, as cf_split_line reads it. */
static void cf_print_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void config_print(const aq_config *c, FILE *out)
{
    fputs("# auditq settings (auditq-worker --print-config). This output is a valid config file.\n", out);
    for (size_t i = 0; i < CF_COUNT; i++) {
        const cf_entry *e = &cf_table[i];
        const char *field = (const char *)c + e->off;
        char upper[64];
        size_t n = 0;

        for (const char *s = e->name; *s && n + 1 < sizeof upper; s++)
            upper[n++] = (char)toupper((unsigned char)*s);
        upper[n] = '\0';

        fprintf(out, "\n# %s\n", e->help);
        if (e->type == CF_INT || e->type == CF_WEIGHTS)
            fprintf(out, "# range %ld..%ld, default %s, env %s%s%s\n", e->min, e->max, e->def,
                    CF_ENV_PREFIX, upper, e->reloadable ? ", SIGHUP reloads it" : "");
        else
            fprintf(out, "# default %s, env %s%s%s\n", e->def, CF_ENV_PREFIX, upper,
                    e->reloadable ? ", SIGHUP reloads it" : "");
        fprintf(out, "%s = ", e->name);
        switch (e->type) {
        case CF_STR:
            if (e->secret_url) {
                char masked[1100];
                config_mask_url(field, masked, sizeof masked);
                cf_print_quoted(out, masked);
            } else {
                cf_print_quoted(out, field);
            }
            break;
        case CF_INT:
            fprintf(out, "%d", *(const int *)(const void *)field);
            break;
        case CF_ENUM: {
            int v = *(const int *)(const void *)field;
            const char *name = "?";
            for (const cf_enum *en = e->enums; en->name != NULL; en++)
                if (en->value == v)
                    name = en->name;
            fputs(name, out);
            break;
        }
        case CF_WEIGHTS: {
            const int *w = (const int *)(const void *)field;
            fprintf(out, "%d,%d,%d,%d", w[0], w[1], w[2], w[3]);
            break;
        }
        }
        fputc('\n', out);
    }
}

/* ---- reload --------------------------------------------------------------- */

/* The value of row e in c as a file would spell it (unquoted), URLs masked,
 * cut with "..." to fit out. */
static void cf_format_value(const aq_config *c, const cf_entry *e, char *out, size_t cap)
{
    const char *field = (const char *)c + e->off;
    char masked[1100];

    switch (e->type) {
    case CF_STR:
        if (e->secret_url) {
            config_mask_url(field, masked, sizeof masked);
            field = masked;
        }
        if (strlen(field) >= cap && cap > 4)
            snprintf(out, cap, "%.*s...", (int)(cap - 4), field);
        else
            snprintf(out, cap, "%s", field);
        return;
    case CF_INT:
        snprintf(out, cap, "%d", *(const int *)(const void *)field);
        return;
    case CF_ENUM: {
        int v = *(const int *)(const void *)field;
        const char *name = "?";
        for (const cf_enum *en = e->enums; en->name != NULL; en++)
            if (en->value == v)
                name = en->name;
        snprintf(out, cap, "%s", name);
        return;
    }
    case CF_WEIGHTS: {
        const int *w = (const int *)(const void *)field;
        snprintf(out, cap, "%d,%d,%d,%d", w[0], w[1], w[2], w[3]);
        return;
    }
    }
    snprintf(out, cap, "?");
}

int config_reload(aq_config *live, const aq_config *next,
                  void (*fn)(void *ctx, const config_change *ch), void *ctx,
                  char *err, size_t errlen)
{
    aq_config merged = *live;
    int applied = 0;

    /* Fields are compared byte for byte: cf_apply zeroes string tails, so
     * equal settings are equal bytes. */
    for (size_t i = 0; i < CF_COUNT; i++) {
        const cf_entry *e = &cf_table[i];
        if (e->reloadable && memcmp((const char *)live + e->off, (const char *)next + e->off, e->size) != 0)
            memcpy((char *)&merged + e->off, (const char *)next + e->off, e->size);
    }
    if (config_validate(&merged, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < CF_COUNT; i++) {
        const cf_entry *e = &cf_table[i];
        config_change ch;

        if (memcmp((const char *)live + e->off, (const char *)next + e->off, e->size) == 0)
            continue;
        ch.name = e->name;
        ch.applied = e->reloadable;
        cf_format_value(live, e, ch.old_value, sizeof ch.old_value);
        cf_format_value(next, e, ch.new_value, sizeof ch.new_value);
        if (e->reloadable) {
            memcpy((char *)live + e->off, (const char *)next + e->off, e->size);
            applied++;
        }
        if (fn != NULL)
            fn(ctx, &ch);
    }
    return applied;
}
