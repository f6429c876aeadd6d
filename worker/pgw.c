/* pgw.c -- the PostgreSQL writer (see pgw.h for the contract).
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
 * Bounded waits. statement_timeout only bounds what the server does; a
 * stalled network (or a frozen server, or a half-open connection) would
 * leave a blocking libpq call waiting forever -- TCP keepalives do not fire
 * while a peer or a middlebox still acknowledges packets. So the connection
 * is non-blocking and every wait goes through poll() on PQsocket with
 * cfg->pg_timeout_ms: sending (PQflush, COPY data) and reading each result.
 * When PostgreSQL neither takes nor sends a byte for that long, the socket is
 * shut down: libpq then reports the connection lost through its ordinary
 * path, the batch is retried, and the error names the timeout. A COMMIT
 * whose answer never came may or may not have committed; retrying it is
 * safe (ON CONFLICT DO NOTHING), so it is never treated as a data error.
 * Connecting is bounded by connect_timeout (pg_connect_timeout_s) and
 * tcp_user_timeout (pg_timeout_ms) covers sends the kernel cannot deliver.
 */
#include "pgw.h"
#include "pgw_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libpq-fe.h>

#include "clock.h"
#include "clockskew.h"
#include "uuid7.h"

/* PQputCopyData chunk: large enough that per-call overhead vanishes, small
 * enough that a big batch never needs one huge allocation. */
#define PGW_COPY_CHUNK (256u * 1024u)

struct pgw {
    const aq_config *cfg;
    PGconn *conn;      /* NULL when disconnected */
    pgw_io io;         /* conn's waits: io.conn == conn */
    aq_buf buf;        /* COPY chunk / array literals; reused across batches */
    pgw_fault fault;   /* why the last connect, probe or write failed */
    char role[64];     /* the role the last connect attempt used */
};

static void flatten_msg(char *dst, size_t dstlen, const char *src);

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
static const char pgw_insert_arrays_sql[] =
    "INSERT INTO audit_events (" PGW_TARGET_COLS ") "
    "SELECT u.event_id, timestamptz 'epoch' + (u.ts / 1000000) * interval '1 second' + (u.ts % 1000000) * interval '1 microsecond', "
    "u.priority, u.tenant_id, u.actor_id, u.actor_type, u.action, u.entity_type, "
    "u.entity_id, u.outcome, u.source_ip, u.user_agent, u.request_id, "
    "u.session_id, u.changes::jsonb, u.metadata::jsonb, u.clock_flag "
    "FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], "
    "$12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) "
    "AS u(event_id, ts, priority, " PGW_TEXT_COLS ", changes, metadata, clock_flag) "
    "ON CONFLICT DO NOTHING";

/* ---- buffers and encoders ------------------------------------------------ */

/* 1 for the bytes COPY text format must escape. */
static const unsigned char copy_special[256] = {
    ['\0'] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\\'] = 1,
};

