/* config.h -- worker/tool settings: one declarative table (config.c) parses
 * the file, applies AUDITQ_* environment overrides and --set flags,
 * validates bounds, prints help, and documents config/auditq.conf. */
#ifndef AQ_CONFIG_H
#define AQ_CONFIG_H
#include <stddef.h>
#include <stdio.h>

enum { PRIO_STRICT = 0, PRIO_WEIGHTED = 1 };
enum { WRITE_COPY = 0, WRITE_INSERT = 1 };
enum { ARCHIVE_SCHEMA = 0, ARCHIVE_CSV = 1 };
enum { CLOCK_POLICY_FLAG = 0, CLOCK_POLICY_DEAD_LETTER = 1 };
enum { SELF_AUDIT_REQUIRED = 0, SELF_AUDIT_OPTIONAL = 1 };

typedef struct aq_config {
    char redis_url[512];
    char redis_sentinels[512];   /* "host:port,...": ask these for the master; "" = redis_url's host */
    char redis_master_name[128]; /* the name the sentinels monitor it under */
    char redis_sentinel_user[128];     /* login to the sentinels: ACL user ("" = default/none) */
    char redis_sentinel_password[256]; /* login to the sentinels: "" = none */
    int redis_shards;            /* 1..256: shard i has hash tag {ns} (i = 0) or {ns:i} */
    char redis_shard_urls[2048]; /* "" = every shard on redis_url; else shard i on entry i mod N */
    int redis_cluster;           /* 1: a Redis Cluster (redis_url, redis_shard_urls = seed nodes) */
    char database_url[1024];
    char namespace_[65];
    int threads;                 /* 0 = number of cores */
    int batch_size;
    int idle_poll_ms;            /* longest sleep when every queue is empty */
    int max_attempts;            /* data-error retries before dead-lettering */
    int backoff_base_ms;
    int backoff_max_ms;
    int pg_release_after_ms;     /* writes failing this long: give the batch back */
    int heartbeat_interval_ms;
    int heartbeat_timeout_ms;    /* a worker silent this long is dead */
    int recovery_interval_ms;
    int max_recoveries;          /* recovered more often: crash-looping poison */
    int priority_mode;           /* PRIO_STRICT | PRIO_WEIGHTED */
    int weights[4];              /* weighted mode: critical, high, normal, low */
    int dead_letter_max;
    int shutdown_timeout_ms;
    int redis_connect_timeout_ms;
    int redis_timeout_ms;
    int pg_connect_timeout_s;
    int statement_timeout_ms;
    int pg_timeout_ms;           /* client-side wait bound per PostgreSQL round trip; 0 = none */
    int write_method;            /* WRITE_COPY | WRITE_INSERT */
    int pg_sync_fence;           /* 1: every batch transaction writes a WAL record first (worker/pgw.c Fencing) */
    int max_job_bytes;
    int partitions_ahead;        /* months created ahead by the worker */
    int log_level;
    int summary_interval_ms;     /* periodic logfmt summary line; 0 = off */
    /* operations (issue 4) */
    char http_listen[128];       /* "host:port" of /metrics /healthz /readyz; "" = off */
    int hot_months;              /* retention: months kept in audit_events */
    int retain_months;           /* retention: months kept at all (archive included) */
    int archive_mode;            /* ARCHIVE_SCHEMA | ARCHIVE_CSV */
    char archive_schema[64];     /* ARCHIVE_SCHEMA: where old partitions move */
    char archive_dir[512];       /* ARCHIVE_CSV: where compressed CSV + manifest go */
    int retention_interval_s;    /* worker runs retention this often; 0 = never (cron does) */
    /* events whose occurred_at is far from the worker's clock (issue 10) */
    int clock_skew_future_ms;    /* occurred_at more than this ahead: 'future'; 0 = no check */
    int backfill_max_age_ms;     /* occurred_at more than this behind: 'backfill'; 0 = no check */
    int clock_skew_policy;       /* CLOCK_POLICY_FLAG | CLOCK_POLICY_DEAD_LETTER */
    /* integrity (issue 12) */
    char seal_key_file[512];     /* signing key; "" = sealing off */
    int checkpoint_interval_ms;  /* sealing tick */
    char anchor_dir[512];        /* checkpoints published here; "" = none */
    char anchor_command[1024];   /* checkpoints piped to this; "" = none */
    char verify_key_file[512];   /* auditqctl verify's verifier key */
    int self_audit;              /* SELF_AUDIT_REQUIRED | SELF_AUDIT_OPTIONAL (auditqctl) */
    char self_audit_redis_url[512]; /* auditqctl records through this; "" = redis_url */
    int worker_self_audit;       /* 1: the worker records its start, stop, reloads and dead
                                    letters as events (worker/selfevents.c); 0: off */
#ifdef AQ_TEST_HOOKS
    /* Test hook, only in the test build (-DAQ_TEST_HOOKS): after a batch is
     * committed in PostgreSQL and before it is acknowledged in Redis,
     * _exit(137) once the process has committed this many batches. 0 = off.
     * Other builds refuse the setting by name (config.c, cf_test_hooks). */
    int crash_after_commit;
#endif
} aq_config;

