/* retention.h -- audit_events' monthly partitions: listing them, and the
 * retention policy that moves old months out of the hot table.
 *
 * Policy (settings in config.h):
 *   hot_months     the newest months kept attached to audit_events; the
 *                  current month (UTC) counts as one, later months too.
 *   archive_mode   what happens to an older month:
 *     schema       DETACH PARTITION, then SET SCHEMA archive_schema. The
 *                  table stays queryable by name and keeps its append-only
 *                  triggers (re-created: DETACH removes the cloned ones).
 *     csv          the same detach into archive_schema as a staging area,
 *                  then COPY ... TO STDOUT as CSV, gzip (zlib), into
 *                  archive_dir/audit_events_YYYY_MM.csv.gz with a manifest
 *                  (.manifest.json, sha256 of the .gz), both fsynced and
 *                  renamed into place, and only then DROP TABLE. Every
 *                  table in archive_schema is exported: in csv mode the
 *                  schema only ever holds months on their way out.
 *   retain_months  months kept at all: older ones are dropped (hot or
 *                  archived) without export. Files in archive_dir are never
 *                  deleted: they are the operator's (ship them elsewhere).
 * The producer's clock never decides alone. A month is named by its
 * occurred_at bound, which the producer sets; an event stamped 2020 that
 * arrives today (a wrong clock, a backfill, a forgery) sits in a 2020 month.
 * So before a month is archived or dropped, its received_at (PostgreSQL's
 * clock at insert) is probed: a month is never archived while it holds a
 * row received within hot_months, never dropped while it holds one
 * received within retain_months. Such a month is skipped (RET_ACT_SKIP,
 * reported with the rows and the newest received_at) and handled by a
 * later run once those rows are older: in effect a table is treated as the
 * later of its occurred_at month and the month its newest row arrived. The
 * probe is SELECT 1 ... WHERE received_at >= <period start> LIMIT 1 on the
 * BRIN index of sql/004_clock.sql, which reads nothing of a month whose
 * rows all arrived long ago. Moves out of DEFAULT (partitions ensure) and
 * merges copy received_at as it is, so they keep the property.
 * Legal holds (sql/006_holds.sql) come before all of it: a table that
 * holds a row under an active hold (its tenant, and its actor and
 * occurred_at window when the hold names them) is neither archived, merged,
 * exported nor dropped, and no integrity record is written for it; the run
 * reports it (RET_EV_ACTION "hold", with the hold's id and scope) and goes
 * on with the other months. Failure window: a hold added while a run is
 * under way. Each archive/merge/export/drop transaction locks the hold
 * history in SHARE mode (a `hold add` waits for it, it waits for a `hold
 * add` in progress) and checks again before it changes anything; a hold
 * found then fails that step, rolled back, and the run says so.
 * Whole tables only: never a DELETE of rows (the append-only triggers
 * refuse it anyway). Only tables named audit_events_YYYY_MM are managed
 * (and, attached, only if their bound is exactly that month); anything
 * else is reported and left alone.
 *
 * Each step is its own transaction, so a crash leaves a state the next run
 * completes: a month is hot, archived, or gone, never in between; an export
 * interrupted before its DROP committed is simply done again (same table:
 * the files are overwritten; a different table of the same month, e.g.
 * late rows archived after an earlier export, gets audit_events_YYYY_MM.2
 * etc., so no export ever overwrites another one's data).
 *
 * Locks: DETACH (archive, drop of a hot month) takes ACCESS EXCLUSIVE on
 * audit_events and its DEFAULT partition for a moment -- DETACH ...
 * CONCURRENTLY is impossible here: PostgreSQL refuses it on a table with a
 * DEFAULT partition, and in a transaction block. lock_timeout is 5 s, so we
 * fail instead of queueing every writer behind a long query; the next run
 * retries. An export holds only a SHARE lock on the archived table (reads
 * go on) and no lock on audit_events. Runs are serialised by a session
 * advisory lock (a second run returns RETENTION_BUSY at once); partition
 * DDL also takes auditq_ensure_partitions' transaction lock.
 *
 * Privileges: run as the owner of audit_events (or a member of its role):
 * DETACH, SET SCHEMA, CREATE TRIGGER and DROP are owner-only. The writer
 * role of the workers cannot do this, by design. The connection's
 * search_path must find audit_events, as for `auditqctl migrate`.
 *
 * Identifiers come from the catalog or the validated config and are quoted
 * with PQescapeIdentifier all the same; values go as parameters.
 */
