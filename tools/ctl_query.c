/* ctl_query.c -- `auditqctl query`: the auditor's export of audit_events.
 *
 * DESIGN
 *   Filters become a WHERE clause of fixed shape with every value a
 *   parameter ($n, PQexecParams): nothing a user types is ever pasted into
 *   SQL text. Each filter maps onto one of the schema's indexes, all of which
 *   end in occurred_at (sql/001_schema.sql):
 *       --tenant          audit_events_tenant_idx  (tenant_id, occurred_at)
 *       --actor           audit_events_actor_idx   (actor_id, occurred_at)
 *       --action exact    audit_events_action_idx  (action, occurred_at)
 *       --entity          audit_events_entity_idx  (entity_type, entity_id, occurred_at)
 *       --event-id        the primary key          (event_id, occurred_at)
 *       --since/--until   audit_events_occurred_at_idx, and partition pruning
 *       --metadata K=V    audit_events_metadata_idx (GIN jsonb_path_ops), as
 *                         metadata @> {"K": "V"}
 *       --source-ip       none of its own: narrows what the others select
 *   Two filters have no index of their own and only narrow what the others
 *   select: --outcome, and the prefix form --action 'user.*' (LIKE: a btree
 *   serves a prefix only under the C collation, and the action index has no
 *   text_pattern_ops). tests/integration/it_78_query.sh checks with EXPLAIN
 *   on ~200k ANALYZEd rows that no common filter Seq Scans a partition that
 *   holds rows.
 *
 *   Rows are streamed in keyset pages ordered by (occurred_at, event_id):
 *       WHERE <filters> AND occurred_at >= $c AND (occurred_at, event_id) > ($c, $id)
 *       ORDER BY occurred_at, event_id LIMIT $page
 *   event_id breaks ties between rows of the same microsecond, so the order
 *   is total and a page boundary can never skip or repeat a row. The plain
 *   `occurred_at >= $c` is implied by the row comparison; it is spelled out
 *   because partition pruning and the index bounds use it, so a late page
 *   skips the months already exported. Only one page is held at a time and
 *   the output is flushed after each, so memory does not grow with the
 *   export. --desc runs the same keyset backwards (indexes scan both ways).
 *
 *   All pages run in one REPEATABLE READ READ ONLY transaction: a single run
 *   is one consistent snapshot, as of its start, even while workers insert.
 *   (Events are inserted after they occur, so an export of a window that
 *   reaches "now" can miss events still queued; export closed windows.)
 *
 *   The cursor (--after, "next cursor: ...") is the last row's
 *   (occurred_at in microseconds, event_id) plus the direction, packed into
 *   27 bytes (version, flags, int64 BE, uuid, check byte) and written as 36
 *   base64url characters. It is opaque to users so the format can change
 *   under a new version byte; the check byte catches most mistyped tokens.
 *   A run stopped by --limit prints the cursor only when more rows exist
 *   (it fetches one row beyond the limit to know).
 *
 *   This file holds the command itself (the session, the page loop); the
 *   command line and the SQL of a page are ctl_query_args.c, the output
 *   formats ctl_query_out.c (ctl_query.h lists the parts).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_query.h"
#include "fmt_siem.h"
#include "uuid7.h"

const char ctl_query_synopsis[] =
    "query [FILTERS] [--format F]     export audit events (table, CSV, NDJSON, OCSF, CEF)";

const char ctl_query_help[] =
    "Usage: auditqctl [OPTIONS] query [FILTERS] [OUTPUT OPTIONS]\n"
    "\n"
    "Exports audit events from PostgreSQL (database_url), oldest first, ordered\n"
    "by (occurred_at, event_id). Filters combine with AND and match exactly.\n"
    "\n"
    "Filters:\n"
    "  --tenant T           tenant_id = T\n"
    "  --actor A            actor_id = A\n"
    "  --action A           action = A. 'PREFIX*' matches every action starting\n"
    "                       with PREFIX, but only narrows the rows the other\n"
    "                       filters select (the action index serves a prefix\n"
    "                       only in a C-collation database): add --since\n"
    "  --entity TYPE[:ID]   entity_type = TYPE (and entity_id = ID; the first ':'\n"
    "                       separates them)\n"
    "  --outcome O          success, failure or denied (no index of its own)\n"
    "  --event-id UUID      the event with this id\n"
    "  --metadata KEY=VALUE metadata has the top-level string member KEY equal to\n"
    "                       VALUE (the first '=' separates them). A value a\n"
    "                       producer protects with protect_fields = metadata.KEY:hmac\n"
    "                       is found by its hash:\n"
    "                         --metadata email=$(auditqctl hash --key-file K a@b.example)\n"
    "  --source-ip IP       source_ip = IP (also hmac-sha256:<hex>; no index of\n"
    "                       its own: add --tenant or --since)\n"
    "  --clock-flag F       future or backfill: events the worker flagged for an\n"
    "                       occurred_at far from its clock (clock_skew_future_ms,\n"
    "                       backfill_max_age_ms); any: both; none: neither (no\n"
    "                       index of its own)\n"
    "  --since TIME         occurred_at >= TIME\n"
    "  --until TIME         occurred_at <  TIME\n"
    "      TIME is ISO-8601, 2024-07-19, 2024-07-19T12:00:00Z or\n"
    "      '2024-07-19 14:00:00.250+02:00' (without an offset: UTC), or an age\n"
    "      before now: 90s, 30m, 24h, 7d, 2w.\n"
    "\n"
    "Output:\n"
    "  --format F           table, csv, ndjson, ocsf or cef. Default: table when\n"
    "                       stdout is a terminal, else ndjson (scripts: always\n"
    "                       pass --format)\n"
    "  --limit N            at most N rows; 0 = no limit. Default: 50 for table,\n"
    "                       none for csv and ndjson\n"
    "  --after TOKEN        continue after the row TOKEN was printed for\n"
    "  --desc               newest first\n"
    "  --page-size N        rows per query, 1..100000 (default 1000); memory\n"
    "                       holds one page\n"
    "  --progress           rows so far and rows/s on stderr (default: when\n"
    "                       stderr is a terminal and stdout is not)\n"
    "  --no-progress        never show progress\n"
    "  --explain[=text|json|analyze]\n"
    "                       print PostgreSQL's plan for the first page instead of\n"
    "                       rows (analyze also runs it and shows timings)\n"
    "  -h, --help           show this help\n"
    "\n"
    "When --limit (or the table's default 50) stops the output while more rows\n"
    "match, the last line on stderr is 'next cursor: TOKEN'; run the same\n"
    "command with --after TOKEN to get the next rows. A cursor keeps its\n"
    "direction: use it with --desc only if it came from a --desc run.\n"
    "\n"
    "Formats (every column; times in UTC with microseconds, e.g.\n"
    "2024-07-19T12:00:00.000000Z):\n"
    "  csv     RFC 4180: a header row, CRLF line ends, fields quoted when they\n"
    "          hold '\"', ',', CR or LF ('\"' doubled). NULL is an empty field,\n"
    "          an empty string is \"\". Text is UTF-8 exactly as stored; changes\n"
    "          and metadata are JSON text. Spreadsheets may evaluate a cell that\n"
    "          starts with = + - @ as a formula.\n"
    "  ndjson  one JSON object per line, keys in column order; NULL is null,\n"
    "          changes and metadata are JSON objects.\n"
    "  ocsf    one OCSF 1.1.0 event per line: API Activity (6003), Account\n"
    "          Change (3001) or Authentication (3002) by action (the mapping is\n"
    "          in docs/SECURITY.md); columns without an OCSF attribute are kept\n"
    "          under \"unmapped\".\n"
    "  cef     one ArcSight CEF:0 record per line, escaped per the CEF spec\n"
    "          (header: \\\\ and \\|; extension: \\\\, \\= and \\n for a line break).\n"
    "  table   occurred_at (to the second), tenant, actor, action, entity,\n"
    "          outcome (and event_id from 120 columns), cut with '\xe2\x80\xa6' to the\n"
    "          terminal width (COLUMNS when stdout is not a terminal, at least\n"
    "          80); control characters are shown as '?'.\n"
    "\n"
    "One run reads one consistent snapshot (a read-only REPEATABLE READ\n"
    "transaction). Events are stored some time after they occur (the queue\n"
    "lag): a window that ends further back than that is complete.\n"
    "\n"
    "Exit status: 0 ok (also when no row matches), 1 connection/SQL/output error,\n"
    "2 usage error (bad option, time, UUID or cursor).\n";

/* ------------------------------------------------------------------ PostgreSQL */

