/* pgw.h -- the PostgreSQL writer: one connection, idempotent batch writes,
 * SQLSTATE classification, and isolation of the rows PostgreSQL refuses.
 *
 * A batch is written in one transaction:
 *   BEGIN; COPY auditq_stage FROM STDIN (or array-bound INSERT);
 *   SAVEPOINT; INSERT INTO audit_events SELECT ... FROM auditq_stage
 *       ON CONFLICT DO NOTHING (primary key event_id, occurred_at); COMMIT;
 * so a job delivered twice is stored once. auditq_stage is a per-connection
 * TEMP table (ON COMMIT DELETE ROWS) created once after connecting; its
 * column n holds each row's index in the batch, so that after a data error
 * the same transaction can insert any range of the staged rows again
 * (savepoint probes, see pgw_isolate) without sending them twice.
 */
#ifndef AQ_PGW_H
#define AQ_PGW_H
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>
#include "codec.h"
#include "config.h"
#include "pgconn.h"

/* The connection and its bounded waits are common/pgconn.h's (the one
 * connector of auditq); a writer is one pgconn_io. */

/* How an error is handled. */
typedef enum pgw_class {
    PGW_CLASS_TRANSIENT = 0, /* connection, resources, locks, server shutting
                                down, missing table/permission (operator must
                                fix): retry forever with backoff, never dead-letter */
    PGW_CLASS_DATA = 1       /* the row itself is bad (classes 22, 23, 54):
                                isolate it, retry that row up to max_attempts */
} pgw_class;

/* Classifies a 5-char SQLSTATE (NULL or "" = connection lost = transient). */
pgw_class pgw_classify(const char *sqlstate);

/* Why PostgreSQL cannot take this writer's batches: what /readyz, the log
 * and the start check name (pgw_fault_name). */
typedef enum pgw_fault {
    PGW_FAULT_NONE = 0,    /* the last connect, probe or write succeeded */
    PGW_FAULT_UNREACHABLE, /* refused or lost connection, no answer while
                              connecting, server starting or shutting down */
    PGW_FAULT_STALLED,     /* an open connection neither took a request nor
                              answered for pg_timeout_ms */
    PGW_FAULT_LOGIN,       /* 28P01 / 28000: password, role or pg_hba.conf */
    PGW_FAULT_DATABASE,    /* 3D000: the database does not exist */
    PGW_FAULT_PRIVILEGE,   /* 42501: no INSERT on audit_events, or no
                              TEMPORARY on the database */
    PGW_FAULT_TABLE,       /* 42P01: no audit_events (not migrated) */
    PGW_FAULT_SERVER,      /* any other server error (too many connections,
                              disk full, deadlock, ...) */
    PGW_FAULT_COUNT
} pgw_fault;

/* The fault a failure shows: timed_out (a pg_timeout_ms wait gave up)
 * wins; then the SQLSTATE (NULL or "" = no server answer: unreachable). */
pgw_fault pgw_fault_of(const char *sqlstate, int timed_out);
/* "unreachable", "stalled", "login refused", "database missing",
 * "privilege missing", "table missing", "server error"; "" for NONE. */
const char *pgw_fault_name(pgw_fault f);
/* 1 for the faults only an operator can fix (login, database, privilege,
 * table): fatal when the worker starts, and not worth a fast retry. */
int pgw_fault_is_config(pgw_fault f);
/* What to do about f, one sentence (role: the role database_url logs in
 * as, "" if unknown). "" for the faults that pass on their own. */
const char *pgw_fault_fix(pgw_fault f, const char *role, char *buf, size_t n);
/* "<err>; <fix>" for a config fault, else err: the error line a user sees.
 * Returns buf. */
const char *pgw_explain(pgw_fault f, const char *role, const char *err, char *buf, size_t n);

/* Per-row outcome of pgw_write. */
typedef struct pgw_row_result {
    int bad;               /* 1: data error for this row alone */
    char sqlstate[6];
    char message[200];     /* PostgreSQL's primary message */
} pgw_row_result;

