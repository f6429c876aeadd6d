/* ctl.h -- the auditqctl subcommands.
 *
 * auditqctl.c parses the global options, loads and validates the settings,
 * then calls one function below. Conventions every command follows:
 *   - argv[0] is the command name ("migrate"), argv[1..argc) its own
 *     arguments, as for main(). `COMMAND --help` / `-h` is answered by the
 *     dispatcher before the settings are loaded (so help works even with a
 *     broken config); a command may still accept it.
 *   - Returns the process exit status: CTL_OK, CTL_FAILED (the operation
 *     failed: server unreachable, SQL or Redis error) or CTL_USAGE (bad
 *     arguments).
 *   - Results go to stdout; errors to stderr as
 *     "auditqctl COMMAND: what went wrong; what to do".
 * cfg is read-only and outlives the call. */
#ifndef AQ_CTL_H
#define AQ_CTL_H
#include "config.h"

enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2 };

/* migrate [--dry-run] [--status]: applies the embedded SQL migrations
 * (tools/migrations.h) and creates the monthly partitions. */
int ctl_migrate(const aq_config *cfg, int argc, char **argv);

/* Each command below lives in its own tools/ctl_NAME.c, which also defines
 * its one-line synopsis and its --help text (the dispatcher lists them). */
#define CTL_DECLARE(name)                                              \
    int ctl_##name(const aq_config *cfg, int argc, char **argv);       \
    extern const char ctl_##name##_synopsis[];                         \
    extern const char ctl_##name##_help[]
CTL_DECLARE(stats);       /* tools/ctl_stats.c */
CTL_DECLARE(workers);     /* tools/ctl_workers.c */
CTL_DECLARE(dlq);         /* tools/ctl_dlq.c */
CTL_DECLARE(partitions);  /* tools/ctl_partitions.c */
CTL_DECLARE(retention);   /* tools/ctl_retention.c */
CTL_DECLARE(query);       /* tools/ctl_query.c */
CTL_DECLARE(grants);      /* tools/ctl_grants.c */
CTL_DECLARE(spool);       /* tools/ctl_spool.c */
CTL_DECLARE(verify);      /* tools/ctl_verify.c */
CTL_DECLARE(follow);      /* tools/ctl_follow.c */
CTL_DECLARE(hash);        /* tools/ctl_hash.c */
CTL_DECLARE(hold);        /* tools/ctl_hold.c */
#endif