/* First line of msg into out (libpq messages end in '\n', may go on). */
/* Prints "auditqctl query: what: <server message> (SQLSTATE x)". */
static void q_sql_error(PGconn *conn, const PGresult *r, const char *what)
{
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *hint = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;
    char first[512];

    if (primary == NULL) {
        ctl_first_line(PQerrorMessage(conn), first, sizeof first);
        fprintf(stderr, Q_PROG ": %s: %s\n", what,
                first[0] ? first : "connection to the server lost");
        return;
    }
    fprintf(stderr, Q_PROG ": %s: %s (SQLSTATE %s)%s%s\n", what, primary,
            state != NULL ? state : "?????", hint != NULL ? "; " : "", hint != NULL ? hint : "");
}

/* Runs a command that returns no rows. 0 or -1 (reported). */
static int q_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;

    if (rc != 0)
        q_sql_error(conn, r, what);
    PQclear(r);
    return rc;
}

/* Connects and prepares the session. Returns the connection (caller frees
 * with PQfinish), or NULL with the reason printed. */
static PGconn *q_connect(const aq_config *cfg)
{
    /* client_encoding UTF8: the output formats promise UTF-8. */
    PGconn *conn = ctl_pg_connect(cfg, Q_PROG, "UTF8");

    if (conn == NULL)
        return NULL;
    /* UTC so to_char and the ::timestamptz parameters mean what we print;
     * no idle timeout because the transaction waits while a slow reader
     * (a pipe, a pager) drains a page. */
    if (q_exec(conn, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO';"
               " SET idle_in_transaction_session_timeout = 0", "setting up the session") != 0 ||
        q_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
               "starting the read-only transaction") != 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Runs one page. Returns the result (caller PQclears) or NULL (reported). */
static PGresult *q_run(PGconn *conn, const q_query *q, const char *prefix)
{
    char sql[Q_SQL_MAX + 64];
    PGresult *r;

    snprintf(sql, sizeof sql, "%s%s", prefix, q->sql);
    r = PQexecParams(conn, sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        q_sql_error(conn, r, "query failed");
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The position of row `row` of a page, for the next page and the cursor.
 * 0, or -1 (reported) if the server sent something we cannot page past. */
static int q_row_cursor(const PGresult *r, int row, int desc, q_cursor *c)
{
    const char *ts = PQgetvalue(r, row, Q_COL_OCCURRED_AT);
    const char *id = PQgetvalue(r, row, Q_COL_EVENT_ID);

    c->desc = desc;
    if (PQgetisnull(r, row, Q_COL_OCCURRED_AT) || q_parse_iso(ts, 5, &c->us) != 0 ||
        uuid_parse(id, strlen(id), c->id) != 0) {
        fprintf(stderr, Q_PROG ": event %s has occurred_at '%s', which cannot be paged past "
                "(infinity, or outside years 1..99999); narrow --since/--until to leave it out\n",
                id, PQgetisnull(r, row, Q_COL_OCCURRED_AT) ? "infinity" : ts);
        return -1;
    }
    return 0;
}

static int q_explain(PGconn *conn, const q_opts *o, long long want)
{
    static const char *const prefix[] = {
        [Q_EXPLAIN_TEXT] = "EXPLAIN ", [Q_EXPLAIN_JSON] = "EXPLAIN (FORMAT JSON) ",
        [Q_EXPLAIN_ANALYZE] = "EXPLAIN (ANALYZE, BUFFERS) ",
    };
    q_query q;
    PGresult *r;

    if (q_build(o, o->has_after ? &o->after : NULL, want, &q) != 0) {
        fprintf(stderr, Q_PROG ": internal error: query text too long\n");
        return CTL_FAILED;
    }
    r = q_run(conn, &q, prefix[o->explain]);
    if (r == NULL)
        return CTL_FAILED;
    for (int i = 0; i < PQntuples(r); i++)
        printf("%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    return CTL_OK;
}

/* Writes the pages. Returns CTL_OK or CTL_FAILED (reported). */
static int q_export(PGconn *conn, const q_opts *o, long long limit, FILE *out)
{
    q_cursor cur = o->after;
    int have_cur = o->has_after, more = 0;
    long long total = 0;
    q_table table = { { 0 }, 0 };
    q_progress prog = { 0, 0, clock_mono_us(), clock_mono_us() };
    char token[Q_CURSOR_CHARS + 1];

    prog.tty = isatty(STDERR_FILENO);
    prog.on = o->progress == 1 || (o->progress == -1 && prog.tty && !isatty(STDOUT_FILENO));
    if (o->format == Q_FMT_TABLE) {
        q_table_layout(q_term_cols(), &table);
        q_write_table_header(out, &table);
    } else if (o->format == Q_FMT_CSV) {
        q_write_csv_header(out);
    }
    for (;;) {
        /* One row beyond the limit tells whether more rows exist. */
        long long remaining = limit - total;
        long long want = limit > 0 && remaining < o->page_size ? remaining + 1 : o->page_size;
        int n, emit;
        q_query q;
        PGresult *r;

        if (q_build(o, have_cur ? &cur : NULL, want, &q) != 0) {
            fprintf(stderr, Q_PROG ": internal error: query text too long\n");
            return CTL_FAILED;
        }
        r = q_run(conn, &q, "");
        if (r == NULL)
            return CTL_FAILED;
        n = PQntuples(r);
        emit = n;
        if (limit > 0 && n > remaining) {
            emit = (int)remaining;
            more = 1;
        }
        for (int i = 0; i < emit; i++) {
            if (o->format == Q_FMT_CSV)
                q_write_csv_row(out, r, i);
            else if (o->format == Q_FMT_NDJSON)
                q_write_ndjson_row(out, r, i);
            else if (o->format == Q_FMT_OCSF || o->format == Q_FMT_CEF) {
                fmt_row fr;

                fmt_row_from_pg(r, i, &fr);
                if ((o->format == Q_FMT_OCSF ? fmt_ocsf_write(out, &fr)
                                             : fmt_cef_write(out, &fr)) != 0) {
                    fprintf(stderr, Q_PROG ": event %s has occurred_at '%s', which %s cannot "
                            "express; narrow --since/--until to leave it out\n",
                            PQgetvalue(r, i, Q_COL_EVENT_ID), PQgetvalue(r, i, Q_COL_OCCURRED_AT),
                            o->format == Q_FMT_OCSF ? "OCSF" : "CEF");
                    PQclear(r);
                    return CTL_FAILED;
                }
            } else
                q_write_table_row(out, &table, r, i);
        }
        if (emit > 0) {
            if (q_row_cursor(r, emit - 1, o->desc, &cur) != 0) {
                PQclear(r);
                return CTL_FAILED;
            }
            have_cur = 1;
        }
        PQclear(r);
        total += emit;
        if (fflush(out) != 0 || ferror(out))
            goto write_error;
        q_progress_line(&prog, total, 0);
        if (more || n < want)
            break;
    }
    if (o->format == Q_FMT_TABLE)
        fprintf(out, "(%lld row%s)\n", total, total == 1 ? "" : "s");
    if (fflush(out) != 0 || ferror(out))
        goto write_error;
    q_progress_line(&prog, total, 1);
    if (more) {
        q_cursor_encode(&cur, token);
        fprintf(stderr, "next cursor: %s\n", token);
    }
    return CTL_OK;
write_error:
    fprintf(stderr, Q_PROG ": cannot write the output: %s; check the disk or the "
            "receiving pipe\n", strerror(errno));
    return CTL_FAILED;
}

int ctl_query(const aq_config *cfg, int argc, char **argv)
{
    q_opts o;
    char err[1024];
    long long limit;
    PGconn *conn;
    int rc;

    if (q_parse_args(argc, argv, clock_now_us(), &o, err, sizeof err) != 0) {
        fprintf(stderr, Q_PROG ": %s\n", err);
        return CTL_USAGE;
    }
    if (o.format == Q_FMT_AUTO)
        o.format = isatty(STDOUT_FILENO) ? Q_FMT_TABLE : Q_FMT_NDJSON;
    limit = o.limit_set ? o.limit : o.format == Q_FMT_TABLE ? Q_TABLE_LIMIT_DEFAULT : 0;

    conn = q_connect(cfg);
    if (conn == NULL)
        return CTL_FAILED;
    if (o.explain != Q_EXPLAIN_NONE)
        rc = q_explain(conn, &o, limit > 0 && limit < o.page_size ? limit + 1 : o.page_size);
    else
        rc = q_export(conn, &o, limit, stdout);
    if (rc == CTL_OK && q_exec(conn, "COMMIT", "ending the transaction") != 0)
        rc = CTL_FAILED;
    PQfinish(conn);
    return rc;
}