int pgw_copy_field(aq_buf *b, const char *p, size_t len)
{
    if (!p)
        return aq_buf_append(b, "\\N", 2);
    /* Worst case: every byte becomes a 4-byte \000. */
    if (len > SIZE_MAX / 4 || aq_buf_reserve(b, len * 4) < 0)
        return -1;
    char *o = b->data + b->len;
    size_t i = 0;
    while (i < len) {
        /* Copy the run of ordinary bytes in one go (most fields have no
         * special byte at all), then escape one byte. */
        size_t run = i;
        while (run < len && !copy_special[(unsigned char)p[run]])
            run++;
        memcpy(o, p + i, run - i);
        o += run - i;
        if (run == len)
            break;
        switch (p[run]) {
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        default: memcpy(o, "\\000", 4); o += 4; break;  /* NUL */
        }
        i = run + 1;
    }
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Decimal digits of v (any int64) into out; returns the length. */
static size_t fmt_i64(int64_t v, char out[24])
{
    char tmp[24];
    size_t n = 0, o = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[o++] = '-';
    while (n)
        out[o++] = tmp[--n];
    return o;
}

int pgw_copy_row(aq_buf *b, const aq_job *j, size_t n)
{
    char id[37];
    char ts[24];
    char num[24];
    const char *prio = codec_priority_name(j->priority);

    uuid_format(j->id, id);
    size_t numlen = fmt_i64((int64_t)n, num);
    size_t tslen = fmt_i64(j->occurred_at_us, ts);
    if (aq_buf_append(b, num, numlen) < 0 || aq_buf_append(b, "\t", 1) < 0 ||
        aq_buf_append(b, id, 36) < 0 || aq_buf_append(b, "\t", 1) < 0 ||
        aq_buf_append(b, ts, tslen) < 0 || aq_buf_append(b, "\t", 1) < 0)
        return -1;
    /* An out-of-range priority is sent as NULL so that the NOT NULL
     * constraint rejects that row (a data error), not the whole batch. */
    if (pgw_copy_field(b, prio, prio ? strlen(prio) : 0) < 0)
        return -1;
    for (int f = AUDITQ_TENANT_ID; f <= AUDITQ_METADATA; f++) {
        if (aq_buf_append(b, "\t", 1) < 0 ||
            pgw_copy_field(b, j->f[f].p, j->f[f].len) < 0)
            return -1;
    }
    /* clock_flag: NULL for a plain event (worker/clockskew.h). */
    const char *flag = clockskew_name(j->clock_flag);
    if (aq_buf_append(b, "\t", 1) < 0 || pgw_copy_field(b, flag, flag ? strlen(flag) : 0) < 0)
        return -1;
    return aq_buf_append(b, "\n", 1);
}

int pgw_array_elem(aq_buf *b, const char *p, size_t len)
{
    if (!p)
        return aq_buf_append(b, "NULL", 4);
    if (len > SIZE_MAX / 2 - 2 || aq_buf_reserve(b, len * 2 + 2) < 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '"' || p[i] == '\\')
            *o++ = '\\';
        *o++ = p[i];
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* ---- classification ------------------------------------------------------ */

pgw_class pgw_classify(const char *sqlstate)
{
    if (!sqlstate || strlen(sqlstate) < 2)
        return PGW_CLASS_TRANSIENT;
    /* 22 data exception, 23 integrity constraint violation, 54 program limit
     * exceeded (e.g. index row too large): the row's content is at fault and
     * retrying it unchanged cannot help. Everything else -- connection (08),
     * serialization/deadlock (40), resources (53), locks (55), operator
     * intervention and statement timeout (57), system (58), missing table or
     * privilege (42), internal (XX) -- is a server or operator condition
     * that a later retry of the same rows can get past. */
    if ((sqlstate[0] == '2' && (sqlstate[1] == '2' || sqlstate[1] == '3')) ||
        (sqlstate[0] == '5' && sqlstate[1] == '4'))
        return PGW_CLASS_DATA;
    return PGW_CLASS_TRANSIENT;
}

pgw_fault pgw_fault_of(const char *sqlstate, int timed_out)
{
    if (timed_out)
        return PGW_FAULT_STALLED;
    if (!sqlstate || !sqlstate[0])
        return PGW_FAULT_UNREACHABLE;
    if (strcmp(sqlstate, "28P01") == 0 || strcmp(sqlstate, "28000") == 0)
        return PGW_FAULT_LOGIN;
    if (strcmp(sqlstate, "3D000") == 0)
        return PGW_FAULT_DATABASE;
    if (strcmp(sqlstate, "42501") == 0)
        return PGW_FAULT_PRIVILEGE;
    if (strcmp(sqlstate, "42P01") == 0)
        return PGW_FAULT_TABLE;
    /* 08 connection exception; 57P01..57P03: the server (or an operator's
     * pg_terminate_backend) ended the session, or it is starting up. */
    if (strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
        strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0)
        return PGW_FAULT_UNREACHABLE;
    return PGW_FAULT_SERVER;
}

const char *pgw_fault_name(pgw_fault f)
{
    static const char *const names[PGW_FAULT_COUNT] = {
        "", "unreachable", "stalled", "login refused", "database missing",
        "privilege missing", "table missing", "server error",
    };
    return f >= 0 && f < PGW_FAULT_COUNT ? names[f] : "";
}

int pgw_fault_is_config(pgw_fault f)
{
    return f == PGW_FAULT_LOGIN || f == PGW_FAULT_DATABASE || f == PGW_FAULT_PRIVILEGE ||
           f == PGW_FAULT_TABLE;
}

const char *pgw_fault_fix(pgw_fault f, const char *role, char *buf, size_t n)
{
    const char *r = role && role[0] ? role : "ROLE";
    switch (f) {
    case PGW_FAULT_LOGIN:
        snprintf(buf, n, "fix the user or password in database_url, or the role or pg_hba.conf on the "
                         "server (docs/SECURITY.md)");
        break;
    case PGW_FAULT_DATABASE:
        snprintf(buf, n, "fix the database name in database_url, or create the database and run "
                         "'auditqctl migrate'");
        break;
    case PGW_FAULT_PRIVILEGE:
        snprintf(buf, n, "as the owner of audit_events run 'auditqctl grants --writer %s' (INSERT on "
                         "audit_events, TEMPORARY on the database; docs/SECURITY.md)", r);
        break;
    case PGW_FAULT_TABLE:
        snprintf(buf, n, "run 'auditqctl migrate' against this database_url");
        break;
    default:
        snprintf(buf, n, "%s", "");
        break;
    }
    return buf;
}

const char *pgw_explain(pgw_fault f, const char *role, const char *err, char *buf, size_t n)
{
    char fix[300];
    if (!pgw_fault_is_config(f))
        snprintf(buf, n, "%s", err);
    else
        snprintf(buf, n, "%s; %s", err, pgw_fault_fix(f, role, fix, sizeof fix));
    return buf;
}

static int sqlstate_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

void pgw_conn_message(const char *verbose, char sqlstate[6], char *out, size_t n)
{
    char tmp[1024];
    size_t o = 0;
    const char *p = verbose ? verbose : "";

    sqlstate[0] = '\0';
    /* PQERRORS_VERBOSE writes "SEVERITY:  XXXXX: message" and, on a line
     * of its own, "LOCATION:  function, file:line". Every attempt libpq
     * made (each host, address, SSL or not) adds its own message. */
    while (*p && o + 1 < sizeof tmp) {
        if (p[0] == ':' && p[1] == ' ' && p[2] == ' ' && sqlstate_char(p[3]) && sqlstate_char(p[4]) &&
            sqlstate_char(p[5]) && sqlstate_char(p[6]) && sqlstate_char(p[7]) && p[8] == ':' &&
            p[9] == ' ') {
            if (!sqlstate[0]) {
                memcpy(sqlstate, p + 3, 5);
                sqlstate[5] = '\0';
            }
            tmp[o++] = ':';
            if (o + 1 < sizeof tmp)
                tmp[o++] = ' ';
            p += 10;
            continue;
        }
        if (strncmp(p, "LOCATION:", 9) == 0 && (p == verbose || p[-1] == '\n')) {
            p += strcspn(p, "\n");
            continue;
        }
        tmp[o++] = *p++;
    }
    tmp[o] = '\0';
    flatten_msg(out, n, tmp);
}

pgw_step pgw_hold_next(const pgw_hold *h, int64_t now_us, int64_t *wait_us)
{
    int64_t release_due = h->failing_since_us + (int64_t)h->release_after_ms * 1000;
    int64_t next;

    if (h->stopping)
        release_due = now_us;
    if (release_due < h->release_at_us)
        release_due = h->release_at_us;
    if (now_us >= release_due) {
        *wait_us = 0;
        return PGW_STEP_RELEASE;
    }
    if (now_us >= h->retry_at_us) {
        *wait_us = 0;
        return PGW_STEP_RETRY;
    }
    next = h->retry_at_us < release_due ? h->retry_at_us : release_due;
    if (!h->connected) {
        int64_t probe_due = h->probe_us + (int64_t)PGW_PROBE_MS * 1000;
        if (now_us >= probe_due) {
            *wait_us = 0;
            return PGW_STEP_PROBE;
        }
        if (probe_due < next)
            next = probe_due;
    }
    *wait_us = next - now_us;
    return PGW_STEP_WAIT;
}

/* ---- bisection ----------------------------------------------------------- */

typedef struct bisect_ctx {
    void *ctx;
    pgw_try_fn try_fn;
    pgw_row_result *res;
    pgw_stats *st;
} bisect_ctx;

enum { RANGE_RETRY = -1, RANGE_CLEAN = 0, RANGE_SPLIT = 1 };

/* Writes [lo, hi). known_bad: the caller has already proven this range holds
 * a bad row (its parent failed and its left sibling committed cleanly), so a
 * multi-row range is split without spending a transaction on it. A single
 * row is always tried: that is where the error message comes from, and an
 * error that does not reproduce just means the row commits. Returns
 * RANGE_CLEAN (committed in one transaction), RANGE_SPLIT (rows committed or
 * marked bad across several) or RANGE_RETRY (transient error). Recursion
 * depth is log2(hi - lo). */
static int bisect_range(bisect_ctx *b, size_t lo, size_t hi, int known_bad)
{
    if (!known_bad || hi - lo == 1) {
        char sqlstate[6] = "";
        char message[sizeof b->res[0].message] = "";

        b->st->transactions++;
        int rc = b->try_fn(b->ctx, lo, hi, sqlstate, message, sizeof message);
        if (rc == 0)
            return RANGE_CLEAN;
        if (rc < 0)
            return RANGE_RETRY;
        if (hi - lo == 1) {
            pgw_row_result *r = &b->res[lo];
            r->bad = 1;
            sqlstate[5] = '\0';
            message[sizeof message - 1] = '\0';
            memcpy(r->sqlstate, sqlstate, sizeof r->sqlstate);
            memcpy(r->message, message, sizeof r->message);
            return RANGE_SPLIT;
        }
    }
    b->st->bisections++;
    size_t mid = lo + (hi - lo) / 2;
    int left = bisect_range(b, lo, mid, 0);
    if (left == RANGE_RETRY)
        return RANGE_RETRY;
    if (bisect_range(b, mid, hi, left == RANGE_CLEAN) == RANGE_RETRY)
        return RANGE_RETRY;
    return RANGE_SPLIT;
}

int pgw_bisect(void *ctx, pgw_try_fn try_fn, size_t n, pgw_row_result *res, pgw_stats *st)
{
    pgw_stats local = {0};
    bisect_ctx b = { ctx, try_fn, res, st ? st : &local };

    for (size_t i = 0; i < n; i++)
        memset(&res[i], 0, sizeof res[i]);
    if (n == 0)
        return PGW_DONE;
    return bisect_range(&b, 0, n, 0) == RANGE_RETRY ? PGW_RETRY : PGW_DONE;
}

/* ---- isolation inside one transaction ------------------------------------ */

static void mark_bad(pgw_row_result *r, const char *sqlstate, const char *message)
{
    r->bad = 1;
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate);
    snprintf(r->message, sizeof r->message, "%s", message);
}

int pgw_isolate(void *ctx, pgw_probe_fn probe, size_t lo, size_t hi, const char *sqlstate,
                const char *message, pgw_row_result *res, pgw_stats *st)
{
    pgw_stats local = {0};
    char state[6], msg[sizeof res[0].message];

    if (!st)
        st = &local;
    snprintf(state, sizeof state, "%s", sqlstate);
    snprintf(msg, sizeof msg, "%s", message);
    /* Invariant: rows before lo are inserted or marked; [lo, hi) is
     * uninserted and its first bad row raised state/msg. */
    for (;;) {
        size_t l = lo, h = hi;
        char s2[6], m2[sizeof msg];
        int rc;

        /* Halve [l, h) down to the first bad row. Whatever succeeds is
         * kept, so everything before l stays inserted. */
        while (h - l > 1) {
            size_t mid = l + (h - l) / 2;
            s2[0] = m2[0] = '\0';
            st->bisections++;
            rc = probe(ctx, l, mid, 0, s2, m2, sizeof m2);
            if (rc < 0)
                return PGW_RETRY;
            if (rc == 0) {
                l = mid;
            } else {
                h = mid;
                memcpy(state, s2, sizeof state);
                state[5] = '\0';
                memcpy(msg, m2, sizeof msg);
                msg[sizeof msg - 1] = '\0';
            }
        }
        /* [l, l + 1) is the last range that failed with rows [lo, l)
         * inserted: row l raised the error. */
        mark_bad(&res[l], state, msg);
        lo = l + 1;
        /* Everything after it at once, committing if it goes in: with one
         * bad row this is the last round trip. */
        s2[0] = m2[0] = '\0';
        if (lo < hi)
            st->bisections++;
        rc = probe(ctx, lo, hi, 1, s2, m2, sizeof m2);
        if (rc == 0)
            return PGW_DONE;
        if (rc < 0 || lo == hi)  /* a bare COMMIT has no row to blame */
            return PGW_RETRY;
        memcpy(state, s2, sizeof state);
        state[5] = '\0';
        memcpy(msg, m2, sizeof msg);
        msg[sizeof msg - 1] = '\0';
    }
}

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

/* Copies src into dst (always NUL-terminated) with every run of spaces,
 * tabs and newlines turned into one space and none at either end: libpq's
 * connection messages span several lines and go into one-line logs. */
static void flatten_msg(char *dst, size_t dstlen, const char *src)
{
    size_t o = 0;
    int space = 0;
    if (dstlen == 0)
        return;
    for (; *src && o + 1 < dstlen; src++) {
        if (*src == ' ' || *src == '\t' || *src == '\n' || *src == '\r') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < dstlen)
            dst[o++] = ' ';
        space = 0;
        dst[o++] = *src;
    }
    dst[o] = '\0';
}

