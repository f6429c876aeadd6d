/* auditqctl.c -- command-line administration of auditq.
 *
 *   auditqctl [-c FILE] [--set KEY=VALUE]... COMMAND [ARGS]
 *
 * Parses the global options, loads the settings in a fixed order (defaults,
 * -c FILE, AUDITQ_* environment, --set flags, then cross-field validation)
 * and hands over to one ctl_* function (ctl.h). Unlike the worker, no
 * config file is read unless -c names one: an admin tool run from a shell
 * should do what its command line and environment say, not pick up a file
 * from wherever it happens to be started.
 */
#include <stdio.h>
#include <string.h>

#include "auditq.h"
#include "config.h"
#include "ctl.h"
#include "ctl_verify.h"
#include "log.h"
#include "migrations.h"
#include "selfaudit.h"

typedef struct ctl_command {
    const char *name;
    int (*run)(const aq_config *cfg, int argc, char **argv);
    const char *synopsis;  /* one line for the command list */
    const char *help;      /* the text of `auditqctl COMMAND --help` */
} ctl_command;

static const ctl_command ctl_commands[] = {
    { "migrate", ctl_migrate,
      "migrate [--dry-run] [--status] [--json]  create or upgrade the PostgreSQL schema",
      "Usage: auditqctl [OPTIONS] migrate [--dry-run | --status] [--json]\n"
      "\n"
      "Applies the SQL migrations built into this auditqctl that the database\n"
      "(database_url) has not seen yet, each in its own transaction, in version\n"
      "order, and records them in auditq_schema_migrations. Then creates the\n"
      "monthly audit_events partitions for the current month and the next\n"
      "partitions_ahead months. Running it again is harmless: applied migrations\n"
      "are skipped. Two migrates at once are serialised by an advisory lock.\n"
      "A migration whose recorded checksum differs from the built-in one is\n"
      "refused: released migrations must never change.\n"
      "\n"
      "  --dry-run   list what would be applied; change nothing\n"
      "  --status    list every migration as applied (with when) or pending\n"
      "  --json      one JSON object instead of the lines (nothing on stdout when\n"
      "              it fails): {\"migrations\": [{\"version\": N, \"name\": S,\n"
      "              \"state\": S, \"ms\": N, \"applied_at\": S}, ...], ...} where state is\n"
      "              applied, already_applied or would_apply (--status: applied,\n"
      "              pending, changed or unknown), ms only for one applied now and\n"
      "              applied_at only with --status; then \"schema_version\",\n"
      "              \"applied\", \"partitions_created\", \"partitions_ahead\" (--dry-run:\n"
      "              \"dry_run\": true, \"would_apply\"; --status: \"pending\", \"changed\")\n"
      "  -h, --help  show this help\n"
      "\n"
      "Exit status: 0 ok, 1 connection/SQL error or changed migration, 2 usage error.\n" },
    { "stats", ctl_stats, ctl_stats_synopsis, ctl_stats_help },
    { "workers", ctl_workers, ctl_workers_synopsis, ctl_workers_help },
    { "dlq", ctl_dlq, ctl_dlq_synopsis, ctl_dlq_help },
    { "partitions", ctl_partitions, ctl_partitions_synopsis, ctl_partitions_help },
    { "retention", ctl_retention, ctl_retention_synopsis, ctl_retention_help },
    { "query", ctl_query, ctl_query_synopsis, ctl_query_help },
    { "follow", ctl_follow, ctl_follow_synopsis, ctl_follow_help },
    { "grants", ctl_grants, ctl_grants_synopsis, ctl_grants_help },
    { "spool", ctl_spool, ctl_spool_synopsis, ctl_spool_help },
    { "verify", ctl_verify, ctl_verify_synopsis, ctl_verify_help },
    { "keygen", ctl_keygen, ctl_keygen_synopsis, ctl_keygen_help },
    { "hash", ctl_hash, ctl_hash_synopsis, ctl_hash_help },
    { "hold", ctl_hold, ctl_hold_synopsis, ctl_hold_help },
};

#define CTL_NCOMMANDS (sizeof ctl_commands / sizeof ctl_commands[0])