#ifndef AQ_RETENTION_H
#define AQ_RETENTION_H
#include <stddef.h>

#include <libpq-fe.h>

#include "codec.h"
#include "config.h"

enum { RETENTION_OK = 0, RETENTION_BUSY = 1, RETENTION_FAILED = -1 };

/* Where a partition lives. */
enum { RET_LOC_HOT = 0, RET_LOC_ARCHIVE = 1, RET_LOC_DEFAULT = 2 };

typedef struct retention_part {
    unsigned int oid;
    char schema[64];       /* NAMEDATALEN - 1 bytes at most, + NUL */
    char name[64];
    int location;          /* RET_LOC_* */
    int month;             /* year * 12 + month - 1 of a managed monthly table, else -1 */
    char bound[192];       /* attached: the bound as PostgreSQL prints it; else "" */
    long long rows;        /* exact or estimated (see retention_list); -1 unknown */
    long long bytes;       /* pg_total_relation_size */
    char size[32];         /* the same, human readable (pg_size_pretty) */
    /* received_at probe (retention_run fills these for the tables the
     * policy would archive or drop; retention_list leaves recv_month -1):
     * rows received on or after the start of keep_from (recv_rows), of
     * hot_from (recv_rows_hot), the newest such received_at as text (UTC)
     * and its month; recv_month -1 when there is none. */
    int recv_month;
    long long recv_rows, recv_rows_hot;
    char recv_newest[48];
    /* Legal hold (retention_run fills these for the tables it would
     * change): the lowest id of an active hold covering rows of the
     * table, 0 when none; its scope and reason as text. */
    long long hold_id;
    char hold_scope[400];
    char hold_reason[300];
    int hold_reported;
} retention_part;

/* Connects to cfg->database_url through pgconn_open (pgconn.h: the URL's
 * keywords win; application_name = component unless the URL sets one,
 * e.g. "auditqctl" or "auditq-worker/retention"; connect_timeout
 * pg_connect_timeout_s per host). Returns the connection (caller
 * PQfinish-es it), or NULL with the reason and the fix in err. */
PGconn *retention_connect(const aq_config *cfg, const char *component, char *err, size_t errlen);

/* err = "what: <server message> (SQLSTATE x)", plus the fix when it is a
 * lock timeout or a missing privilege. r may be NULL (connection lost, out
 * of memory): the connection's message is used then. */
void retention_pgerr(PGconn *pg, const PGresult *r, const char *what, char *err, size_t errlen);

/* Lists every partition of audit_events (DEFAULT included) and every table
 * audit_events_YYYY_MM in archive_schema, ordered by month (archived
 * before hot within a month), non-monthly ones after, DEFAULT last.
 * rows: exact count(*) per table if exact, else the planner's estimate
 * (pg_class.reltuples; -1 when never analyzed); the DEFAULT partition is
 * always counted exactly (it should be empty; when not, the number
 * matters). *current_month (may be NULL) gets the server's current month
 * in UTC. On success *parts (caller frees with free()) and *n are set and 0
 * is returned; else -1 with err. Read-only. */
int retention_list(PGconn *pg, const char *archive_schema, int exact, retention_part **parts,
                   size_t *n, int *current_month, char *err, size_t errlen);

/* ---- the policy, as a pure function (unit-tested) ---------------------- */

enum { RET_ACT_ARCHIVE, RET_ACT_MERGE, RET_ACT_EXPORT, RET_ACT_DROP, RET_ACT_SKIP };

typedef struct retention_action {
    int kind;              /* RET_ACT_* */
    size_t part;           /* index into the list given to retention_plan */
} retention_action;

/* First month kept hot, and first month kept at all, for the current month. */
int retention_hot_from(int current_month, int hot_months);
int retention_keep_from(int current_month, int retain_months);

/* Plans the actions for parts (as retention_list orders them), in order.
 * A table's month for the policy is the later of its month and recv_month
 * (see "The producer's clock" above): when that keeps a table that its
 * month alone would archive or drop, a SKIP comes first, then what the
 * later month allows (a hot 2020 table whose newest row arrived within
 * retain_months but before hot_from: SKIP, then ARCHIVE). So:
 *   hot, month < keep_from                    DROP
 *   hot, month < hot_from, schema mode        ARCHIVE, or MERGE when the
 *                                             archive already has that table
 *                                             (late rows of an archived month)
 *   hot, month < hot_from, csv mode           ARCHIVE then EXPORT
 *   archived, month < keep_from               DROP
 *   archived, csv mode                        EXPORT (exports, then drops)
 * Writes at most max actions to out; returns how many there are in all
 * (more than max: the caller's array was too small). */