/* Formats libpq's connection-level message as "what: message". */
static void conn_error(PGconn *conn, const char *what, char *err, size_t errlen)
{
    char m[256];
    flatten_msg(m, sizeof m, conn ? PQerrorMessage(conn) : "out of memory");
    snprintf(err, errlen, "%s: %s", what, m);
}

/* ---- bounded waits ------------------------------------------------------- */

int pgw_io_init(pgw_io *io, PGconn *conn, int timeout_ms)
{
    io->conn = conn;
    io->timeout_ms = timeout_ms;
    io->timed_out = 0;
    io->lost[0] = '\0';
    return PQsetnonblocking(conn, 1) == 0 ? 0 : -1;
}

/* Keeps libpq's message from the moment the connection failed: libpq
 * appends to it on every later call ("connection not open", "invalid
 * socket"), which would only bury the cause. */
static void io_note_lost(pgw_io *io)
{
    if (!io->lost[0] && PQstatus(io->conn) == CONNECTION_BAD)
        flatten_msg(io->lost, sizeof io->lost, PQerrorMessage(io->conn));
}

/* Ends the connection from our side: shutting the socket down (libpq still
 * owns and closes the descriptor) makes the read below see end-of-file, so
 * libpq marks the connection bad and every later call fails at once
 * through its ordinary error path instead of waiting. */