static void ctl_usage(FILE *out)
{
    fputs("Usage: auditqctl [OPTIONS] COMMAND [ARGS]\n"
          "\n"
          "Administers auditq: the PostgreSQL schema and the Redis queues.\n"
          "\n"
          "Commands:\n", out);
    for (size_t i = 0; i < CTL_NCOMMANDS; i++)
        fprintf(out, "  %s\n", ctl_commands[i].synopsis);
    fputs("  help [COMMAND]                   show this help, or COMMAND's options\n"
          "\n"
          "Options (before COMMAND):\n"
          "  -c, --config FILE    read settings from FILE (key = value lines, see\n"
          "                       config/auditq.conf); without -c no file is read\n"
          "  --set KEY=VALUE      override one setting; repeatable\n"
          "  --no-self-audit      do not record this run in the trail; refused unless\n"
          "                       the -c FILE sets self_audit = optional\n"
          "  -h, --help           show this help\n"
          "  -V, --version        print the version and exit\n"
          "\n"
          "Settings come from the built-in defaults, then FILE, then the\n"
          "environment, then --set; each later source wins.\n"
          "\n"
          "Environment (every setting KEY has an AUDITQ_<KEY> variable):\n"
          "  AUDITQ_REDIS_URL     Redis server, e.g. redis://127.0.0.1:6379/0\n"
          "  AUDITQ_DATABASE_URL  PostgreSQL, e.g. postgresql://user@host:5432/auditq\n"
          "  AUDITQ_NAMESPACE     prefix of the Redis keys (default auditq)\n"
          "\n"
          "Exit status:\n"
          "  0  success\n"
          "  1  the operation failed (server unreachable, SQL or Redis error)\n"
          "  2  usage or configuration error\n"
          "\n"
          "Self-audit: every command that reads event content (query, follow, dlq\n"
          "list/show, verify --event) records one event (action auditq.COMMAND,\n"
          "actor = your OS user, metadata = its arguments and the database role) in\n"
          "the trail before it reads, and refuses to read if Redis does not take it;\n"
          "every command that changes what the pipeline holds (dlq requeue/purge,\n"
          "retention run, partitions ensure, grants, migrate, spool replay, hold\n"
          "add/release) records one after it ran, with its exit status.\n"
          "\n"
          "Run 'auditqctl COMMAND --help' for a command's own options.\n", out);
}

static const ctl_command *ctl_find(const char *name)
{
    for (size_t i = 0; i < CTL_NCOMMANDS; i++)
        if (strcmp(ctl_commands[i].name, name) == 0)
            return &ctl_commands[i];
    return NULL;
}

static int ctl_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

/* Global options are read before the command only: no command has an
 * option of the same name, so one found among the command's arguments was
 * meant globally and is refused with the order that works, rather than
 * reported as the command's "unknown option". Returns 1 after printing. */
static int ctl_global_after_command(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *shown = NULL, *form = "";

        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strncmp(a, "--config=", 9) == 0) {
            shown = strncmp(a, "--config", 8) == 0 ? "--config" : "-c";
            form = " FILE";
        } else if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            shown = "--set";
            form = " KEY=VALUE";
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            shown = a;
        }
        if (shown != NULL) {
            fprintf(stderr, "auditqctl: global option %s must come before the command: "
                    "auditqctl %s%s %s ...\n", shown, shown, form, argv[0]);
            return 1;
        }
    }
    return 0;
}

/* config_env_unknown's callback: a typo'd AUDITQ_* variable is named. */
static void ctl_warn_env(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "auditqctl: warning: %s\n", msg);
}

/* `auditqctl help [COMMAND]`. */
static int ctl_help(int argc, char **argv)
{
    const ctl_command *cmd;

    if (argc < 2) {
        ctl_usage(stdout);
        return CTL_OK;
    }
    cmd = ctl_find(argv[1]);
    if (cmd == NULL) {
        fprintf(stderr, "auditqctl: unknown command '%s'; run 'auditqctl --help'\n", argv[1]);
        return CTL_USAGE;
    }
    fputs(cmd->help, stdout);
    return CTL_OK;
}

/* Applies one "--set KEY=VALUE" argument. The key is copied out because
 * argv must not be modified (it is shown by ps). */
static int ctl_apply_set(aq_config *cfg, const char *arg, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    char key[128];
    size_t klen;

    if (eq == NULL || eq == arg) {
        snprintf(err, errlen, "--set '%s': expected KEY=VALUE, e.g. --set batch_size=500", arg);
        return -1;
    }
    klen = (size_t)(eq - arg);
    if (klen >= sizeof key) {
        snprintf(err, errlen, "--set: unknown setting '%.40s...'; run 'auditqctl --help'", arg);
        return -1;
    }
    memcpy(key, arg, klen);
    key[klen] = '\0';
    return config_set(cfg, key, eq + 1, "--set", err, errlen);
}

