/* pgw.c -- the PostgreSQL writer (see pgw.h for the contract): the
 * connection, its setup, and one batch's transaction. Beside it:
 * pgw_encode.c (COPY rows, array literals), pgw_fault.c (SQLSTATE classes,
 * faults, the retry step), pgw_isolate.c (finding refused rows); the
 * connector and the bounded waits are common/pgconn.c's.
 *
 * DESIGN
 * One pgw owns one PGconn and is used by one thread. A batch [lo, hi) is
 * written in exactly one transaction, so a batch is either wholly committed
 * or wholly absent; ON CONFLICT DO NOTHING (the primary key (event_id, occurred_at) is the only unique index) makes a
 * re-delivered job a no-op, which is what lets the caller retry a batch after
 * any failure (including "COMMIT sent, answer lost") without duplicates.
 *
 * COPY method, 3 round trips per clean batch:
 *   1. "BEGIN; COPY auditq_stage FROM STDIN"   (one simple query; reading
 *      its results stops at the COPY, which hands us PGRES_COPY_IN)
 *   2. the rows as COPY text in 256 KiB PQputCopyData chunks (each row
 *      led by n, its index in the batch), PQputCopyEnd, wait for the
 *      COPY's result
 *   3. pipeline: SAVEPOINT, prepared INSERT ... SELECT FROM auditq_stage,
 *      COMMIT, Sync
 * auditq_stage is ON COMMIT DELETE ROWS, so a commit or a rollback leaves it
 * empty for the next batch. Staging as text means a bad value (bad JSON,
 * an enum CHECK, a NULL priority) fails in the INSERT with a precise
 * SQLSTATE that pgw_classify maps to a data error.
 *
 * Bad rows, COPY method: the INSERT failed, the pipeline skipped the COMMIT,
 * and the transaction sits in the failed subtransaction of the savepoint
 * with every row still staged. pgw_isolate then searches in that same
 * transaction, one simple query (one round trip) per probe:
 *   "ROLLBACK TO SAVEPOINT p; INSERT ... WHERE n >= a AND n < b"
 * (after a probe that succeeded: "RELEASE SAVEPOINT p; SAVEPOINT p; ..."
 * instead, which keeps its rows). It halves the range down to the first
 * bad row, keeping every range that goes in, then tries all the rows after
 * that one with "; COMMIT" appended. One bad row in 10,000: at most 14
 * probes + 1, no extra transaction, no row sent twice; good rows commit
 * in the batch's one transaction. A row COPY itself refuses (invalid
 * UTF-8 or a NUL byte, which the codec rejects before this point) falls
 * back to pgw_bisect below: one transaction per range tried.
 *
 * INSERT method, 1 round trip per batch: one prepared
 *   INSERT ... SELECT ... FROM unnest($1::uuid[], ..., $17::text[])
 * with the 17 columns as text array literals, run as a single implicit
 * transaction. Its bad rows are isolated by pgw_bisect: a range that fails
 * is split in two and each half is a transaction of its own (the arrays
 * are sent again), between ceil(log2 n) + 1 and 2 ceil(log2 n) + 1
 * transactions for one bad row in n.
 *
 * Errors: a data error (SQLSTATE class 22/23/54) is isolated as above;
 * everything else stops the write with PGW_RETRY (the open transaction, and
 * with it every probe that succeeded, is rolled back: the retry starts
 * over). After any error the transaction is rolled back if the connection is
 * alive, or the connection is dropped (and re-made on the next write).
 *
 * Bounded waits (pgconn_io, common/pgconn.h). statement_timeout only
 * bounds what the server does; a stalled network (or a frozen server, or a
 * half-open connection) would leave a blocking libpq call waiting forever
 * -- TCP keepalives do not fire while a peer or a middlebox still
 * acknowledges packets. So the connection is non-blocking and every wait
 * goes through poll() on PQsocket with cfg->pg_timeout_ms: sending (PQflush, COPY data) and reading each result.
 * When PostgreSQL neither takes nor sends a byte for that long, the socket is
 * shut down: libpq then reports the connection lost through its ordinary
 * path, the batch is retried, and the error names the timeout. A COMMIT
 * whose answer never came may or may not have committed; retrying it is
 * safe (ON CONFLICT DO NOTHING), so it is never treated as a data error.
 * Connecting is bounded by pg_connect_timeout_s per host listed in
 * database_url, and tcp_user_timeout (pg_timeout_ms) covers sends the
 * kernel cannot deliver.
 *
 * Fail-over. With several hosts and target_session_attrs=read-write, a
 * connection lost with the primary is an ordinary transient error: the
 * batch is retried with backoff, and each reconnect tries the hosts in
 * order; a standby that has not been promoted yet refuses ("session is
 * read-only", unreachable), the promoted one is taken. A COMMIT whose
 * answer the old primary never sent is retried on the new one (ON
 * CONFLICT DO NOTHING); with synchronous replication a commit the old
 * primary acknowledged is on the new one, so nothing acknowledged is lost.
 *
 * Fencing (pg_sync_fence, default on). An old primary that lost its
 * synchronous standby (the standby was promoted) but is still up, or was
 * restarted as a primary, may still take connections with
 * target_session_attrs=read-write. A new batch's commit there waits for a
 * standby that never comes, so it is never acknowledged. But a batch whose
 * commit was in flight when the standby went away is committed in the old
 * primary's WAL; once visible there (after its backend gave up waiting, or
 * a restart), a retry finds every row present, ON CONFLICT DO NOTHING
 * writes nothing, and a transaction that wrote nothing commits at once,
 * without waiting for any standby: the batch would be acknowledged while
 * its rows exist only on the old primary, and lost when it is rebuilt.
 * So every batch transaction starts with a transactional WAL record
 * (pg_logical_emit_message): its commit waits for the synchronous standby
 * whatever the rows did, and a retry on a cut-off primary blocks like a
 * new batch until the operator stops that server (or it rejoins as a
 * standby) and the worker reaches the new primary. A commit whose wait
 * the server canceled (its WARNING) is not counted either (pgw_notice).
 * Without synchronous replication there is nothing to wait for: the fence
 * costs one small WAL record per batch and changes nothing.
 */
