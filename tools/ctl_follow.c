/* ctl_follow.c -- `auditqctl follow`: streams stored events in commit
 * order to stdout, resumable from a cursor file.
 *
 * DESIGN
 *   The order. received_at and event_id are not commit order: two workers
 *   insert concurrently, and a transaction that began first (earlier
 *   received_at, lower evidence batch_id) may commit last. A cursor on
 *   either would pass a row that commits later behind it and never return.
 *   follow uses the integrity sequencer's leaf order instead (worker/seal.c,
 *   sql/005_integrity.sql): every INSERT statement's rows get an evidence
 *   batch in the writer's own transaction, and the sequencer -- one
 *   transaction at a time, under its advisory lock -- appends committed,
 *   not yet sequenced batches to the tree, writing auditq_seal_assignment
 *   (batch -> first_leaf). A batch is assigned only after it committed, and
 *   each sequencer transaction starts from the checkpoint the previous one
 *   committed, so the assignments visible in any snapshot are a prefix of
 *   the leaf sequence: leaf index N is final once seen. The cursor is
 *   therefore one number, the next leaf to emit; a row that commits late is
 *   simply assigned a later leaf, never one behind the cursor. Inside a
 *   batch the leaves are in (event_id, occurred_at) order, the order of
 *   its event_ids array.
 *   Cost: follow needs sealing on (seal_key_file on at least one worker)
 *   and sees an event up to checkpoint_interval_ms after it is stored.
 *   Events stored and none sequenced: it says so on stderr and waits (with
 *   --once: exits 1) rather than fall back to an order that can skip.
 *
 *   One step: in one REPEATABLE READ READ ONLY transaction, the rows of
 *   leaves [cursor, cursor + window) that pass the filters, joined from
 *   the assignments (first_leaf index) through the batches' id arrays to
 *   audit_events' primary key, ordered by leaf; the window is --window
 *   leaves (default 1000), so memory holds at most one window whatever the
 *   backlog. The rows are written and stdout flushed; then the cursor moves
 *   to the end of what the window covered (leaves of rows that a filter or
 *   retention left out included) and, with --cursor FILE, is saved:
 *   written to FILE.tmp, fsynced, renamed over FILE, directory fsynced.
 *
 *   Windows: killed (even -9) after a window's rows were written and
 *   before its cursor was saved, the next run writes that window again:
 *   at-least-once, the duplicates at most one window, and only around a
 *   kill. Never a gap: the cursor is saved only after the rows before it
 *   were flushed. Output that the pipe's reader lost after auditqctl wrote
 *   it is the reader's window (a shipper should keep its own position).
 *   A database restored from a backup restarts the leaves: delete the
 *   cursor file (the tree size in it is checked: a cursor beyond the tree
 *   is refused with that advice).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_query.h"
#include "fileio.h"
#include "fmt_siem.h"

#define F_PROG "auditqctl follow"
#define F_WINDOW_DEFAULT 1000
#define F_WINDOW_MAX 100000
#define F_POLL_DEFAULT_MS 500

const char ctl_follow_synopsis[] =
    "follow [--format F] [--cursor FILE]  stream events as they are committed";

const char ctl_follow_help[] =
    "Usage: auditqctl [OPTIONS] follow [--format F] [--cursor FILE] [--tenant T]\n"
    "                                  [--action-prefix P] [--window N] [--poll-ms MS]\n"
    "                                  [--once]\n"
    "\n"
    "Writes stored events to stdout in commit order (the integrity sequencer's\n"
    "leaf order: an event committed late by one writer is never skipped for an\n"
    "earlier one of another), oldest first, and keeps following until SIGINT\n"
    "or SIGTERM. Needs sealing on (seal_key_file on a worker); events appear up\n"
    "to checkpoint_interval_ms after they are stored.\n"
    "\n"
    "  --format F          ndjson (default), csv (no header), ocsf or cef (see\n"
    "                      'auditqctl query --help')\n"
    "  --cursor FILE       resume from FILE and save the position there after\n"
    "                      each window (fsynced, atomically replaced). Missing\n"
    "                      FILE: start at the oldest event. After a kill -9 the\n"
    "                      next run repeats at most the last window: at least\n"
    "                      once, never a gap\n"
    "  --tenant T          only events of tenant_id T\n"
    "  --action-prefix P   only events whose action starts with P\n"
    "  --window N          leaves (events) per step, 1..100000 (default 1000):\n"
    "                      memory holds one window\n"
    "  --poll-ms MS        wait between polls when caught up, 10..60000\n"
    "                      (default 500)\n"
    "  --once              stop when caught up instead of following\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 stopped by a signal or --once, 1 connection/SQL/output\n"
    "error or no sequencer, 2 usage error or a bad cursor file.\n";

typedef struct f_opts {
    int format;               /* Q_FMT_NDJSON, CSV, OCSF, CEF */
    const char *cursor_file;
    const char *tenant, *action_prefix;
    long long window, poll_ms;
    int once;
} f_opts;