static void io_kill(pgw_io *io)
{
    int fd = PQsocket(io->conn);
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);
    (void)PQconsumeInput(io->conn);
    io_note_lost(io);
}

enum { IO_TIMEOUT_READ = 1, IO_TIMEOUT_SEND = 2 };

/* Waits until the socket is ready for events, for at most io->timeout_ms.
 * Returns the revents (> 0); 0 when the time ran out (the connection is
 * then killed and io->timed_out set); -1 on a poll error (killed too). */
static int io_wait(pgw_io *io, short events)
{
    int fd = PQsocket(io->conn);
    int64_t deadline = io->timeout_ms > 0 ? clock_mono_us() + (int64_t)io->timeout_ms * 1000 : 0;

    while (fd >= 0) {
        struct pollfd p = { .fd = fd, .events = events };
        int ms = -1;
        if (deadline) {
            int64_t left = deadline - clock_mono_us();
            if (left <= 0) {
                io->timed_out = (events & POLLOUT) ? IO_TIMEOUT_SEND : IO_TIMEOUT_READ;
                io_kill(io);
                return 0;
            }
            ms = (int)((left + 999) / 1000);
        }
        int n = poll(&p, 1, ms);
        if (n > 0)
            return p.revents;
        if (n < 0 && errno != EINTR)
            break;
    }
    io_kill(io);
    return -1;
}