#include "pgw.h"
#include "pgw_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "pgconn.h"
#include "clockskew.h"
#include "uuid7.h"

/* PQputCopyData chunk: large enough that per-call overhead vanishes, small
 * enough that a big batch never needs one huge allocation. */
#define PGW_COPY_CHUNK (256u * 1024u)

struct pgw {
    const aq_config *cfg;
    PGconn *conn;      /* NULL when disconnected */
    pgconn_io io;         /* conn's waits: io.conn == conn */
    aq_buf buf;        /* COPY chunk / array literals; reused across batches */
    pgw_fault fault;   /* why the last connect, probe or write failed */
    char role[64];     /* the role the last connect attempt used */
    int syncrep_canceled; /* the server warned that a commit's wait for the
                             synchronous standby was canceled (pgw_notice) */
};

/* Whether the role may write: INSERT on audit_events (the TEMPORARY
 * privilege was needed for auditq_stage just before). A missing table
 * raises 42P01. */
static const char pgw_check_sql[] = "SELECT has_table_privilege('audit_events', 'INSERT')";

/* The 13 text columns, in auditq_field order (AUDITQ_TENANT_ID..METADATA). */
#define PGW_TEXT_COLS \
    "tenant_id, actor_id, actor_type, action, entity_type, entity_id, " \
    "outcome, source_ip, user_agent, request_id, session_id"

#define PGW_TARGET_COLS \
    "event_id, occurred_at, priority, " PGW_TEXT_COLS ", changes, metadata, clock_flag"

/* n: the row's index in the batch, written by the COPY, so that a savepoint
 * probe can insert any range of the staged rows again (pgw_isolate). */
const char pgw_setup_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS auditq_stage ("
    "n int, event_id uuid, occurred_at_us bigint, priority text, tenant_id text, "
    "actor_id text, actor_type text, action text, entity_type text, "
    "entity_id text, outcome text, source_ip text, user_agent text, "
    "request_id text, session_id text, changes text, metadata text, clock_flag text"
    ") ON COMMIT DELETE ROWS";

const char pgw_begin_copy_sql[] =
    "BEGIN; COPY auditq_stage FROM STDIN";

/* pg_sync_fence (DESIGN "Fencing"): a transactional WAL record at the start
 * of every batch transaction, so that its commit waits for the synchronous
 * standby even when every row was already there (a retry after an unknown
 * outcome). pg_logical_emit_message is executable by PUBLIC and works at
 * wal_level replica; logical decoding consumers see a message with prefix
 * "auditq.fence" and no content. */
#define PGW_FENCE_SQL "SELECT pg_logical_emit_message(true, 'auditq.fence', '')"
static const char pgw_begin_copy_fenced_sql[] =
    "BEGIN; " PGW_FENCE_SQL "; COPY auditq_stage FROM STDIN";

#define PGW_SAVEPOINT "auditq_probe"
const char pgw_savepoint_sql[] = "SAVEPOINT " PGW_SAVEPOINT;

/* The INSERT of the staged rows, in two halves so that a probe can put
 * "WHERE n >= a AND n < b" between them. */
#define PGW_INSERT_STAGE_HEAD \
    "INSERT INTO audit_events (" PGW_TARGET_COLS ") " \
    "SELECT event_id, timestamptz 'epoch' + (occurred_at_us / 1000000) * interval '1 second' + (occurred_at_us % 1000000) * interval '1 microsecond', " \
    "priority, " PGW_TEXT_COLS ", changes::jsonb, metadata::jsonb, clock_flag " \
    "FROM auditq_stage"
#define PGW_INSERT_STAGE_TAIL " ON CONFLICT DO NOTHING"

#define PGW_STMT_STAGE "auditq_insert_stage"
const char pgw_insert_stage_sql[] = PGW_INSERT_STAGE_HEAD PGW_INSERT_STAGE_TAIL;

#define PGW_STMT_ARRAYS "auditq_insert_arrays"
#define PGW_NPARAMS 17
/* The INSERT method's one statement; fenced (pg_sync_fence): joined with a
 * one-row materialized CTE that writes the fence record first. */
#define PGW_ARRAYS_FENCE "WITH auditq_fence AS MATERIALIZED (" PGW_FENCE_SQL " AS lsn) "
#define PGW_ARRAYS_FROM_FENCE "auditq_fence, "
#define PGW_INSERT_ARRAYS(fence, from_fence) \
    fence "INSERT INTO audit_events (" PGW_TARGET_COLS ") " \
    "SELECT u.event_id, timestamptz 'epoch' + (u.ts / 1000000) * interval '1 second' + (u.ts % 1000000) * interval '1 microsecond', " \
    "u.priority, u.tenant_id, u.actor_id, u.actor_type, u.action, u.entity_type, " \
    "u.entity_id, u.outcome, u.source_ip, u.user_agent, u.request_id, " \
    "u.session_id, u.changes::jsonb, u.metadata::jsonb, u.clock_flag " \
    "FROM " from_fence "unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], " \
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], " \
    "$12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) " \
    "AS u(event_id, ts, priority, " PGW_TEXT_COLS ", changes, metadata, clock_flag) " \
    "ON CONFLICT DO NOTHING"