static volatile sig_atomic_t f_stop;

static void f_on_signal(int sig)
{
    (void)sig;
    f_stop = 1;
}

static int f_parse(int argc, char **argv, f_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->format = Q_FMT_NDJSON;
    o->window = F_WINDOW_DEFAULT;
    o->poll_ms = F_POLL_DEFAULT_MS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *eq = strchr(a, '=');
        char name[32];
        size_t nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);

        if (strcmp(a, "--once") == 0) {
            o->once = 1;
            continue;
        }
        if (nlen >= sizeof name || strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%.64s'; run 'auditqctl follow --help'", a);
            return -1;
        }
        memcpy(name, a, nlen);
        name[nlen] = '\0';
        if (eq != NULL) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            snprintf(err, errlen, "%s needs a value; run 'auditqctl follow --help'", name);
            return -1;
        }
        if (strcmp(name, "--format") == 0) {
            if (strcmp(v, "ndjson") == 0)
                o->format = Q_FMT_NDJSON;
            else if (strcmp(v, "csv") == 0)
                o->format = Q_FMT_CSV;
            else if (strcmp(v, "ocsf") == 0)
                o->format = Q_FMT_OCSF;
            else if (strcmp(v, "cef") == 0)
                o->format = Q_FMT_CEF;
            else {
                snprintf(err, errlen, "--format '%.64s': must be ndjson, csv, ocsf or cef", v);
                return -1;
            }
        } else if (strcmp(name, "--cursor") == 0) {
            o->cursor_file = v;
        } else if (strcmp(name, "--tenant") == 0) {
            o->tenant = v;
        } else if (strcmp(name, "--action-prefix") == 0) {
            o->action_prefix = v;
        } else if (strcmp(name, "--window") == 0) {
            if (q_parse_ll(v, 1, F_WINDOW_MAX, &o->window) != 0) {
                snprintf(err, errlen, "--window '%.64s': must be 1..%d", v, F_WINDOW_MAX);
                return -1;
            }
        } else if (strcmp(name, "--poll-ms") == 0) {
            if (q_parse_ll(v, 10, 60000, &o->poll_ms) != 0) {
                snprintf(err, errlen, "--poll-ms '%.64s': must be 10..60000", v);
                return -1;
            }
        } else {
            snprintf(err, errlen, "unknown option '%s'; run 'auditqctl follow --help'", name);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ cursor file */

/* Reads "auditq-follow 1 leaf=N\n". 0 with *leaf (0 when FILE does not
 * exist), or -1 with err. */
static int f_cursor_read(const char *path, long long *leaf, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[128];

    *leaf = 0;
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cannot read the cursor file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fgets(line, sizeof line, f) == NULL || sscanf(line, "auditq-follow 1 leaf=%lld", leaf) != 1 ||
        *leaf < 0) {
        fclose(f);
        snprintf(err, errlen, "%s is not a cursor file written by auditqctl follow; move it "
                 "away to start from the oldest event", path);
        return -1;
    }
    fclose(f);
    return 0;
}