int main(int argc, char **argv)
{
    static aq_config cfg;  /* static: large (URLs), and lives for the whole run */
    const char *config_file = NULL;
    const char *sets[64];
    size_t nsets = 0;
    const ctl_command *cmd;
    char err[1024], action[SA_ACTION_MAX];
    int i, no_self_audit = 0, rc;
    sa_kind audit;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            ctl_usage(stdout);
            return CTL_OK;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("auditqctl %s (schema version %d)\n", AUDITQ_VERSION,
                   aq_migrations_count > 0 ? aq_migrations[aq_migrations_count - 1].version : 0);
            return CTL_OK;
        }
        if (strcmp(a, "--no-self-audit") == 0) {
            no_self_audit = 1;
            continue;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (config_arg_value(a, i + 1 < argc ? argv[i + 1] : NULL, err, sizeof err) != 0) {
                fprintf(stderr, "auditqctl: %s%s; run 'auditqctl --help'\n", err, i + 1 < argc ? "" : " (a FILE)");
                return CTL_USAGE;
            }
            config_file = argv[++i];
            continue;
        }
        if (strncmp(a, "-c", 2) == 0) { /* -cFILE, as getopt takes it */
            config_file = a + 2;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            config_file = a + 9;
            continue;
        }
        if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            const char *v;

            if (a[5] == '=') {
                v = a + 6;
            } else if (config_arg_value(a, i + 1 < argc ? argv[i + 1] : NULL, err, sizeof err) == 0) {
                v = argv[++i];
            } else {
                fprintf(stderr, "auditqctl: %s%s; run 'auditqctl --help'\n", err, i + 1 < argc ? "" : " (KEY=VALUE)");
                return CTL_USAGE;
            }
            if (nsets == sizeof sets / sizeof sets[0]) {
                fprintf(stderr, "auditqctl: too many --set options (at most %zu)\n",
                        sizeof sets / sizeof sets[0]);
                return CTL_USAGE;
            }
            sets[nsets++] = v;
            continue;
        }
        fprintf(stderr, "auditqctl: unknown option '%s'; run 'auditqctl --help'\n", a);
        return CTL_USAGE;
    }

    if (i >= argc) {
        fprintf(stderr, "auditqctl: no command given\n\n");
        ctl_usage(stderr);
        return CTL_USAGE;
    }
    if (strcmp(argv[i], "help") == 0)
        return ctl_help(argc - i, argv + i);
    cmd = ctl_find(argv[i]);
    if (cmd == NULL) {
        fprintf(stderr, "auditqctl: unknown command '%s'; run 'auditqctl --help'\n", argv[i]);
        return CTL_USAGE;
    }
    /* Help needs no settings: answer it before a broken config can fail. */
    if (ctl_wants_help(argc - i, argv + i)) {
        fputs(cmd->help, stdout);
        return CTL_OK;
    }
    if (ctl_global_after_command(argc - i, argv + i))
        return CTL_USAGE;

    config_defaults(&cfg);
    if (config_file != NULL && config_load_file(&cfg, config_file, err, sizeof err) != 0)
        goto config_error;
    if (config_load_env(&cfg, err, sizeof err) != 0)
        goto config_error;
    config_env_unknown(ctl_warn_env, NULL);
    for (size_t s = 0; s < nsets; s++)
        if (ctl_apply_set(&cfg, sets[s], err, sizeof err) != 0)
            goto config_error;
    if (config_validate(&cfg, err, sizeof err) != 0)
        goto config_error;
    log_level = cfg.log_level;

    audit = selfaudit_classify(argc - i, argv + i, action);
    if (audit != SA_NONE && no_self_audit) {
        /* Only the operator's file decides: whoever runs the command sets
         * the environment and --set. */
        static aq_config filecfg;

        config_defaults(&filecfg);
        if (config_file == NULL || config_load_file(&filecfg, config_file, err, sizeof err) != 0 ||
            filecfg.self_audit != SELF_AUDIT_OPTIONAL) {
            fprintf(stderr, "auditqctl %s: --no-self-audit refused: self_audit is 'required'; "
                    "an operator allows it with 'self_audit = optional' in the config file "
                    "given with -c (the environment and --set do not count)\n", argv[i]);
            return CTL_USAGE;
        }
        audit = SA_NONE;
    }
    if (selfaudit_before(&cfg, audit, action, argc - i, argv + i, err, sizeof err) != 0) {
        fprintf(stderr, "auditqctl %s: %s\n", argv[i], err);
        return CTL_FAILED;
    }
    rc = cmd->run(&cfg, argc - i, argv + i);
    if (selfaudit_after(&cfg, audit, action, argc - i, argv + i, rc, err, sizeof err) != 0) {
        fprintf(stderr, "auditqctl %s: %s\n", argv[i], err);
        return rc != CTL_OK ? rc : CTL_FAILED;
    }
    return rc;

config_error:
    fprintf(stderr, "auditqctl: %s\n", err);
    return CTL_USAGE;
}