static const char pgw_insert_arrays_sql[] = PGW_INSERT_ARRAYS("", "");
static const char pgw_insert_arrays_fenced_sql[] = PGW_INSERT_ARRAYS(PGW_ARRAYS_FENCE, PGW_ARRAYS_FROM_FENCE);

/* ---- connection ---------------------------------------------------------- */

pgw *pgw_new(const aq_config *cfg)
{
    pgw *w = calloc(1, sizeof *w);
    if (w)
        w->cfg = cfg;
    return w;
}

/* PQfinish on a non-blocking connection never waits: its goodbye message
 * is sent only if the socket takes it at once. */
static void pgw_disconnect(pgw *w)
{
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    memset(&w->io, 0, sizeof w->io);
}

void pgw_free(pgw *w)
{
    if (!w)
        return;
    pgw_disconnect(w);
    free(w->buf.data);
    free(w);
}

int pgw_connected(const pgw *w)
{
    return w && w->conn && PQstatus(w->conn) == CONNECTION_OK;
}

/* Formats libpq's connection-level message as "what: message". */
static void conn_error(PGconn *conn, const char *what, char *err, size_t errlen)
{
    char m[256];
    pgconn_flatten(m, sizeof m, conn ? PQerrorMessage(conn) : "out of memory");
    snprintf(err, errlen, "%s: %s", what, m);
}

/* Formats a failed result (or the timeout) as "what: reason" into err. */
static void result_error(const pgconn_io *io, const PGresult *r, const char *what, char *err, size_t errlen)
{
    char m[256];
    snprintf(err, errlen, "%s: %s", what, pgconn_io_error(io, r, m, sizeof m));
}

/* The fault a failed result (or a wait that gave up) shows. */
static pgw_fault result_fault(const pgconn_io *io, const PGresult *r)
{
    return pgw_fault_of(r && !io->timed_out ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL,
                        io->timed_out);
}

/* Runs one command expected to return PGRES_COMMAND_OK. On failure the
 * fault goes to *fault (may be NULL). */
static int exec_ok_f(pgconn_io *io, const char *sql, const char *what, char *err, size_t errlen,
                     pgw_fault *fault)
{
    PGresult *r = pgconn_io_exec(io, sql, 0, NULL);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        result_error(io, r, what, err, errlen);
        if (fault)
            *fault = result_fault(io, r);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

static int exec_ok(pgconn_io *io, const char *sql, const char *what, char *err, size_t errlen)
{
    return exec_ok_f(io, sql, what, err, errlen, NULL);
}

/* PQprepare, bounded. */
static int prepare_ok(pgconn_io *io, const char *name, const char *sql, char *err, size_t errlen,
                      pgw_fault *fault)
{
    PGresult *r = PQsendPrepare(io->conn, name, sql, 0, NULL) ? pgconn_io_collect(io) : NULL;
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        result_error(io, r, "prepare insert", err, errlen);
        *fault = result_fault(io, r);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* pgw_check_sql on a connected writer: 0 when the role may INSERT, else -1
 * with err and w->fault (the connection is left as it is). */
static int check_writable(pgw *w, const char *what, char *err, size_t errlen)
{
    PGresult *r = pgconn_io_exec(&w->io, pgw_check_sql, 0, NULL);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        result_error(&w->io, r, what, err, errlen);
        w->fault = result_fault(&w->io, r);
    } else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        snprintf(err, errlen, "%s: 42501 role \"%s\" has no INSERT privilege on audit_events", what,
                 w->role);
        w->fault = PGW_FAULT_PRIVILEGE;
    } else {
        rc = 0;
    }
    PQclear(r);
    return rc;
}