/* Sends everything libpq holds for the server. 0, or -1 if the connection
 * failed or stalled (the error then shows in the next result). */
static int io_flush(pgw_io *io)
{
    int r;
    while ((r = PQflush(io->conn)) == 1) {
        int ev = io_wait(io, POLLIN | POLLOUT);
        if (ev <= 0)
            return -1;
        /* Read what the server sends meanwhile (an error, a notice), or both
         * sides could end up waiting on full buffers. */
        if ((ev & POLLIN) && !PQconsumeInput(io->conn)) {
            io_note_lost(io);
            return -1;
        }
    }
    io_note_lost(io);
    return r;
}

/* PQgetResult without the unbounded wait: NULL when the current query has
 * no more results. PQgetResult itself blocks only while PQisBusy, and
 * PQisBusy is false once the connection is bad. */
static PGresult *io_result(pgw_io *io)
{
    PGconn *c = io->conn;
    while (PQisBusy(c)) {
        int unsent = PQflush(c) == 1;
        int ev = io_wait(io, (short)(POLLIN | (unsent ? POLLOUT : 0)));
        if (ev > 0 && ((ev & POLLIN) == 0 || PQconsumeInput(c)))
            continue;
        io_note_lost(io);
        if (ev > 0)
            io_kill(io); /* PQconsumeInput failed: make sure libpq gave up */
    }
    return PQgetResult(c);
}

