/* ctl_migrate.c -- `auditqctl migrate`: applies the embedded SQL migrations.
 *
 * Protocol, in one PostgreSQL session:
 *   1. pg_advisory_lock(MIG_LOCK_KEY): a second migrate (two deploys at once,
 *      a worker container and a job both running it) waits here instead of
 *      applying the same migration concurrently.
 *   2. CREATE TABLE IF NOT EXISTS auditq_schema_migrations.
 *   3. Every migration already recorded must carry the checksum of the SQL
 *      built into this binary; a mismatch means someone edited a released
 *      migration, and the database is not in the state this binary expects:
 *      refuse before changing anything.
 *   4. Each pending migration, in version order: BEGIN; its SQL; INSERT its
 *      row into auditq_schema_migrations; COMMIT. The record commits with the
 *      schema change, so a crash leaves the migration either wholly applied
 *      and recorded or not at all; a rerun picks up where it stopped.
 *   5. SELECT auditq_ensure_partitions(partitions_ahead).
 * --status and --dry-run only read (no lock, no table created).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "ctl.h"
#include "ctl_common.h"
#include "migrations.h"

#define MIG_PROG "auditqctl migrate"
/* Session advisory lock serialising migrates; any fixed value not used by
 * other code in the database ("aqmigrat" in ASCII). It differs from the one
 * auditq_ensure_partitions takes, which runs inside our session too. */
#define MIG_LOCK_KEY "7021788837495289204"
/* Features the SQL needs: BEFORE row triggers on partitioned tables and
 * autovacuum_vacuum_insert_scale_factor both arrived in PostgreSQL 13. */
#define MIG_MIN_SERVER 130000
#define MIG_CHECKSUM_LEN 25  /* "fnv1a64:" + 16 hex digits + NUL */

/* FNV-1a 64 of the SQL text, as "fnv1a64:<16 hex>". Not cryptographic: it
 * detects an edited migration, it does not resist a forger (whoever can
 * forge it can also update the recorded checksum). The prefix names the
 * algorithm so it can change later without ambiguity. */
static void mig_checksum(const char *sql, char out[MIG_CHECKSUM_LEN])
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);

    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    snprintf(out, MIG_CHECKSUM_LEN, "fnv1a64:%016" PRIx64, h);
}

/* Copies the first line of msg (libpq messages end in '\n' and may continue
 * with hints on further lines) into out. */
/* Server WARNINGs (e.g. a month auditq_ensure_partitions had to skip) are
 * for the operator: show them with our prefix instead of libpq's default. */
static void mig_notice(void *arg, const char *message)
{
    size_t n = strlen(message);

    (void)arg;
    while (n > 0 && message[n - 1] == '\n')
        n--;
    fprintf(stderr, MIG_PROG ": %.*s\n", (int)n, message);
}

/* 1-based line of the 1-based character position pos in sql (PostgreSQL
 * counts characters, not bytes: skip UTF-8 continuation bytes). */