/* libpq's default notice processor prints to stderr, which would put raw
 * lines among the worker's logfmt output. The notices our statements
 * raise are informational ("relation auditq_stage already exists,
 * skipping") and dropped, but one: the WARNING that a commit's wait for
 * the synchronous standby was canceled (pg_cancel_backend, or a server
 * shutting down). The commit then stands on this server only, and the
 * batch must not count as written (DESIGN "Fencing"). */
static void pgw_notice(void *arg, const char *message)
{
    pgw *w = arg;
    if (w && message && strstr(message, "wait for synchronous replication"))
        w->syncrep_canceled = 1;
}

int pgw_connect(pgw *w, char *err, size_t errlen)
{
    char setup[128], why[1024];
    int rc = -1, timed_out = 0;
    pgconn_params params;
    /* The one connector's rule (pgconn.h): database_url wins for what it
     * sets. tcp_user_timeout: data the kernel cannot get acknowledged (a
     * dead link) fails the connection after pg_timeout_ms instead of
     * ~15 min of retransmissions. client_encoding is set again below: the
     * writer needs it whatever database_url says. */
    const pgconn_opts o = { .conninfo = w->cfg->database_url, .component = "auditq-worker",
                            .connect_timeout_s = w->cfg->pg_connect_timeout_s,
                            .tcp_user_timeout_ms = w->cfg->pg_timeout_ms,
                            .client_encoding = "UTF8" };

    if (pgw_connected(w))
        return 0;
    pgw_disconnect(w);

    w->fault = PGW_FAULT_UNREACHABLE;
    if (pgconn_params_init(&params, &o, why, sizeof why) != 0) {
        /* As libpq would have refused it: unreachable, as before. */
        pgconn_params_free(&params);
        snprintf(err, errlen, "connect: %s", why);
        goto out;
    }
    /* Each host listed gets pg_connect_timeout_s, or database_url's
     * connect_timeout (pgconn.h, MULTI-HOST). */
    int limit_ms = params.connect_timeout_ms > 0 ? params.connect_timeout_ms : INT32_MAX / 2;
    w->conn = pgconn_connect(&params, limit_ms, PQERRORS_VERBOSE, &timed_out, why, sizeof why);
    pgconn_params_free(&params);
    if (!w->conn) {
        /* No answer at all -- a silent server or network, or a host that
         * drops packets: the same to us as a stall mid-query. */
        if (timed_out) {
            if (limit_ms % 1000 == 0 && limit_ms / 1000 == w->cfg->pg_connect_timeout_s)
                snprintf(err, errlen, "connect: no answer from PostgreSQL within %d s (pg_connect_timeout_s)",
                         w->cfg->pg_connect_timeout_s);
            else
                snprintf(err, errlen, "connect: no answer from PostgreSQL within %d ms (connect_timeout "
                         "of database_url)", limit_ms);
            w->fault = PGW_FAULT_STALLED;
        } else
            snprintf(err, errlen, "connect: out of memory");
        goto out;
    }
    snprintf(w->role, sizeof w->role, "%s", PQuser(w->conn) ? PQuser(w->conn) : "");
    if (PQstatus(w->conn) != CONNECTION_OK) {
        char state[6], m[400];
        pgw_conn_message(why, state, m, sizeof m);
        snprintf(err, errlen, "connect: %s", m);
        w->fault = pgw_fault_of(state, 0);
        goto out;
    }
    /* Messages of later errors as before (the SQLSTATE is read from the
     * result's fields there). */
    PQsetErrorVerbosity(w->conn, PQERRORS_DEFAULT);
    PQsetNoticeProcessor(w->conn, pgw_notice, w);
    if (pgconn_io_init(&w->io, w->conn, w->cfg->pg_timeout_ms) != 0) {
        conn_error(w->conn, "connect: non-blocking mode", err, errlen);
        goto out;
    }
    /* Fields are stored byte-exact only if no conversion happens on the way;
     * set again in case the server or a pooler ignored the startup option. */
    snprintf(setup, sizeof setup, "SET statement_timeout = %d; SET client_encoding = 'UTF8'",
             w->cfg->statement_timeout_ms);
    if (exec_ok_f(&w->io, setup, "connect setup", err, errlen, &w->fault) < 0 ||
        exec_ok_f(&w->io, pgw_setup_sql, "create auditq_stage", err, errlen, &w->fault) < 0 ||
        prepare_ok(&w->io, PGW_STMT_STAGE, pgw_insert_stage_sql, err, errlen, &w->fault) < 0 ||
        prepare_ok(&w->io, PGW_STMT_ARRAYS, w->cfg->pg_sync_fence ? pgw_insert_arrays_fenced_sql : pgw_insert_arrays_sql,
                   err, errlen, &w->fault) < 0 ||
        check_writable(w, "connect check", err, errlen) < 0)
        goto out;
    w->fault = PGW_FAULT_NONE;
    rc = 0;
out:
    if (rc < 0)
        pgw_disconnect(w);
    return rc;
}