/* Fills defaults. */
void config_defaults(aq_config *c);
/* Reads `path` (key = value lines, # comments). Strict: unknown key or bad
 * value -> -1 with "FILE:LINE: key=value: reason; fix" in err. */
int config_load_file(aq_config *c, const char *path, char *err, size_t errlen);
/* The same for the text buf[0..len) (need not be NUL-terminated); `name`
 * stands for the file name in errors ("NAME:LINE: ..."). buf is only read. */
int config_load_buffer(aq_config *c, const char *buf, size_t len, const char *name,
                       char *err, size_t errlen);
/* Applies AUDITQ_<KEY> variables (e.g. AUDITQ_REDIS_URL). -1 on bad value,
 * or on a test hook's variable in a build without test hooks. */
int config_load_env(aq_config *c, char *err, size_t errlen);
/* Calls warn once for each AUDITQ_* environment variable that names no
 * setting, with "AUDITQ_BATCHSIZE is not a setting and is ignored (did you
 * mean AUDITQ_BATCH_SIZE?)": a typo would otherwise change nothing without
 * a word. The worker logs it at warn level, auditqctl prints it. */
void config_env_unknown(void (*warn)(void *ctx, const char *msg), void *ctx);

/* The one rule of every auditq command line (auditq-worker, auditqctl and
 * its commands, auditq-bench) for an option's value given as the next
 * argument ("--tenant acme"): a value that looks like an option ("--desc",
 * "-x") is refused, so an option whose value was forgotten never swallows
 * the next option. "-" and negative numbers ("-5") are values, left to the
 * option's own check. A value that really starts with '-' is written
 * attached: "--tenant=-x" (or "-t-x"), which is never checked here.
 * value NULL means the command line ended. Returns 0 if value may be used,
 * else -1 with "option '--tenant' needs a value, but the next argument
 * '--desc' is an option; to give a value that starts with '-', write
 * --tenant=--desc" (or "option '--tenant' needs a value") in err. */
int config_arg_value(const char *opt, const char *value, char *err, size_t errlen);
/* config_arg_value for a getopt_long loop, called right after getopt_long
 * returned an option that took optarg_now (pass optind and optarg): checks
 * it only when it was the separate next argument, naming the option as it
 * was typed. */
int config_getopt_value(char *const *argv, int optind_now, const char *optarg_now, char *err,
                        size_t errlen);
/* Sets one "key=value" (the --set flag). -1 on unknown key or bad value. */
int config_set(aq_config *c, const char *key, const char *value, const char *origin,
               char *err, size_t errlen);
/* Cross-field checks after loading (e.g. heartbeat_timeout > interval). */
int config_validate(const aq_config *c, char *err, size_t errlen);
/* Prints every setting with its help line and current value ("config show"). */
void config_print(const aq_config *c, FILE *out);
/* Copies the connection string url (a redis:// or postgresql:// URI, or
 * libpq "key=value" words) into out (cap bytes, always NUL-terminated) with
 * every password replaced by "***". */
void config_mask_url(const char *url, char *out, size_t cap);

/* One setting that differs between the running config and a reloaded one. */
typedef struct config_change {
    const char *name;          /* the setting, e.g. "batch_size" (static) */
    char old_value[192];       /* as a file would spell it; passwords masked, */
    char new_value[192];       /* long values cut with "..." */
    int applied;               /* 1: reloadable, now in effect; 0: needs a restart,
                                  the running value is kept */
} config_change;

/* SIGHUP reload. next is a complete configuration built the way the running
 * one was (defaults, file, environment, --set) and already validated. Every
 * setting whose table row is reloadable and whose value differs is copied
 * from next into live; every other differing setting keeps its running
 * value. Each differing setting is reported through fn (may be NULL), in
 * table order. Only the bytes of the copied settings are written, so a
 * thread reading a non-reloadable setting of live is never raced. If the
 * merged result would fail config_validate, live is left unchanged and -1
 * is returned with the reason in err (nothing is reported). Otherwise
 * returns the number of settings applied. */
int config_reload(aq_config *live, const aq_config *next,
                  void (*fn)(void *ctx, const config_change *ch), void *ctx,
                  char *err, size_t errlen);
#endif
