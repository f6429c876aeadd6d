/* retention_int.h -- what the three files of the retention module share
 * (retention.c: helpers, listing, the plan; retention_run.c: one run,
 * its steps and their transactions; retention_export.c: the csv export,
 * gzip + sha256 files and manifests). Not for use outside common/retention*.c:
 * the module's contract is retention.h.
 */
#ifndef AQ_RETENTION_INT_H
#define AQ_RETENTION_INT_H
#include <stdarg.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "retention.h"

/* Session advisory lock serialising retention runs ("aqretain" in ASCII). */
#define RET_LOCK_KEY "7021519074117118318"
#define RET_LOCK_HI  "1634824805"   /* RET_LOCK_KEY >> 32, as pg_locks.classid shows it */
#define RET_LOCK_LO  "1952541038"   /* RET_LOCK_KEY & 0xffffffff, pg_locks.objid */
/* Transaction lock of auditq_ensure_partitions (sql/001, sql/002). */
#define RET_PART_KEY "97113112097114116"
/* Every transaction of ours. lock_timeout: see retention.h. */
#define RET_BEGIN "BEGIN; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; " \
                  "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '5s'; "     \
                  "SET LOCAL client_min_messages = warning"

/* The state of one retention_run: the connection, the settings, where the
 * report goes, the quoted names preflight found, and the counts for the
 * final line. err/errlen are the caller's buffer. */
typedef struct ret_run {
    PGconn *pg;
    const aq_config *cfg;
    int dry_run;
    retention_report_fn report;
    void *ctx;
    char parent_schema[64];
    char parent_q[300];      /* "schema".audit_events */
    char arch_q[140];        /* the archive schema, quoted */
    char *err;
    size_t errlen;
    int archived, merged, exported, dropped, skipped, held;
    char holds_q[300];       /* "schema".auditq_holds_active, "" before migration 006 */
    char hold_hist_q[300];   /* "schema".auditq_hold_history */
    int hot_from, keep_from;  /* the policy's months for this run */
} ret_run;

/* Runs one statement (or a list without parameters) expecting no rows or
 * rows we ignore. 0, or -1 with err ("what: <server message> ..."). */
int ret_cmd(PGconn *pg, const char *sql, int np, const char *const *pv, const char *what,
            char *err, size_t errlen);
/* Runs a query expecting rows. The result (caller PQclear-s) or NULL with err. */
PGresult *ret_query(PGconn *pg, const char *sql, int np, const char *const *pv,
                    const char *what, char *err, size_t errlen);
/* Ends a failed transaction, if one is open. */
void ret_rollback(PGconn *pg);
/* out = "schema"."name" (each part quoted only if it must be), or "name"
 * when schema is NULL. 0, or -1 with err. */
int ret_qname(PGconn *pg, const char *schema, const char *name, char *out, size_t outlen,
              char *err, size_t errlen);

/* Hands one event to the run's report callback, if any. */
void ret_emit(ret_run *r, const retention_event *ev);
/* How a table is shown: hot ones by name, archived ones with their schema. */
void ret_display(const retention_part *p, char *out, size_t outlen);
/* Reports one action (RET_EV_ACTION) on table p; line from fmt. */
void ret_action(ret_run *r, const char *action, const retention_part *p, const char *target,
                const char *manifest, const char *sha256, long long rows, int done,
                const char *fmt, ...) __attribute__((format(printf, 9, 10)));
/* BEGIN with RET_BEGIN's settings, plus the partition DDL lock when ddl.
 * 0, or -1 with r->err. */
int ret_begin(ret_run *r, int ddl, const char *what);
int ret_commit(ret_run *r, const char *what);

/* Legal holds, inside an action's transaction before it changes table p:
 * locks the hold history (SHARE) and fails with r->err when an active hold
 * covers rows of p (added after the run's first check). 0 or -1. */
int ret_hold_guard(ret_run *r, const retention_part *p, const char *what);

/* csv mode: an archived table -> archive_dir/BASE.csv.gz + BASE.manifest.json,
 * then DROP TABLE, in one transaction (retention_export.c). 0, or -1 with
 * r->err and the transaction rolled back. */
int ret_do_export(ret_run *r, retention_part *p);

#endif