int pgw_ping(pgw *w, char *err, size_t errlen)
{
    PGresult *r;
    int ok;

    if (!pgw_connected(w))
        return pgw_connect(w, err, errlen);
    r = pgconn_io_exec(&w->io, "", 0, NULL);
    ok = PQresultStatus(r) == PGRES_EMPTY_QUERY;
    if (!ok) {
        result_error(&w->io, r, "ping", err, errlen);
        w->fault = result_fault(&w->io, r);
    }
    PQclear(r);
    if (!ok)
        pgw_disconnect(w);
    return ok ? 0 : -1;
}

int pgw_probe(pgw *w, char *err, size_t errlen)
{
    if (!pgw_connected(w))
        return pgw_connect(w, err, errlen);
    if (check_writable(w, "probe", err, errlen) == 0) {
        w->fault = PGW_FAULT_NONE;
        return 0;
    }
    if (PQstatus(w->conn) != CONNECTION_OK || w->io.timed_out)
        pgw_disconnect(w);
    return -1;
}

pgw_fault pgw_last_fault(const pgw *w)
{
    return w ? w->fault : PGW_FAULT_UNREACHABLE;
}

const char *pgw_role(const pgw *w)
{
    return w ? w->role : "";
}

/* ---- one transaction ----------------------------------------------------- */

typedef struct write_ctx {
    pgw *w;
    const aq_job *jobs;
    pgw_row_result *res;
    pgw_stats *st;
    char *err;
    size_t errlen;
} write_ctx;

/* What a failed step left behind: the SQLSTATE and primary message of the
 * first error result, for classification after cleanup. */
typedef struct step_error {
    char sqlstate[6];
    char message[200];
    int have;
} step_error;

static void step_error_take(step_error *e, const PGresult *r, const pgconn_io *io)
{
    if (e->have)
        return;
    const char *state = r && !io->timed_out ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* No SQLSTATE (connection lost, timed out, out of memory) classifies
     * as transient: the batch is retried. */
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", state ? state : "");
    /* A server error has a SQLSTATE; one libpq made up (connection lost)
     * has not, and the first message of the loss says it best. */
    if (!state || !PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY))
        pgconn_io_error(io, NULL, e->message, sizeof e->message);
    else
        snprintf(e->message, sizeof e->message, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    e->have = 1;
}

/* Reads results until NULL, keeping the first error. Returns the number of
 * rows the last command-ok result reports, or -1 if an error was seen. */
static long long drain_results(pgconn_io *io, step_error *e)
{
    PGresult *r;
    long long rows = 0;
    int failed = 0;
    while ((r = pgconn_io_result(io)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COMMAND_OK) {
            rows = strtoll(PQcmdTuples(r), NULL, 10);
        } else {
            step_error_take(e, r, io);
            failed = 1;
        }
        PQclear(r);
        /* A dead connection can keep answering with errors, and a COPY that
         * libpq still considers open answers PGRES_COPY_IN forever: stop.
         * The caller then finds the connection unusable and drops it. */
        if (PQstatus(io->conn) != CONNECTION_OK || s == PGRES_COPY_IN ||
            s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH)
            break;
    }
    return failed ? -1 : rows;
}

/* A savepoint probe (pgw_probe_fn) on the live transaction of txn_copy. */
typedef struct probe_ctx {
    pgw *w;
    pgw_stats *st;
    step_error *e;      /* the non-data error that ends the search */
    int aborted;        /* the last statement failed: roll back to the savepoint */
    long long inserted; /* rows the kept probes inserted */
} probe_ctx;

/* One round trip, one simple query: undo the failed probe (ROLLBACK TO,
 * which keeps the savepoint) or keep the good one (RELEASE, then a fresh
 * SAVEPOINT), INSERT the range and, if asked, COMMIT. A simple query stops
 * at its first error, so a failing INSERT skips the COMMIT and leaves the
 * transaction open in its failed subtransaction. The range bounds are our
 * own integers, not event data: the rows are already staged. */