static int mig_line_of(const char *sql, long pos)
{
    int line = 1;
    long chars = 0;

    for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
        if ((*p & 0xC0) == 0x80)
            continue;
        if (++chars >= pos)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* Describes a failed command into err: the primary message, the line in
 * sql (may be NULL) when PostgreSQL gave a position, the SQLSTATE, then
 * DETAIL/HINT/first CONTEXT line on indented lines. r may be NULL (out of
 * memory or connection lost): then the connection's message is used. */
static void mig_describe(PGconn *conn, const PGresult *r, const char *sql,
                         char *err, size_t errlen)
{
    const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state, *pos, *detail, *hint, *context;
    char line[32] = "";
    char ctx[256] = "";
    size_t n;

    if (primary == NULL) {
        char first[512];

        ctl_first_line(PQerrorMessage(conn), first, sizeof first);
        snprintf(err, errlen, "%s", first[0] ? first : "connection to the server lost");
        return;
    }
    state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
    detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    context = PQresultErrorField(r, PG_DIAG_CONTEXT);
    if (pos != NULL && sql != NULL) {
        long p = strtol(pos, NULL, 10);

        if (p > 0)
            snprintf(line, sizeof line, " at line %d", mig_line_of(sql, p));
    }
    if (context != NULL)
        ctl_first_line(context, ctx, sizeof ctx);
    n = (size_t)snprintf(err, errlen, "%s%s (SQLSTATE %s)", primary, line,
                         state != NULL ? state : "?????");
    if (detail != NULL && n < errlen)
        n += (size_t)snprintf(err + n, errlen - n, "\n  DETAIL: %s", detail);
    if (hint != NULL && n < errlen)
        n += (size_t)snprintf(err + n, errlen - n, "\n  HINT: %s", hint);
    if (ctx[0] != '\0' && n < errlen)
        snprintf(err + n, errlen - n, "\n  CONTEXT: %s", ctx);
}

/* Runs sql (one or more statements). Returns 0, or -1 with err filled. */
static int mig_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        mig_describe(conn, r, sql, err, errlen);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* Runs a query expected to return rows. Returns the result (caller frees
 * with PQclear), or NULL with err filled. */
static PGresult *mig_query(PGconn *conn, const char *sql, int nparams,
                           const char *const *params, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        mig_describe(conn, r, NULL, err, errlen);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Connects to cfg->database_url. Returns the connection (caller frees with
 * PQfinish), or NULL with the reason printed. */
static PGconn *mig_connect(const aq_config *cfg)
{
    PGconn *conn = ctl_pg_connect(cfg, MIG_PROG, NULL);

    if (conn == NULL)
        return NULL;
    PQsetNoticeProcessor(conn, mig_notice, NULL);
    return conn;
}

/* Returns the row of `version` in the applied result (may be NULL), or -1. */
static int mig_find(const PGresult *applied, int version)
{
    int rows = applied != NULL ? PQntuples(applied) : 0;

    for (int i = 0; i < rows; i++)
        if (strtol(PQgetvalue(applied, i, 0), NULL, 10) == version)
            return i;
    return -1;
}

/* Is `version` one of the embedded migrations? */
static int mig_known(int version)
{
    for (size_t i = 0; i < aq_migrations_count; i++)
        if (aq_migrations[i].version == version)
            return 1;
    return 0;
}

/* Loads the applied migrations (version, name, checksum, applied_at text)
 * into *applied (caller frees with PQclear); *applied stays NULL when the
 * table does not exist yet, i.e. nothing is applied. 0 or -1 with err. */
static int mig_load_applied(PGconn *conn, PGresult **applied, char *err, size_t errlen)
{
    PGresult *r;
    int exists;

    *applied = NULL;
    r = mig_query(conn, "SELECT to_regclass('auditq_schema_migrations') IS NOT NULL",
                  0, NULL, err, errlen);
    if (r == NULL)
        return -1;
    exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!exists)
        return 0;
    *applied = mig_query(conn,
        "SELECT version, name, checksum,"
        " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'"
        " FROM auditq_schema_migrations ORDER BY version", 0, NULL, err, errlen);
    return *applied != NULL ? 0 : -1;
}

/* --status: one line per migration, embedded or recorded. Returns CTL_OK,
 * or CTL_FAILED when a recorded checksum differs (scripts can check). */
/* --json: one element of the "migrations" array into js:
 * {"version": N, "name": S, "state": S[, "applied_at": S][, "ms": N]}.
 * applied_at NULL and ms < 0 leave the member out. */
static void mig_json_item(FILE *js, int *n, int version, const char *name, const char *state,
                          const char *applied_at, long long ms)
{
    fprintf(js, "%s{\"version\": %d, \"name\": ", (*n)++ ? ", " : "", version);
    ctl_json_str(js, name, strlen(name));
    fprintf(js, ", \"state\": \"%s\"", state);
    if (applied_at != NULL) {
        fputs(", \"applied_at\": ", js);
        ctl_json_str(js, applied_at, strlen(applied_at));
    }
    if (ms >= 0)
        fprintf(js, ", \"ms\": %lld", ms);
    fputc('}', js);
}

/* --status. js NULL: the table; else the "migrations" items go to js and
 * *pending_out / *changed_out receive the counts. */
static int mig_status(const PGresult *applied, FILE *js, int *pending_out, int *changed_out)
{
    int changed = 0, pending = 0, rows = applied != NULL ? PQntuples(applied) : 0, n = 0;
    char sum[MIG_CHECKSUM_LEN];

    if (js == NULL)
        printf("%-8s %-24s %-8s %s\n", "VERSION", "NAME", "STATE", "APPLIED AT");
    for (size_t i = 0; i < aq_migrations_count; i++) {
        const aq_migration *m = &aq_migrations[i];
        int row = mig_find(applied, m->version);

        if (row < 0) {
            if (js != NULL)
                mig_json_item(js, &n, m->version, m->name, "pending", NULL, -1);
            else
                printf("%03d      %-24s pending\n", m->version, m->name);
            pending++;
            continue;
        }
        mig_checksum(m->sql, sum);
        if (strcmp(PQgetvalue(applied, row, 2), sum) != 0) {
            if (js != NULL)
                mig_json_item(js, &n, m->version, m->name, "changed", PQgetvalue(applied, row, 3), -1);
            else
                printf("%03d      %-24s %-8s %s (CHANGED since: recorded %s, built-in %s)\n",
                       m->version, m->name, "applied", PQgetvalue(applied, row, 3),
                       PQgetvalue(applied, row, 2), sum);
            changed++;
        } else if (js != NULL) {
            mig_json_item(js, &n, m->version, m->name, "applied", PQgetvalue(applied, row, 3), -1);
        } else {
            printf("%03d      %-24s %-8s %s\n", m->version, m->name, "applied",
                   PQgetvalue(applied, row, 3));
        }
    }
    for (int row = 0; row < rows; row++) {
        int v = (int)strtol(PQgetvalue(applied, row, 0), NULL, 10);

        if (mig_known(v))
            continue;
        if (js != NULL)
            mig_json_item(js, &n, v, PQgetvalue(applied, row, 1), "unknown", PQgetvalue(applied, row, 3), -1);
        else
            printf("%03d      %-24s %-8s %s (not known to this auditqctl: newer release?)\n",
                   v, PQgetvalue(applied, row, 1), "applied", PQgetvalue(applied, row, 3));
    }
    *pending_out = pending;
    *changed_out = changed;
    if (js == NULL)
        printf("%d pending, %d changed\n", pending, changed);
    if (changed > 0) {
        fprintf(stderr, MIG_PROG ": %d applied migration(s) differ from the SQL built into "
                "this auditqctl\n", changed);
        return CTL_FAILED;
    }
    return CTL_OK;
}

/* Applies one migration and records it, in one transaction. 0 or -1 with
 * err filled (the transaction is rolled back). */
static int mig_apply(PGconn *conn, const aq_migration *m, const char *sum,
                     char *err, size_t errlen)
{
    char version[16];
    const char *params[3];
    PGresult *r;
    int rc = -1;

    if (mig_exec(conn, "BEGIN", err, errlen) != 0)
        return -1;
    if (mig_exec(conn, m->sql, err, errlen) != 0)
        goto out;
    snprintf(version, sizeof version, "%d", m->version);
    params[0] = version;
    params[1] = m->name;
    params[2] = sum;
    r = PQexecParams(conn, "INSERT INTO auditq_schema_migrations (version, name, checksum)"
                     " VALUES ($1, $2, $3)", 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        mig_describe(conn, r, NULL, err, errlen);
        PQclear(r);
        goto out;
    }
    PQclear(r);
    if (mig_exec(conn, "COMMIT", err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        PQclear(PQexec(conn, "ROLLBACK"));  /* best effort: the error is already in err */
    return rc;
}

static void mig_usage_error(const char *arg)
{
    fprintf(stderr, MIG_PROG ": unknown argument '%s'; run 'auditqctl migrate --help'\n", arg);
}

int ctl_migrate(const aq_config *cfg, int argc, char **argv)
{
    int dry_run = 0, status = 0, json = 0, rc = CTL_FAILED;
    int applied_now = 0, pending = 0, changed = 0, latest = 0, nitems = 0;
    PGconn *conn = NULL;
    PGresult *applied = NULL;
    PGresult *r = NULL;
    char err[2048];
    char sum[MIG_CHECKSUM_LEN];
    char *jbuf = NULL;   /* --json: the "migrations" items, printed once all went well */
    size_t jlen = 0;
    FILE *js = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = 1;
        } else if (strcmp(argv[i], "--status") == 0) {
            status = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            mig_usage_error(argv[i]);
            return CTL_USAGE;
        }
    }
    if (dry_run && status) {
        fprintf(stderr, MIG_PROG ": --dry-run and --status exclude each other\n");
        return CTL_USAGE;
    }

    if (json && (js = open_memstream(&jbuf, &jlen)) == NULL) {
        fprintf(stderr, MIG_PROG ": out of memory\n");
        return CTL_FAILED;
    }
    conn = mig_connect(cfg);
    if (conn == NULL)
        goto out;
    if (PQserverVersion(conn) < MIG_MIN_SERVER) {
        fprintf(stderr, MIG_PROG ": PostgreSQL %d.%d is too old; auditq needs 13 or later\n",
                PQserverVersion(conn) / 10000, PQserverVersion(conn) / 100 % 100);
        goto out;
    }
    /* No statement_timeout: a migration may legitimately build an index for
     * minutes, whatever the role's default. Only WARNINGs and up are shown. */
    if (mig_exec(conn, "SET statement_timeout = 0; SET client_min_messages = warning",
                 err, sizeof err) != 0) {
        fprintf(stderr, MIG_PROG ": %s\n", err);
        goto out;
    }

    if (!status && !dry_run) {
        r = mig_query(conn, "SELECT pg_try_advisory_lock(" MIG_LOCK_KEY ")", 0, NULL,
                      err, sizeof err);
        if (r == NULL) {
            fprintf(stderr, MIG_PROG ": cannot take the migration lock: %s\n", err);
            goto out;
        }
        if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
            fprintf(stderr, MIG_PROG ": another migrate is running; waiting for it to finish\n");
            if (mig_exec(conn, "SELECT pg_advisory_lock(" MIG_LOCK_KEY ")", err, sizeof err) != 0) {
                fprintf(stderr, MIG_PROG ": cannot take the migration lock: %s\n", err);
                goto out;
            }
        }
        PQclear(r);
        r = NULL;
        if (mig_exec(conn,
                "CREATE TABLE IF NOT EXISTS auditq_schema_migrations ("
                " version int PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())", err, sizeof err) != 0) {
            fprintf(stderr, MIG_PROG ": cannot create auditq_schema_migrations: %s\n", err);
            goto out;
        }
    }

    /* Read after taking the lock: a migrate we waited for has changed it. */
    if (mig_load_applied(conn, &applied, err, sizeof err) != 0) {
        fprintf(stderr, MIG_PROG ": cannot read auditq_schema_migrations: %s\n", err);
        goto out;
    }
    if (status) {
        rc = mig_status(applied, js, &pending, &changed);
        if (js != NULL) {
            fclose(js);
            js = NULL;
            printf("{\"migrations\": [%s], \"pending\": %d, \"changed\": %d}\n", jbuf ? jbuf : "",
                   pending, changed);
        }
        goto out;
    }

    /* Check every recorded checksum before changing anything. */
    for (size_t i = 0; i < aq_migrations_count; i++) {
        const aq_migration *m = &aq_migrations[i];
        int row = mig_find(applied, m->version);

        if (row < 0) {
            pending++;
            continue;
        }
        mig_checksum(m->sql, sum);
        if (strcmp(PQgetvalue(applied, row, 2), sum) != 0) {
            fprintf(stderr, MIG_PROG ": %03d_%s was applied on %s with checksum %s, but the "
                    "SQL built into this auditqctl has %s: a released migration must never "
                    "change; restore sql/%03d_%s.sql and put the change in a new migration\n",
                    m->version, m->name, PQgetvalue(applied, row, 3),
                    PQgetvalue(applied, row, 2), sum, m->version, m->name);
            changed++;
        }
    }
    if (changed > 0)
        goto out;
    for (int row = 0; applied != NULL && row < PQntuples(applied); row++) {
        int v = (int)strtol(PQgetvalue(applied, row, 0), NULL, 10);

        if (!mig_known(v))
            fprintf(stderr, MIG_PROG ": warning: the database has migration %03d_%s, which "
                    "this auditqctl does not know (this auditqctl is older than the database schema?)\n",
                    v, PQgetvalue(applied, row, 1));
    }

    for (size_t i = 0; i < aq_migrations_count; i++) {
        const aq_migration *m = &aq_migrations[i];
        int64_t t0;

        latest = m->version;
        if (mig_find(applied, m->version) >= 0) {
            if (js != NULL)
                mig_json_item(js, &nitems, m->version, m->name, "already_applied", NULL, -1);
            else
                printf("%03d_%s: already applied\n", m->version, m->name);
            continue;
        }
        if (dry_run) {
            if (js != NULL)
                mig_json_item(js, &nitems, m->version, m->name, "would_apply", NULL, -1);
            else
                printf("%03d_%s: would be applied\n", m->version, m->name);
            continue;
        }
        mig_checksum(m->sql, sum);
        t0 = clock_mono_us();
        if (mig_apply(conn, m, sum, err, sizeof err) != 0) {
            fprintf(stderr, MIG_PROG ": %03d_%s failed, rolled back: %s\n",
                    m->version, m->name, err);
            goto out;
        }
        if (js != NULL) {
            mig_json_item(js, &nitems, m->version, m->name, "applied", NULL,
                          (long long)((clock_mono_us() - t0) / 1000));
        } else {
            printf("%03d_%s: applied in %" PRId64 " ms\n", m->version, m->name,
                   (clock_mono_us() - t0) / 1000);
            fflush(stdout);  /* progress is visible even if a later one hangs */
        }
        applied_now++;
    }

    if (dry_run) {
        if (js != NULL) {
            fclose(js);
            js = NULL;
            printf("{\"migrations\": [%s], \"dry_run\": true, \"would_apply\": %d}\n",
                   jbuf ? jbuf : "", pending);
        } else {
            printf("dry run: %d migration(s) would be applied; nothing changed\n", pending);
        }
        rc = CTL_OK;
        goto out;
    }
    if (js == NULL && applied_now == 0)   /* --json: the summary is in the object below */
        printf("nothing to migrate: schema already at version %03d\n", latest);
    else if (js == NULL)
        printf("schema now at version %03d (%d migration(s) applied)\n", latest, applied_now);

    {
        char ahead[16];
        const char *params[1] = { ahead };

        snprintf(ahead, sizeof ahead, "%d", cfg->partitions_ahead);
        r = mig_query(conn, "SELECT auditq_ensure_partitions($1)", 1, params, err, sizeof err);
        if (r == NULL) {
            fprintf(stderr, MIG_PROG ": creating partitions failed: %s\n", err);
            goto out;
        }
        if (js != NULL) {
            fclose(js);
            js = NULL;
            printf("{\"migrations\": [%s], \"schema_version\": %d, \"applied\": %d, "
                   "\"partitions_created\": %s, \"partitions_ahead\": %d}\n", jbuf ? jbuf : "", latest,
                   applied_now, PQgetvalue(r, 0, 0), cfg->partitions_ahead);
        } else {
            printf("partitions: %s created (current month + %d ahead)\n",
                   PQgetvalue(r, 0, 0), cfg->partitions_ahead);
        }
    }
    rc = CTL_OK;
out:
    if (js != NULL)
        fclose(js);
    free(jbuf);
    PQclear(r);
    PQclear(applied);
    PQfinish(conn);  /* also releases the session advisory lock */
    return rc;
}