typedef struct pgw_stats {
    uint64_t transactions;  /* transactions begun for batch writes */
    uint64_t rows_written;  /* rows in committed transactions (incl. duplicates;
                               rows refused for their data excluded) */
    uint64_t rows_inserted; /* rows actually inserted (duplicates excluded) */
    uint64_t bisections;    /* isolation steps: savepoint probes of a range
                               (pgw_isolate) plus splits of a failing range
                               into two transactions (pgw_bisect) */
    uint64_t round_trips;   /* requests that waited for PostgreSQL's answer
                               while writing batches (connecting excluded) */
} pgw_stats;

/* pgw_write return values. */
enum { PGW_DONE = 0, PGW_RETRY = -1 };

typedef struct pgw pgw;

/* New writer for cfg->database_url (not connected yet). cfg must outlive it.
 * NULL on OOM. Free with pgw_free (NULL-safe). */
pgw *pgw_new(const aq_config *cfg);
void pgw_free(pgw *w);
/* (Re)connects if not connected (pgconn.h: application_name auditq-worker
 * unless database_url sets one; every listed host tried in turn, each for
 * pg_connect_timeout_s): sets statement_timeout, creates the staging table, prepares the INSERTs and
 * checks that the role may INSERT into audit_events. 0, or -1 with err and
 * pgw_last_fault saying why (a refused login, a missing database, table or
 * privilege are told apart from an unreachable server; a standby found
 * where target_session_attrs=read-write asks for a primary is
 * unreachable, i.e. transient). */
int pgw_connect(pgw *w, char *err, size_t errlen);
int pgw_connected(const pgw *w);
/* For an idle writer: a connection whose server went away is only noticed
 * when it is used, so this sends an empty query (one round trip), or
 * connects if not connected. 0: connected and answering; -1 with err: not
 * (the connection is dropped, to be re-made by the next call or write). */
int pgw_ping(pgw *w, char *err, size_t errlen);
/* Can this writer write? Connects if not connected (the connect checks
 * every privilege a write needs); else one round trip asking whether the
 * role may INSERT into audit_events. 0: yes. -1 with err and
 * pgw_last_fault: no (a dead connection is dropped). */
int pgw_probe(pgw *w, char *err, size_t errlen);
/* Why the last connect, probe or write failed; PGW_FAULT_NONE after a
 * success. */
pgw_fault pgw_last_fault(const pgw *w);
/* The role the last connect attempt logged in as ("" before any). */
const char *pgw_role(const pgw *w);

/* libpq's message for a failed connect made with PQERRORS_VERBOSE (which
 * is how pgw_connect learns the SQLSTATE of a refused login: libpq has no
 * result object for it): puts the first SQLSTATE in sqlstate ("" if none)
 * and the message as PQERRORS_DEFAULT would print it (without "XXXXX: "
 * and the LOCATION line), on one line, into out. */
void pgw_conn_message(const char *verbose, char sqlstate[6], char *out, size_t n);

/* What a writer thread whose batch write failed does next (pure; the
 * thread's loop in worker/writer.c runs it):
 *   RELEASE  stopping, or the writes have failed for release_after_ms:
 *            give the batch back to its queue (unless release_at_us, the
 *            earliest next release attempt after one failed, is ahead);
 *   RETRY    the backoff delay is over: write again;
 *   PROBE    the connection is gone and no probe ran for PGW_PROBE_MS:
 *            one cheap probe (a probe that answers makes the caller retry
 *            at once instead of sleeping out a long backoff);
 *   WAIT     sleep *wait_us (until the earliest of the above), then ask
 *            again.
 * At most one probe per PGW_PROBE_MS, so a database that is down sees one
 * connection attempt per thread per second at most. */
#define PGW_PROBE_MS 1000
typedef enum pgw_step { PGW_STEP_WAIT = 0, PGW_STEP_RETRY, PGW_STEP_PROBE, PGW_STEP_RELEASE } pgw_step;
typedef struct pgw_hold {
    int64_t failing_since_us;  /* the first failed write of this batch */
    int64_t retry_at_us;       /* the backoff allows the next write then */
    int64_t probe_us;          /* the last probe or write */
    int64_t release_at_us;     /* no release attempt before this (0: any time) */
    int release_after_ms;      /* pg_release_after_ms */
    int connected;             /* the writer's connection is open */
    int stopping;              /* shutdown began */
} pgw_hold;
pgw_step pgw_hold_next(const pgw_hold *h, int64_t now_us, int64_t *wait_us);