size_t retention_plan(const retention_part *parts, size_t n, int current_month, int hot_months,
                      int retain_months, int archive_mode, retention_action *out, size_t max);

/* ---- running it ------------------------------------------------------- */

enum {
    RET_EV_POLICY,         /* once, first: hot_from, keep_from */
    RET_EV_ACTION,         /* one per action, done or (dry run) planned */
    RET_EV_INFO,           /* e.g. "nothing to do" */
    RET_EV_WARNING,        /* something the operator should look at */
    RET_EV_PROGRESS        /* export under way: rows so far */
};

typedef struct retention_event {
    int kind;              /* RET_EV_* */
    const char *line;      /* the human-readable line, no newline */
    /* RET_EV_ACTION / RET_EV_PROGRESS details; NULL or -1 when not applicable */
    const char *action;    /* "archive" "merge" "export" "drop" "skip" "hold" */
    const char *table;     /* hot: name; archived: schema.name */
    const char *target;    /* archive/merge: schema.name; export: the .csv.gz path */
    const char *manifest;  /* export: the manifest path */
    const char *sha256;    /* export: of the .csv.gz, hex */
    const char *newest;    /* skip: the newest received_at that kept the table */
    const char *since;     /* skip: "YYYY-MM-01", the start of the period it is in */
    const char *within;    /* skip: "hot_months" (not archived) or "retain_months" (not dropped) */
    long long hold_id;     /* hold: the active legal hold that keeps the table */
    const char *hold_scope;/* hold: "tenant T[, actor A][, since S][, until U]" */
    int month;             /* the table's month (year * 12 + month - 1) */
    long long rows;        /* merge/export: rows; skip: rows received since `since`;
                              progress: rows so far */
    int done;              /* 1 done, 0 planned (dry run) */
    /* RET_EV_POLICY */
    int hot_from, keep_from;
} retention_event;

typedef void (*retention_report_fn)(void *ctx, const retention_event *ev);

/* Rows between two RET_EV_PROGRESS events of one export. */
#define RETENTION_PROGRESS_ROWS 100000

/* Applies the policy of cfg (hot_months, retain_months, archive_mode,
 * archive_schema, archive_dir) once, reporting every step to report (may
 * be NULL) as it happens. dry_run: only plans (RET_EV_ACTION with done = 0)
 * and changes nothing, not even the archive dir. Leaves the connection's
 * session settings as they were (everything runs in transactions with SET
 * LOCAL), so a worker may pass its own connection. Returns RETENTION_OK,
 * RETENTION_BUSY (another run holds the lock; err says which backend) or
 * RETENTION_FAILED (err says what and what to do; steps already reported
 * done are committed, the failed one is rolled back). */
int retention_run(PGconn *pg, const aq_config *cfg, int dry_run, retention_report_fn report,
                  void *ctx, char *err, size_t errlen);

/* ---- pieces shared with auditqctl, exposed for the unit tests ---------- */

/* "YYYY-MM" of a month number; out needs 8 bytes (more for years > 9999). */
void retention_month_label(int month, char *out, size_t outlen);

/* Appends s as a JSON string (quoted, escaped) to b. 0, or -1 on OOM. */
int retention_json_append(aq_buf *b, const char *s);

/* Streams bytes through gzip (zlib) into a new file, hashing the
 * compressed bytes with SHA-256 on the way. */
typedef struct retention_gzfile retention_gzfile;
/* Creates path (O_EXCL is not used: a leftover temporary file of a crashed
 * run is overwritten), mode 0640 (audit data; less with the umask). Returns
 * the handle or NULL with err. */
retention_gzfile *retention_gz_open(const char *path, char *err, size_t errlen);
int retention_gz_write(retention_gzfile *f, const void *buf, size_t len, char *err, size_t errlen);
/* Finishes the gzip stream, fsyncs and closes the file; sha256 gets the hex
 * digest of the file (65 bytes with NUL), *bytes its size. Frees f in every
 * case; 0 or -1 with err (the file is then incomplete). */
int retention_gz_close(retention_gzfile *f, char sha256[65], long long *bytes, char *err,
                       size_t errlen);
/* Closes and frees without finishing (the file stays, incomplete). NULL-safe. */
void retention_gz_abort(retention_gzfile *f);

/* The table_oid recorded in a manifest's text, or 0 when there is none. */
unsigned int retention_manifest_oid(const char *json);
#endif