/* Saves leaf: FILE.tmp, fsync, rename, fsync the directory. 0 or -1 (err). */
static int f_cursor_save(const char *path, long long leaf, char *err, size_t errlen)
{
    char tmp[PATH_MAX], text[64];
    int fd, n;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "cursor file path too long");
        return -1;
    }
    n = snprintf(text, sizeof text, "auditq-follow 1 leaf=%lld\n", leaf);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write the cursor file %.512s: %s; check the directory", tmp,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0 || fileio_fsync_parent(path, NULL, 0) != 0) {
        snprintf(err, errlen, "cannot replace the cursor file %.512s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ PostgreSQL */

#define F_COLS(p)                                                                       \
    p "event_id, " Q_TS_SQL(p "occurred_at") ", " Q_TS_SQL(p "received_at") ", "        \
    p "priority, " p "tenant_id, " p "actor_id, " p "actor_type, " p "action, "          \
    p "entity_type, " p "entity_id, " p "outcome, " p "source_ip, " p "user_agent, "    \
    p "request_id, " p "session_id, " p "changes, " p "metadata, " p "clock_flag"

/* $1 first leaf, $2 end leaf (exclusive), $3 tenant or NULL, $4 prefix or NULL.
 * Column Q_NCOLS: the row's leaf index. */
static const char f_window_sql[] =
    "SELECT " F_COLS("e.") ", a.first_leaf + u.ord - 1"
    " FROM auditq_seal_assignment a"
    " JOIN auditq_evidence_batch b ON b.batch_id = a.item_id"
    " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(eid, oat, ord)"
    " JOIN audit_events e ON e.event_id = u.eid AND e.occurred_at = u.oat"
    " WHERE a.kind = 'batch' AND a.first_leaf < $2::bigint AND a.first_leaf + a.n > $1::bigint"
    "   AND a.first_leaf + u.ord - 1 >= $1::bigint AND a.first_leaf + u.ord - 1 < $2::bigint"
    "   AND ($3::text IS NULL OR e.tenant_id = $3::text)"
    "   AND ($4::text IS NULL OR left(e.action, length($4::text)) = $4::text)"
    " ORDER BY a.first_leaf + u.ord - 1";

static void f_sql_error(PGconn *conn, const PGresult *r, const char *what)
{
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char first[512];

    if (primary == NULL) {
        ctl_first_line(PQerrorMessage(conn), first, sizeof first);
        fprintf(stderr, F_PROG ": %s: %s\n", what, first[0] ? first : "connection to the server lost");
        return;
    }
    fprintf(stderr, F_PROG ": %s: %s (SQLSTATE %s)\n", what, primary, state != NULL ? state : "?????");
}

static int f_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;

    if (rc != 0)
        f_sql_error(conn, r, what);
    PQclear(r);
    return rc;
}

/* The size of the sequenced tree (the end of the last assignment) into
 * *size; -1 (reported) on error. */
static int f_tree_size(PGconn *conn, long long *size)
{
    PGresult *r = PQexec(conn, "SELECT coalesce(max(tree_size), 0) FROM auditq_checkpoint");

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        f_sql_error(conn, r, "reading the sequenced tree size");
        PQclear(r);
        return -1;
    }
    *size = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int f_write_row(FILE *out, const PGresult *r, int i, int format)
{
    fmt_row fr;

    switch (format) {
    case Q_FMT_CSV:
        q_write_csv_row(out, r, i);
        return 0;
    case Q_FMT_NDJSON:
        q_write_ndjson_row(out, r, i);
        return 0;
    default:
        fmt_row_from_pg(r, i, &fr);
        return format == Q_FMT_OCSF ? fmt_ocsf_write(out, &fr) : fmt_cef_write(out, &fr);
    }
}

/* Sleeps ms or until a signal stops the run. */
static void f_sleep(long long ms, const sigset_t *during)
{
    int64_t deadline = clock_mono_us() + ms * 1000;

    while (!f_stop) {
        int64_t left = deadline - clock_mono_us();
        struct timespec ts;

        if (left <= 0)
            return;
        ts.tv_sec = (time_t)(left / 1000000);
        ts.tv_nsec = (long)(left % 1000000) * 1000;
        if (pselect(0, NULL, NULL, NULL, &ts, during) < 0 && errno != EINTR)
            return;
    }
}