/* Writes jobs[0..n) idempotently.
 * PGW_DONE: every row is either committed (res[i].bad == 0) or has a data
 *   error of its own (res[i].bad == 1, sqlstate and message set): every
 *   good row is committed.
 *   COPY method: a data error in the INSERT is isolated inside the batch's
 *   one transaction by savepoint probes (pgw_isolate): one bad row in n
 *   costs at most ceil(log2 n) + 1 extra round trips and no extra
 *   transaction; the rows are sent once. Only a row COPY itself refuses
 *   (text that is not valid UTF-8, which the codec never lets through)
 *   falls back to pgw_bisect, one transaction per range.
 *   INSERT method (unnest of bound arrays, one implicit transaction per
 *   range): pgw_bisect.
 * PGW_RETRY: a transient error (see pgw_class) stopped the write; err says
 *   which. With pgw_bisect some sub-batches may already be committed:
 *   calling again with the same jobs is safe (ON CONFLICT DO NOTHING). The
 *   connection is reset if it is broken.
 * res must hold n entries. st (may be NULL) is added to. */
int pgw_write(pgw *w, const aq_job *jobs, size_t n, pgw_row_result *res,
              pgw_stats *st, char *err, size_t errlen);

/* The bisection logic alone, for unit tests: `try` writes jobs [lo, hi) in
 * one transaction and returns 0 (committed), 1 (data error, sqlstate and
 * message filled) or -1 (transient). pgw_bisect calls it on the whole range,
 * then on halves of failing ranges down to single rows, marking single
 * failing rows bad in res. A try may also mark rows of [lo, hi) bad itself
 * and return 0 (the COPY method isolates INSERT errors that way). Counts one
 * transaction per try and one bisection per split. Returns PGW_DONE or
 * PGW_RETRY. */
typedef int (*pgw_try_fn)(void *ctx, size_t lo, size_t hi, char sqlstate[6],
                          char *message, size_t msglen);
int pgw_bisect(void *ctx, pgw_try_fn try_fn, size_t n, pgw_row_result *res, pgw_stats *st);

/* The search inside one transaction, for unit tests and the COPY method.
 * `probe` runs in a transaction whose staged rows [lo, hi) are all
 * uninserted and hold at least one bad row; the first bad row (in index
 * order) raised sqlstate/message. probe(ctx, a, b, commit, ...):
 *   a < b: insert rows [a, b) under a savepoint; 0 keeps them, 1 (data
 *     error, sqlstate and message filled) rolls back to the savepoint and
 *     keeps the transaction usable, -1 transient (the transaction is lost);
 *   commit = 1: on success also commit the transaction (a == b: commit
 *     only, after undoing a failed probe if needed).
 * The search finds the first bad row by halving (a failing [L, mid) holds
 * it; a succeeding one is kept and the search goes on in [mid, H)), marks
 * it with the error of the last range that failed (which that row raised),
 * then probes everything after it at once with commit = 1. One bad row in
 * n costs at most ceil(log2 n) + 1 calls (the last one commits), k bad rows
 * at most k * (ceil(log2 n) + 1). Rows never probed alone are marked from
 * the failing range's error, so a single row costs no probe. Returns
 * PGW_DONE (committed: good rows inserted, bad rows marked in res) or
 * PGW_RETRY (probe returned -1; res keeps the marks made so far). Counts
 * one bisection per probe with rows (a < b); st may be NULL. */
typedef int (*pgw_probe_fn)(void *ctx, size_t lo, size_t hi, int commit,
                            char sqlstate[6], char *message, size_t msglen);
int pgw_isolate(void *ctx, pgw_probe_fn probe, size_t lo, size_t hi, const char *sqlstate,
                const char *message, pgw_row_result *res, pgw_stats *st);
#endif