/* PQputCopyData / PQputCopyEnd (end: data == NULL, errmsg) on a
 * non-blocking connection: 0 means "buffers full, flush and call again". */
static int io_put_copy(pgw_io *io, const char *data, size_t len, const char *errmsg)
{
    for (;;) {
        int r = data ? PQputCopyData(io->conn, data, (int)len) : PQputCopyEnd(io->conn, errmsg);
        if (r != 0)
            return r == 1 ? 0 : -1;
        if (io_flush(io) < 0)
            return -1;
    }
}

static int is_error(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_BAD_RESPONSE || s == PGRES_FATAL_ERROR || s == PGRES_PIPELINE_ABORTED;
}

/* After a PQsend*: sends it and reads every result; returns the first
 * error result, else the last result (NULL if none came). Stops at a COPY
 * state, as PQexec does. */
static PGresult *io_collect(pgw_io *io)
{
    PGresult *keep = NULL, *r;

    (void)io_flush(io); /* a failed send shows in the results */
    while ((r = io_result(io)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (keep && is_error(keep)) {
            PQclear(r);
        } else {
            PQclear(keep);
            keep = r;
        }
        if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH)
            break;
        /* A dead connection answers with its error, then NULL; never loop on it. */
        if (PQstatus(io->conn) == CONNECTION_BAD && is_error(keep))
            break;
    }
    return keep;
}

/* pgw_io_connect with the error verbosity set before the first byte, so a
 * server's refusal carries its SQLSTATE in PQerrorMessage. */
static PGconn *io_connect(const char *const *keys, const char *const *vals, int timeout_ms,
                          PGVerbosity verbosity, int *timed_out)
{
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    int64_t deadline = clock_mono_us() + (int64_t)timeout_ms * 1000;
    /* "Behave as if it last returned PGRES_POLLING_WRITING" (libpq docs). */
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    *timed_out = 0;
    if (!c || PQstatus(c) == CONNECTION_BAD)
        return c;
    PQsetErrorVerbosity(c, verbosity);
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        /* The socket can change between calls (next host, next address). */
        struct pollfd p = { .fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
        int64_t left = deadline - clock_mono_us();
        if (left <= 0) {
            *timed_out = 1;
            PQfinish(c);
            return NULL;
        }
        int n = poll(&p, 1, (int)((left + 999) / 1000));
        if (n < 0 && errno != EINTR)
            break; /* PQconnectPoll finds out what is wrong with the socket */
        if (n != 0)
            st = PQconnectPoll(c);
    }
    return c;
}