int ctl_follow(const aq_config *cfg, int argc, char **argv)
{
    f_opts o;
    char err[1024], lo[24], hi[24];
    long long cursor, tree;
    PGconn *conn;
    sigset_t block, during;
    int rc = CTL_FAILED, warned = 0;

    if (f_parse(argc, argv, &o, err, sizeof err) != 0) {
        fprintf(stderr, F_PROG ": %s\n", err);
        return CTL_USAGE;
    }
    if (o.cursor_file != NULL && f_cursor_read(o.cursor_file, &cursor, err, sizeof err) != 0) {
        fprintf(stderr, F_PROG ": %s\n", err);
        return CTL_USAGE;
    }
    if (o.cursor_file == NULL)
        cursor = 0;
    conn = ctl_pg_connect(cfg, F_PROG, "UTF8");
    if (conn == NULL)
        return CTL_FAILED;
    if (f_exec(conn, "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'", "setting up the session") != 0 ||
        f_tree_size(conn, &tree) != 0)
        goto out;
    if (cursor > tree) {
        fprintf(stderr, F_PROG ": the cursor file %s is at leaf %lld but the sequenced tree "
                "holds %lld leaves (a restored or different database?); move it away to start "
                "from the oldest event\n", o.cursor_file, cursor, tree);
        rc = CTL_USAGE;
        goto out;
    }

    /* SIGINT/SIGTERM only stop the loop between windows: blocked except
     * while sleeping, so a window is never cut between its rows and its
     * cursor. */
    ctl_signals_hold(f_on_signal, &block, &during);

    while (!f_stop) {
        const char *params[4] = { lo, hi, o.tenant, o.action_prefix };
        long long end;
        PGresult *r;

        if (f_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                   "starting the read-only transaction") != 0 || f_tree_size(conn, &tree) != 0)
            goto out;
        if (tree == 0 && cursor == 0 && !warned) {
            /* Nothing sequenced yet: is a sequencer running at all? */
            PGresult *c = PQexec(conn, "SELECT count(*) FROM auditq_evidence_batch");

            if (PQresultStatus(c) == PGRES_TUPLES_OK && strcmp(PQgetvalue(c, 0, 0), "0") != 0) {
                fprintf(stderr, F_PROG ": events are stored but none is sequenced: follow reads "
                        "the integrity sequencer's order; set seal_key_file on a worker "
                        "(docs/INTEGRITY.md) and wait checkpoint_interval_ms%s\n",
                        o.once ? "" : " (waiting)");
                warned = 1;
                if (o.once) {
                    PQclear(c);
                    goto out;
                }
            }
            PQclear(c);
        }
        end = tree < cursor + o.window ? tree : cursor + o.window;
        if (end > cursor) {
            snprintf(lo, sizeof lo, "%lld", cursor);
            snprintf(hi, sizeof hi, "%lld", end);
            r = PQexecParams(conn, f_window_sql, 4, NULL, params, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                f_sql_error(conn, r, "reading a window");
                PQclear(r);
                goto out;
            }
            for (int i = 0; i < PQntuples(r); i++)
                if (f_write_row(stdout, r, i, o.format) != 0) {
                    fprintf(stderr, F_PROG ": event %s has occurred_at '%s', which the format "
                            "cannot express; use --format ndjson\n", PQgetvalue(r, i, 0),
                            PQgetvalue(r, i, 1));
                    PQclear(r);
                    goto out;
                }
            PQclear(r);
        }
        if (f_exec(conn, "COMMIT", "ending the transaction") != 0)
            goto out;
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, F_PROG ": cannot write the output: %s; check the receiving pipe\n",
                    strerror(errno));
            goto out;
        }
        if (end > cursor) {
            cursor = end;
            if (o.cursor_file != NULL && f_cursor_save(o.cursor_file, cursor, err, sizeof err) != 0) {
                fprintf(stderr, F_PROG ": %s\n", err);
                goto out;
            }
            continue;  /* more may be waiting: no sleep while behind */
        }
        if (o.once)
            break;
        f_sleep(o.poll_ms, &during);
    }
    rc = CTL_OK;
out:
    PQfinish(conn);
    return rc;
}
