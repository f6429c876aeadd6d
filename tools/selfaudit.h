/* selfaudit.h -- auditqctl records its own reads and changes in the trail
 * (issue 13 part 1; docs/SECURITY.md "Self-audit").
 *
 * The dispatcher (auditqctl.c) calls selfaudit_classify() on the command
 * line, then selfaudit_before() before the command runs and
 * selfaudit_after() once it returned. Commands themselves only add counts
 * with selfaudit_count() (optional: the event is recorded without them). */
#ifndef AQ_SELFAUDIT_H
#define AQ_SELFAUDIT_H
#include <stddef.h>

#include "config.h"

typedef enum sa_kind {
    SA_NONE = 0,   /* neither reads event content nor changes what is held */
    SA_READ = 1,   /* reads event content: recorded before, fail-closed */
    SA_CHANGE = 2, /* changes what the pipeline holds: checked before,
                    * recorded after with the outcome */
} sa_kind;

#define SA_ACTION_MAX 64

/* What argv (argv[0] is the command name) does, and its action name
 * ("auditq.dlq.purge") into action[SA_ACTION_MAX]. Pure. */
sa_kind selfaudit_classify(int argc, char *const *argv, char action[SA_ACTION_MAX]);

/* Copies s into out with the password of a URL (scheme://user:PASS@...,
 * ?password=PASS) replaced by "***". Pure. */
void selfaudit_mask(const char *s, char *out, size_t cap);

/* The JSON metadata of the event (caller frees): the command and its
 * masked arguments, the OS user, the database role, host, pid, and when
 * exit_status >= 0 the exit status and the counts noted so far. Pure apart
 * from reading the noted counts. */
char *selfaudit_metadata(const char *os_user, const char *db_role, int argc, char *const *argv,
                         int exit_status);

/* Adds "key": n to the event's "counts" (up to 8 keys; later ones are
 * dropped). key must be a static string. */
void selfaudit_count(const char *key, long long n);

/* The database role database_url connects as: its user, else PGUSER, else
 * the OS user (libpq's defaults), into out. */
void selfaudit_db_role(const aq_config *cfg, const char *os_user, char *out, size_t cap);

/* Before the command. SA_READ: records the event now and returns 0, or -1
 * with why in err (the read must not run). SA_CHANGE: checks Redis answers
 * (so a change is not made that cannot be recorded) and returns 0, or -1
 * with why. SA_NONE: 0. */
int selfaudit_before(const aq_config *cfg, sa_kind kind, const char *action, int argc,
                     char *const *argv, char *err, size_t errlen);

/* After the command (SA_CHANGE only; others return 0): records the event
 * with the exit status as outcome (0 success, else failure). 0, or -1 with
 * why in err. */
int selfaudit_after(const aq_config *cfg, sa_kind kind, const char *action, int argc,
                    char *const *argv, int exit_status, char *err, size_t errlen);
#endif