PGconn *pgw_io_connect(const char *const *keys, const char *const *vals, int timeout_ms, int *timed_out)
{
    return io_connect(keys, vals, timeout_ms, PQERRORS_DEFAULT, timed_out);
}

PGresult *pgw_io_exec(pgw_io *io, const char *sql, int nparams, const char *const *params)
{
    /* No parameters: the simple protocol, which takes several statements. */
    int sent = nparams == 0 ? PQsendQuery(io->conn, sql)
                            : PQsendQueryParams(io->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    return sent ? io_collect(io) : NULL;
}

const char *pgw_io_error(const pgw_io *io, const PGresult *r, char *buf, size_t n)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (io->timed_out == IO_TIMEOUT_SEND)
        snprintf(buf, n, "PostgreSQL took no data for %d ms (pg_timeout_ms); connection dropped",
                 io->timeout_ms);
    else if (io->timed_out)
        snprintf(buf, n, "no answer from PostgreSQL within %d ms (pg_timeout_ms); connection dropped",
                 io->timeout_ms);
    else if (msg && state)
        snprintf(buf, n, "%s %s", state, msg);
    else if (io->lost[0])
        snprintf(buf, n, "%s", io->lost);
    else if (msg)
        snprintf(buf, n, "----- %s", msg);
    else
        flatten_msg(buf, n, PQerrorMessage(io->conn));
    return buf;
}

/* Formats a failed result (or the timeout) as "what: reason" into err. */
static void result_error(const pgw_io *io, const PGresult *r, const char *what, char *err, size_t errlen)
{
    char m[256];
    snprintf(err, errlen, "%s: %s", what, pgw_io_error(io, r, m, sizeof m));
}

/* The fault a failed result (or a wait that gave up) shows. */
static pgw_fault result_fault(const pgw_io *io, const PGresult *r)
{
    return pgw_fault_of(r && !io->timed_out ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL,
                        io->timed_out);
}

/* Runs one command expected to return PGRES_COMMAND_OK. On failure the
 * fault goes to *fault (may be NULL). */