static int stage_probe(void *arg, size_t lo, size_t hi, int commit, char sqlstate[6],
                       char *message, size_t msglen)
{
    probe_ctx *p = arg;
    PGconn *conn = p->w->conn;
    pgconn_io *io = &p->w->io;
    char sql[sizeof pgw_insert_stage_sql + 192];
    const char *undo = p->aborted ? "ROLLBACK TO SAVEPOINT " PGW_SAVEPOINT "; "
                                  : "RELEASE SAVEPOINT " PGW_SAVEPOINT "; SAVEPOINT " PGW_SAVEPOINT "; ";
    step_error pe = {0};
    PGresult *r;
    long long rows = 0;
    int failed = 0, committed = 0;

    if (lo == hi)
        snprintf(sql, sizeof sql, "%sCOMMIT", p->aborted ? undo : "");
    else
        snprintf(sql, sizeof sql, "%s%s WHERE n >= %zu AND n < %zu%s%s", undo,
                 PGW_INSERT_STAGE_HEAD, lo, hi, PGW_INSERT_STAGE_TAIL, commit ? "; COMMIT" : "");
    p->st->round_trips++;
    if (PQsendQuery(conn, sql) != 1) {
        step_error_take(p->e, NULL, io);
        return -1;
    }
    (void)pgconn_io_flush(io); /* a failed send shows in the results */
    while ((r = pgconn_io_result(io)) != NULL) {
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            const char *tag = PQcmdStatus(r);
            if (strncmp(tag, "INSERT", 6) == 0)
                rows = strtoll(PQcmdTuples(r), NULL, 10);
            /* COMMIT of a failed transaction answers ROLLBACK, not an error. */
            committed = strcmp(tag, "COMMIT") == 0;
        } else {
            step_error_take(&pe, r, io);
            failed = 1;
        }
        PQclear(r);
        if (PQstatus(conn) != CONNECTION_OK)
            break;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        step_error_take(p->e, NULL, io);
        return -1;
    }
    if (failed) {
        /* A data error counts only if the transaction is still there to
         * go on with (the INSERT failed, not the COMMIT). */
        if (lo < hi && pgw_classify(pe.sqlstate) == PGW_CLASS_DATA &&
            PQtransactionStatus(conn) == PQTRANS_INERROR) {
            p->aborted = 1;
            memcpy(sqlstate, pe.sqlstate, 6);
            snprintf(message, msglen, "%s", pe.message);
            return 1;
        }
        if (!p->e->have)
            *p->e = pe;
        return -1;
    }
    if (commit && !committed) {
        snprintf(p->e->message, sizeof p->e->message, "COMMIT after isolating bad rows rolled back");
        p->e->have = 1;
        return -1;
    }
    p->aborted = 0;
    p->inserted += rows;
    return 0;
}

/* COPY [lo, hi) into auditq_stage (n = the row's index in jobs), then
 * SAVEPOINT, INSERT ... SELECT and COMMIT. A data error in the INSERT is
 * isolated in this same transaction by pgw_isolate, marking the bad rows
 * in res. Returns rows inserted (committed), or -1 with e filled (a data
 * error in e comes from the COPY itself). */