static int exec_ok_f(pgw_io *io, const char *sql, const char *what, char *err, size_t errlen,
                     pgw_fault *fault)
{
    PGresult *r = pgw_io_exec(io, sql, 0, NULL);
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

static int exec_ok(pgw_io *io, const char *sql, const char *what, char *err, size_t errlen)
{
    return exec_ok_f(io, sql, what, err, errlen, NULL);
}

/* PQprepare, bounded. */
static int prepare_ok(pgw_io *io, const char *name, const char *sql, char *err, size_t errlen,
                      pgw_fault *fault)
{
    PGresult *r = PQsendPrepare(io->conn, name, sql, 0, NULL) ? io_collect(io) : NULL;
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
    PGresult *r = pgw_io_exec(&w->io, pgw_check_sql, 0, NULL);
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
 * lines among the worker's logfmt output. The only notices our statements
 * raise are informational ("relation auditq_stage already exists,
 * skipping"), so they are dropped. */
static void pgw_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int pgw_connect(pgw *w, char *err, size_t errlen)
{
    char timeout[16], user_timeout[16];
    char setup[128];
    int rc = -1;

    if (pgw_connected(w))
        return 0;
    pgw_disconnect(w);

    /* dbname comes first so that the expanded URL/conninfo is applied first
     * and the settings after it take precedence over anything it holds.
     * tcp_user_timeout: data the kernel cannot get acknowledged (a dead
     * link) fails the connection after pg_timeout_ms instead of ~15 min of
     * retransmissions. */
    snprintf(timeout, sizeof timeout, "%d", w->cfg->pg_connect_timeout_s);
    snprintf(user_timeout, sizeof user_timeout, "%d", w->cfg->pg_timeout_ms);
    const char *const keys[] = { "dbname", "connect_timeout", "application_name",
                                 "client_encoding", "tcp_user_timeout", NULL };
    const char *const vals[] = { w->cfg->database_url, timeout, "auditq-worker",
                                 "UTF8", user_timeout, NULL };
    int timed_out = 0;
    w->fault = PGW_FAULT_UNREACHABLE;
    w->conn = io_connect(keys, vals, w->cfg->pg_connect_timeout_s * 1000, PQERRORS_VERBOSE, &timed_out);
    if (!w->conn) {
        /* No answer at all -- a silent server or network, or a host that
         * drops packets: the same to us as a stall mid-query. */
        if (timed_out) {
            snprintf(err, errlen, "connect: no answer from PostgreSQL within %d s (pg_connect_timeout_s)",
                     w->cfg->pg_connect_timeout_s);
            w->fault = PGW_FAULT_STALLED;
        } else
            snprintf(err, errlen, "connect: out of memory");
        goto out;
    }
    snprintf(w->role, sizeof w->role, "%s", PQuser(w->conn) ? PQuser(w->conn) : "");
    if (PQstatus(w->conn) != CONNECTION_OK) {
        char state[6], m[400];
        pgw_conn_message(PQerrorMessage(w->conn), state, m, sizeof m);
        snprintf(err, errlen, "connect: %s", m);
        w->fault = pgw_fault_of(state, 0);
        goto out;
    }
    /* Messages of later errors as before (the SQLSTATE is read from the
     * result's fields there). */
    PQsetErrorVerbosity(w->conn, PQERRORS_DEFAULT);
    PQsetNoticeProcessor(w->conn, pgw_notice, NULL);
    if (pgw_io_init(&w->io, w->conn, w->cfg->pg_timeout_ms) != 0) {
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
        prepare_ok(&w->io, PGW_STMT_ARRAYS, pgw_insert_arrays_sql, err, errlen, &w->fault) < 0 ||
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
    r = pgw_io_exec(&w->io, "", 0, NULL);
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

static void step_error_take(step_error *e, const PGresult *r, const pgw_io *io)
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
        pgw_io_error(io, NULL, e->message, sizeof e->message);
    else
        snprintf(e->message, sizeof e->message, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    e->have = 1;
}

/* Reads results until NULL, keeping the first error. Returns the number of
 * rows the last command-ok result reports, or -1 if an error was seen. */
static long long drain_results(pgw_io *io, step_error *e)
{
    PGresult *r;
    long long rows = 0;
    int failed = 0;
    while ((r = io_result(io)) != NULL) {
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
    pgw_io *io = &p->w->io;
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
    (void)io_flush(io); /* a failed send shows in the results */
    while ((r = io_result(io)) != NULL) {
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
    pgw_io *io = &w->io;
    PGresult *r;
    long long inserted = -1;
    int copy_ok = 1;

    st->round_trips++;
    r = pgw_io_exec(io, pgw_begin_copy_sql, 0, NULL);

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
            if (io_put_copy(io, w->buf.data, w->buf.len, NULL) != 0)
                copy_ok = 0;
            w->buf.len = 0;
        }
    }
    /* Always end the COPY -- with an error message if we could not send all
     * rows, which makes the server fail it -- so libpq leaves COPY_IN state. */
    if (io_put_copy(io, NULL, 0, copy_ok ? NULL : "auditq: could not send COPY data") != 0)
        copy_ok = 0;
    st->round_trips++;
    (void)io_flush(io);
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
    (void)io_flush(io); /* a failed send shows in the results */
    int synced = 0;
    int step = 0;   /* 0: SAVEPOINT result, 1: INSERT, 2: COMMIT */
    int failed = 0;
    while (!synced) {
        r = io_result(io);
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
                      ? io_collect(&w->io) : NULL;
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