static long long txn_copy(pgw *w, const aq_job *jobs, size_t lo, size_t hi,
                          pgw_row_result *res, pgw_stats *st, step_error *e)
{
    PGconn *conn = w->conn;
    pgconn_io *io = &w->io;
    PGresult *r;
    long long inserted = -1;
    int copy_ok = 1;

    st->round_trips++;
    r = pgconn_io_exec(io, w->cfg->pg_sync_fence ? pgw_begin_copy_fenced_sql : pgw_begin_copy_sql, 0, NULL);

    if (PQresultStatus(r) != PGRES_COPY_IN) {
        step_error_take(e, r, io);
        PQclear(r);
        /* If BEGIN was followed by a failing COPY, every result was read. */
        return -1;
    }
    PQclear(r);

    w->buf.len = 0;
    for (size_t i = lo; i < hi && copy_ok; i++) {
        if (pgw_copy_row(&w->buf, &jobs[i], i) < 0) {
            copy_ok = 0;
            break;
        }
        if (w->buf.len >= PGW_COPY_CHUNK || i + 1 == hi) {
            if (pgconn_io_put_copy(io, w->buf.data, w->buf.len, NULL) != 0)
                copy_ok = 0;
            w->buf.len = 0;
        }
    }
    /* Always end the COPY -- with an error message if we could not send all
     * rows, which makes the server fail it -- so libpq leaves COPY_IN state. */
    if (pgconn_io_put_copy(io, NULL, 0, copy_ok ? NULL : "auditq: could not send COPY data") != 0)
        copy_ok = 0;
    st->round_trips++;
    (void)pgconn_io_flush(io);
    if (drain_results(io, e) < 0 || !copy_ok) {
        if (!e->have) {
            /* Local OOM has no SQLSTATE: "" classifies as transient. */
            step_error_take(e, NULL, io);
        }
        return -1;
    }

    /* SAVEPOINT, INSERT and COMMIT in one round trip. If the INSERT fails
     * the pipeline skips the COMMIT (PGRES_PIPELINE_ABORTED) and the
     * transaction stays open in its failed subtransaction: a data error is
     * then isolated below, anything else left for the caller's ROLLBACK.
     * The savepoint is what lets the staged rows be used again. If the
     * connection
     * fails or stalls after the COMMIT went out, its outcome is unknown:
     * that is a transient error like any other, and the retry is harmless
     * (ON CONFLICT DO NOTHING) whether or not it committed. */
    if (PQenterPipelineMode(conn) != 1) {
        step_error_take(e, NULL, io);
        return -1;
    }
    st->round_trips++;
    if (PQsendQueryParams(conn, pgw_savepoint_sql, 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQsendQueryPrepared(conn, PGW_STMT_STAGE, 0, NULL, NULL, NULL, 0) != 1 ||
        PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQpipelineSync(conn) != 1) {
        step_error_take(e, NULL, io);
        PQexitPipelineMode(conn);
        return -1;
    }
    (void)pgconn_io_flush(io); /* a failed send shows in the results */
    int synced = 0;
    int step = 0;   /* 0: SAVEPOINT result, 1: INSERT, 2: COMMIT */
    int failed = 0;
    while (!synced) {
        r = pgconn_io_result(io);
        if (!r) {
            /* NULL separates the results of pipelined queries. */
            if (PQstatus(conn) != CONNECTION_OK) {
                step_error_take(e, NULL, io);
                failed = 1;
                break;
            }
            /* Three queries, so at most three separators before the Sync. */
            if (++step > 3) {
                step_error_take(e, NULL, io);
                failed = 1;
                break;
            }
            continue;
        }
        switch (PQresultStatus(r)) {
        case PGRES_PIPELINE_SYNC:
            synced = 1;
            break;
        case PGRES_COMMAND_OK:
            if (step == 1)
                inserted = strtoll(PQcmdTuples(r), NULL, 10);
            break;
        case PGRES_PIPELINE_ABORTED:
            failed = 1;
            break;
        default:
            step_error_take(e, r, io);
            failed = 1;
            break;
        }
        PQclear(r);
        if (!synced && PQstatus(conn) != CONNECTION_OK) {
            step_error_take(e, NULL, io);
            failed = 1;
            break;
        }
    }
    if (PQexitPipelineMode(conn) != 1) {
        /* Results still pending: the connection is in an unknown state. */
        step_error_take(e, NULL, io);
        pgw_disconnect(w);
        return -1;
    }
    if (!failed)
        return inserted;
    if (pgw_classify(e->sqlstate) != PGW_CLASS_DATA || PQstatus(conn) != CONNECTION_OK ||
        PQtransactionStatus(conn) != PQTRANS_INERROR)
        return -1;

    /* A row the INSERT refuses: find it (and any other) with savepoint
     * probes in this transaction, on the rows already staged. */
    step_error first = *e;
    probe_ctx p = { w, st, e, 1, 0 };
    memset(e, 0, sizeof *e);
    if (pgw_isolate(&p, stage_probe, lo, hi, first.sqlstate, first.message, res, st) != PGW_DONE) {
        /* Nothing of this transaction commits: whoever writes these rows
         * next (a retry, or pgw_bisect on a part) marks them afresh. */
        memset(res + lo, 0, (hi - lo) * sizeof *res);
        if (!e->have)
            step_error_take(e, NULL, io);
        return -1;
    }
    return p.inserted;
}

/* INSERT ... FROM unnest(17 arrays) for [lo, hi) as one implicit
 * transaction. Returns rows inserted, or -1 with e filled. */
static long long txn_insert(pgw *w, const aq_job *jobs, size_t lo, size_t hi, step_error *e)
{
    size_t off[PGW_NPARAMS];
    const char *params[PGW_NPARAMS];
    aq_buf *b = &w->buf;
    char id[37];
    char ts[24];

    /* A text parameter is NUL-terminated, so a NUL byte would silently cut
     * the array literal. The codec never lets one through; if one gets here
     * anyway, fail the range as the data error COPY would give. */
    for (size_t i = lo; i < hi; i++) {
        for (int f = AUDITQ_TENANT_ID; f <= AUDITQ_METADATA; f++) {
            const aq_str *s = &jobs[i].f[f];
            if (s->p && memchr(s->p, '\0', s->len)) {
                snprintf(e->sqlstate, sizeof e->sqlstate, "22021");
                snprintf(e->message, sizeof e->message,
                         "invalid byte sequence for encoding \"UTF8\": 0x00");
                e->have = 1;
                return -1;
            }
        }
    }

    b->len = 0;
    for (int c = 0; c < PGW_NPARAMS; c++) {
        off[c] = b->len;
        if (aq_buf_append(b, "{", 1) < 0)
            goto oom;
        for (size_t i = lo; i < hi; i++) {
            const aq_job *j = &jobs[i];
            int rc;
            if (i > lo && aq_buf_append(b, ",", 1) < 0)
                goto oom;
            if (c == 0) {
                uuid_format(j->id, id);
                rc = aq_buf_append(b, id, 36);
            } else if (c == 1) {
                int n = snprintf(ts, sizeof ts, "%" PRId64, j->occurred_at_us);
                rc = aq_buf_append(b, ts, (size_t)n);
            } else if (c == 2) {
                const char *prio = codec_priority_name(j->priority);
                rc = pgw_array_elem(b, prio, prio ? strlen(prio) : 0);
            } else if (c == PGW_NPARAMS - 1) {
                const char *flag = clockskew_name(j->clock_flag);
                rc = pgw_array_elem(b, flag, flag ? strlen(flag) : 0);
            } else {
                const aq_str *s = &j->f[AUDITQ_TENANT_ID + (c - 3)];
                rc = pgw_array_elem(b, s->p, s->len);
            }
            if (rc < 0)
                goto oom;
        }
        if (aq_buf_append(b, "}", 2) < 0)   /* with the NUL terminator */
            goto oom;
    }
    for (int c = 0; c < PGW_NPARAMS; c++)
        params[c] = b->data + off[c];

    PGresult *r = PQsendQueryPrepared(w->conn, PGW_STMT_ARRAYS, PGW_NPARAMS, params, NULL, NULL, 0)
                      ? pgconn_io_collect(&w->io) : NULL;
    long long inserted = -1;
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        inserted = strtoll(PQcmdTuples(r), NULL, 10);
    else
        step_error_take(e, r, &w->io);
    PQclear(r);
    return inserted;
oom:
    /* "" classifies as transient: memory may be back on the next try. */
    e->sqlstate[0] = '\0';
    snprintf(e->message, sizeof e->message, "out of memory building INSERT parameters");
    e->have = 1;
    return -1;
}

/* pgw_try_fn for pgw_write: one real transaction for [lo, hi). */
static int write_try(void *arg, size_t lo, size_t hi, char sqlstate[6],
                     char *message, size_t msglen)
{
    write_ctx *c = arg;
    pgw *w = c->w;
    step_error e = {0};
    long long inserted;

    if (!pgw_connected(w)) {
        if (pgw_connect(w, c->err, c->errlen) < 0)
            return -1;
    }
    w->syncrep_canceled = 0;
    if (PQtransactionStatus(w->conn) != PQTRANS_IDLE &&
        (c->st->round_trips++,
         exec_ok_f(&w->io, "ROLLBACK", "rollback", c->err, c->errlen, &w->fault) < 0)) {
        pgw_disconnect(w);
        return -1;
    }

    if (w->cfg->write_method == WRITE_INSERT) {
        c->st->round_trips++;
        inserted = txn_insert(w, c->jobs, lo, hi, &e);
    } else {
        inserted = txn_copy(w, c->jobs, lo, hi, c->res, c->st, &e);
    }

    if (inserted >= 0 && w->syncrep_canceled) {
        /* Committed here, not confirmed by the synchronous standby: this
         * server may be an old primary cut off from it. Not written: the
         * connection is dropped and the batch retried (fenced, so the
         * retry waits for a standby too). */
        w->syncrep_canceled = 0;
        w->fault = PGW_FAULT_SERVER;
        snprintf(c->err, c->errlen, "PostgreSQL canceled the commit's wait for the synchronous standby: the "
                 "batch is committed on this server only (an old primary cut off from its standby?); not "
                 "counted as written, retried");
        pgw_disconnect(w);
        return -1;
    }
    if (inserted >= 0) {
        size_t good = hi - lo;
        for (size_t i = lo; i < hi; i++)
            good -= (size_t)(c->res[i].bad != 0);
        c->st->rows_written += good;
        c->st->rows_inserted += (uint64_t)inserted;
        return 0;
    }

    /* Failed: leave the connection idle, or drop it. */
    w->fault = pgw_fault_of(e.sqlstate, w->io.timed_out);
    if (PQstatus(w->conn) != CONNECTION_OK) {
        snprintf(c->err, c->errlen, "connection lost: %s", e.message);
        pgw_disconnect(w);
        return -1;
    }
    if (PQtransactionStatus(w->conn) != PQTRANS_IDLE) {
        char rerr[256];
        c->st->round_trips++;
        if (exec_ok(&w->io, "ROLLBACK", "rollback", rerr, sizeof rerr) < 0) {
            snprintf(c->err, c->errlen, "%s %s (then %s)",
                     e.sqlstate[0] ? e.sqlstate : "-----", e.message, rerr);
            if (w->io.timed_out)
                w->fault = PGW_FAULT_STALLED;
            pgw_disconnect(w);
            return -1;
        }
    }
    if (pgw_classify(e.sqlstate) == PGW_CLASS_DATA) {
        memcpy(sqlstate, e.sqlstate, 6);
        snprintf(message, msglen, "%s", e.message);
        return 1;
    }
    snprintf(c->err, c->errlen, "%s %s", e.sqlstate[0] ? e.sqlstate : "-----", e.message);
    return -1;
}

int pgw_write(pgw *w, const aq_job *jobs, size_t n, pgw_row_result *res,
              pgw_stats *st, char *err, size_t errlen)
{
    pgw_stats local = {0};
    write_ctx c = { w, jobs, res, st ? st : &local, err, errlen };

    if (errlen > 0)
        err[0] = '\0';
    if (!pgw_connected(w) && pgw_connect(w, err, errlen) < 0) {
        for (size_t i = 0; i < n; i++)
            memset(&res[i], 0, sizeof res[i]);
        return PGW_RETRY;
    }
    int rc = pgw_bisect(&c, write_try, n, res, c.st);
    if (rc == PGW_DONE)
        w->fault = PGW_FAULT_NONE;
    return rc;
}

