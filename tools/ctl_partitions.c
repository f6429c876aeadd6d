/* ctl_partitions.c -- `auditqctl partitions list|ensure`.
 *
 * list    every partition of audit_events and every archived month in
 *         archive_schema: month, location, rows, size (common/retention.c).
 * ensure  the current month and the next N get their partitions, and rows
 *         stranded in the DEFAULT partition are moved into partitions of
 *         their months. The work is SQL (sql/002_partition_upkeep.sql):
 *         auditq_partition_plan says which months, auditq_partition_month
 *         makes one, in its own transaction, so one month's failure (a lock
 *         timeout) loses nothing done for the others. The worker's hourly
 *         auditq_ensure_partitions uses the same function for its months.
 *
 * Locks (ensure): a session advisory lock on the key of
 * auditq_ensure_partitions serialises us against other ensures and the
 * workers' hourly call; per month, ACCESS EXCLUSIVE on the DEFAULT
 * partition (writers whose rows route to DEFAULT, and queries scanning
 * DEFAULT, wait for that moment) and SHARE UPDATE EXCLUSIVE on audit_events
 * (inserts and queries go on); lock_timeout 5 s, see sql/002.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "retention.h"

#define PART_PROG "auditqctl partitions"
/* The key auditq_ensure_partitions takes ("aqpart", sql/001). */
#define PART_LOCK_KEY "97113112097114116"

const char ctl_partitions_synopsis[] =
    "partitions list|ensure [OPTIONS] list partitions; create months, empty DEFAULT";

const char ctl_partitions_help[] =
    "Usage: auditqctl [OPTIONS] partitions list [--exact] [--json]\n"
    "       auditqctl [OPTIONS] partitions ensure [--ahead N] [--dry-run]\n"
    "\n"
    "list: every partition of audit_events (location hot), every archived month\n"
    "in archive_schema (archive) and the DEFAULT partition (default), with its\n"
    "month, rows and total size (table + indexes + TOAST). Rows are the planner's\n"
    "estimate (pg_class.reltuples; '?' = never analyzed) unless --exact counts\n"
    "them (a full scan of every table). The DEFAULT partition is always counted\n"
    "exactly, and a warning names its months when it holds rows.\n"
    "\n"
    "  --exact     count rows exactly\n"
    "  --json      one JSON object: sizes in bytes, rows null when unknown\n"
    "\n"
    "ensure: creates the partition of the current month (UTC) and of the next N\n"
    "months when missing, and moves rows that landed in the DEFAULT partition\n"
    "(producer clocks off, backfills) into partitions of their months, each month\n"
    "in its own transaction: create the table, move the rows, attach it. The\n"
    "worker's hourly upkeep does the same, but only for the current month and\n"
    "the next partitions_ahead months.\n"
    "Safe to rerun: what exists is left alone. Prints one line per change.\n"
    "\n"
    "  --ahead N   months after the current one (0..120; default partitions_ahead)\n"
    "  --dry-run   print what would be done; change nothing\n"
    "\n"
    "Locks, per month: the DEFAULT partition is locked ACCESS EXCLUSIVE until the\n"
    "month is attached -- inserts whose rows go to DEFAULT and queries that scan\n"
    "DEFAULT wait that long (moving N rows takes about as long as inserting them);\n"
    "audit_events gets SHARE UPDATE EXCLUSIVE, so other inserts and queries go on.\n"
    "A lock not granted within 5 s fails that month (nothing changed); rerun later.\n"
    "Runs as the owner of audit_events (the role that ran migrate).\n"
    "\n"
    "Exit status: 0 ok, 1 connection/SQL error (or a month failed), 2 usage error.\n";

/* Server WARNINGs (a month ensure had to skip) are for the operator. */
static void part_notice(void *arg, const char *message)
{
    size_t n = strlen(message);

    (void)arg;
    while (n > 0 && message[n - 1] == '\n')
        n--;
    fprintf(stderr, PART_PROG ": %.*s\n", (int)n, message);
}

static PGconn *part_connect(const aq_config *cfg)
{
    char err[1024];
    PGconn *pg = retention_connect(cfg, "auditqctl", err, sizeof err);
    PGresult *r;

    if (pg == NULL) {
        fprintf(stderr, PART_PROG ": %s\n", err);
        return NULL;
    }
    PQsetNoticeProcessor(pg, part_notice, NULL);
    /* A move of many rows may take long; a role's default must not cut it. */
    r = PQexec(pg, "SET statement_timeout = 0; SET client_min_messages = warning");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        retention_pgerr(pg, r, "session setup", err, sizeof err);
        fprintf(stderr, PART_PROG ": %s\n", err);
        PQclear(r);
        PQfinish(pg);
        return NULL;
    }
    PQclear(r);
    return pg;
}

/* ---- list ------------------------------------------------------------------ */

static const char *part_location(int loc)
{
    return loc == RET_LOC_HOT ? "hot" : loc == RET_LOC_ARCHIVE ? "archive" : "default";
}

/* The months present in a DEFAULT partition, "2020-01, 2031-05" (at most 12,
 * then "..."), into out. Best effort: "" when it cannot be read. */
static void part_default_months(PGconn *pg, const retention_part *p, char *out, size_t outlen)
{
    char *qs = PQescapeIdentifier(pg, p->schema, strlen(p->schema));
    char *qn = PQescapeIdentifier(pg, p->name, strlen(p->name));
    char sql[600];
    PGresult *r;

    out[0] = '\0';
    if (qs == NULL || qn == NULL)
        goto out;
    snprintf(sql, sizeof sql,
             "SELECT string_agg(m, ', ' ORDER BY m) || CASE WHEN count(*) > 12 THEN ', ...' ELSE '' END"
             "  FROM (SELECT DISTINCT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS m"
             "          FROM %s.%s ORDER BY 1 LIMIT 13) s", qs, qn);
    r = PQexec(pg, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
out:
    PQfreemem(qs);
    PQfreemem(qn);
}

static void part_display(const retention_part *p, char *out, size_t outlen)
{
    if (p->location == RET_LOC_ARCHIVE)
        snprintf(out, outlen, "%s.%s", p->schema, p->name);
    else
        snprintf(out, outlen, "%s", p->name);
}

/* "2024-05-01T00:00:00Z" for the start of month (next = 1: of the month after). */
static void part_month_start(int month, int next, char *out, size_t outlen)
{
    int m = month + next;

    snprintf(out, outlen, "%04d-%02d-01T00:00:00Z", m / 12, m % 12 + 1);
}

/* Appends a C string to b. 0, or -1 on OOM. */
static int part_puts(aq_buf *b, const char *s)
{
    return aq_buf_append(b, s, strlen(s));
}

static int part_list_json(const retention_part *parts, size_t n, int exact, long long default_rows,
                          const char *default_months, const char *total_size)
{
    aq_buf b = { 0 };
    int bad = 0;
    long long bytes = 0;
    char num[160];

    bad |= part_puts(&b, exact ? "{\"rows_exact\": true, \"partitions\": ["
                               : "{\"rows_exact\": false, \"partitions\": [");
    for (size_t i = 0; i < n; i++) {
        const retention_part *p = &parts[i];
        char month[16], from[32], to[32];

        bytes += p->bytes;
        bad |= part_puts(&b, i > 0 ? ",\n  {\"schema\": " : "\n  {\"schema\": ");
        bad |= retention_json_append(&b, p->schema);
        bad |= part_puts(&b, ", \"name\": ");
        bad |= retention_json_append(&b, p->name);
        bad |= part_puts(&b, ", \"location\": ");
        bad |= retention_json_append(&b, part_location(p->location));
        if (p->month >= 0) {
            retention_month_label(p->month, month, sizeof month);
            part_month_start(p->month, 0, from, sizeof from);
            part_month_start(p->month, 1, to, sizeof to);
            snprintf(num, sizeof num, ", \"month\": \"%s\", \"from\": \"%s\", \"to\": \"%s\"",
                     month, from, to);
            bad |= part_puts(&b, num);
        } else {
            bad |= part_puts(&b, ", \"month\": null, \"from\": null, \"to\": null");
        }
        bad |= part_puts(&b, ", \"bound\": ");
        bad |= retention_json_append(&b, p->bound);
        if (p->rows >= 0)
            snprintf(num, sizeof num, ", \"rows\": %lld", p->rows);
        else
            snprintf(num, sizeof num, ", \"rows\": null");
        bad |= part_puts(&b, num);
        snprintf(num, sizeof num, ", \"rows_exact\": %s, \"bytes\": %lld, \"size\": ",
                 exact || p->location == RET_LOC_DEFAULT ? "true" : "false", p->bytes);
        bad |= part_puts(&b, num);
        bad |= retention_json_append(&b, p->size);
        bad |= part_puts(&b, "}");
    }
    snprintf(num, sizeof num, "\n], \"total_bytes\": %lld, \"total_size\": ", bytes);
    bad |= part_puts(&b, num);
    bad |= retention_json_append(&b, total_size);
    snprintf(num, sizeof num, ", \"default_rows\": %lld, \"default_months\": [", default_rows);
    bad |= part_puts(&b, num);
    /* default_months is "a, b, ..." -- split it back into strings. */
    for (const char *s = default_months; *s;) {
        size_t len = strcspn(s, ","), cut = len < 15 ? len : 15;
        char m[16];

        memcpy(m, s, cut);
        m[cut] = '\0';
        if (s != default_months)
            bad |= part_puts(&b, ", ");
        bad |= retention_json_append(&b, m);
        s += len;
        while (*s == ',' || *s == ' ')
            s++;
    }
    bad |= part_puts(&b, "]}\n");
    if (bad) {
        fprintf(stderr, PART_PROG " list: out of memory\n");
        free(b.data);
        return CTL_FAILED;
    }
    fwrite(b.data, 1, b.len, stdout);
    free(b.data);
    return CTL_OK;
}

static void part_list_table(const retention_part *parts, size_t n, int exact, const char *total_size)
{
    int width = 9, hot = 0, arch = 0, def = 0, unknown = 0;
    long long rows = 0;
    char name[140], month[16], num[32];

    for (size_t i = 0; i < n; i++) {
        part_display(&parts[i], name, sizeof name);
        if ((int)strlen(name) > width)
            width = (int)strlen(name);
    }
    printf("%-*s  %-7s  %-8s  %12s  %10s\n", width, "PARTITION", "MONTH", "LOCATION", "ROWS", "SIZE");
    for (size_t i = 0; i < n; i++) {
        const retention_part *p = &parts[i];

        part_display(p, name, sizeof name);
        retention_month_label(p->month, month, sizeof month);
        if (p->rows >= 0) {
            snprintf(num, sizeof num, "%lld", p->rows);
            rows += p->rows;
        } else {
            snprintf(num, sizeof num, "?");
            unknown++;
        }
        printf("%-*s  %-7s  %-8s  %12s  %10s\n", width, name, month, part_location(p->location),
               num, p->size);
        hot += p->location == RET_LOC_HOT;
        arch += p->location == RET_LOC_ARCHIVE;
        def += p->location == RET_LOC_DEFAULT;
    }
    printf("%zu tables: %d hot, %d archived, %d default; %lld rows%s; %s\n", n, hot, arch, def, rows,
           unknown > 0 ? " (+ tables never analyzed)" : "", total_size);
    if (exact)
        printf("rows: exact counts\n");
    else
        printf("rows: planner estimates ('?' = never analyzed), DEFAULT counted exactly; "
               "--exact counts all\n");
}

static int part_list(const aq_config *cfg, int exact, int json)
{
    PGconn *pg = part_connect(cfg);
    retention_part *parts = NULL;
    size_t n = 0;
    long long default_rows = 0, bytes = 0;
    char err[1024], months[200] = "", total[32] = "0 bytes";
    int rc = CTL_FAILED;

    if (pg == NULL)
        return CTL_FAILED;
    if (retention_list(pg, cfg->archive_schema, exact, &parts, &n, NULL, err, sizeof err) != 0) {
        fprintf(stderr, PART_PROG " list: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        bytes += parts[i].bytes;
        if (parts[i].location == RET_LOC_DEFAULT && parts[i].rows > 0) {
            default_rows += parts[i].rows;
            part_default_months(pg, &parts[i], months, sizeof months);
        }
    }
    {
        char b[32];
        const char *pv[1] = { b };
        PGresult *r;

        snprintf(b, sizeof b, "%lld", bytes);
        r = PQexecParams(pg, "SELECT pg_size_pretty($1::bigint)", 1, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            snprintf(total, sizeof total, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    if (default_rows > 0)
        fprintf(stderr, PART_PROG ": warning: the DEFAULT partition holds %lld rows (months %s); "
                "run 'auditqctl partitions ensure' to move them into monthly partitions\n",
                default_rows, months[0] ? months : "?");
    if (json)
        rc = part_list_json(parts, n, exact, default_rows, months, total);
    else {
        part_list_table(parts, n, exact, total);
        rc = CTL_OK;
    }
out:
    free(parts);
    PQfinish(pg);
    return rc;
}

/* ---- ensure ------------------------------------------------------------------ */

/* Runs sql expecting rows; prints the error and returns NULL on failure. */
static PGresult *part_query(PGconn *pg, const char *sql, int np, const char *const *pv,
                            const char *what)
{
    PGresult *r = PQexecParams(pg, sql, np, NULL, pv, NULL, NULL, 0);
    char err[1024];

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        retention_pgerr(pg, r, what, err, sizeof err);
        fprintf(stderr, PART_PROG " ensure: %s\n", err);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The session lock that makes one ensure run at a time (workers' hourly
 * calls included). Waits, saying so, when another holds it. */
static int part_lock(PGconn *pg)
{
    PGresult *r = part_query(pg, "SELECT pg_try_advisory_lock(" PART_LOCK_KEY ")", 0, NULL,
                             "taking the partition lock");
    int got;

    if (r == NULL)
        return -1;
    got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (got)
        return 0;
    fprintf(stderr, PART_PROG " ensure: another session is creating partitions; waiting for it\n");
    r = part_query(pg, "SELECT pg_advisory_lock(" PART_LOCK_KEY ")", 0, NULL,
                   "taking the partition lock");
    PQclear(r);
    return r != NULL ? 0 : -1;
}

static int part_ensure(const aq_config *cfg, int ahead, int dry_run)
{
    PGconn *pg = part_connect(cfg);
    PGresult *plan = NULL, *r = NULL;
    char ahead_txt[16];
    const char *pv[1] = { ahead_txt };
    long long moved = 0;
    int created = 0, failed = 0, rc = CTL_FAILED;

    if (pg == NULL)
        return CTL_FAILED;
    snprintf(ahead_txt, sizeof ahead_txt, "%d", ahead);
    r = part_query(pg, "SELECT to_regprocedure('auditq_partition_plan(integer)') IS NOT NULL,"
                   " to_char(date_trunc('month', now() AT TIME ZONE 'UTC'), 'YYYY-MM'),"
                   " to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1::int),"
                   "         'YYYY-MM')", 1, pv,
                   "checking the schema");
    if (r == NULL)
        goto out;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        fprintf(stderr, PART_PROG " ensure: the database schema predates partition upkeep "
                "(migration 002); run 'auditqctl migrate' first\n");
        goto out;
    }
    if (!dry_run && part_lock(pg) != 0)
        goto out;
    plan = part_query(pg, "SELECT to_char(month_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                      " partition_name, default_rows FROM auditq_partition_plan($1)",
                      1, pv, "planning");
    if (plan == NULL)
        goto out;
    for (int i = 0; i < PQntuples(plan); i++) {
        const char *month = PQgetvalue(plan, i, 0);
        const char *name = PQgetvalue(plan, i, 1);
        long long in_default = strtoll(PQgetvalue(plan, i, 2), NULL, 10);
        const char *mv[1] = { month };
        PGresult *m;

        if (dry_run) {
            printf("would create %s\n", name);
            if (in_default > 0)
                printf("would move %lld rows from DEFAULT into %s\n", in_default, name);
            created++;
            moved += in_default;
            continue;
        }
        m = PQexecParams(pg, "SELECT auditq_partition_month($1::timestamptz)", 1, NULL, mv, NULL,
                         NULL, 0);
        if (PQresultStatus(m) != PGRES_TUPLES_OK) {
            char err[1024], what[128];

            snprintf(what, sizeof what, "%s", name);
            retention_pgerr(pg, m, what, err, sizeof err);
            fprintf(stderr, PART_PROG " ensure: %s\n", err);
            failed++;
        } else if (PQgetisnull(m, 0, 0)) {
            printf("%s already exists (made meanwhile by another session)\n", name);
        } else {
            long long n = strtoll(PQgetvalue(m, 0, 0), NULL, 10);

            printf("created %s\n", name);
            if (n > 0)
                printf("moved %lld rows from DEFAULT into %s\n", n, name);
            created++;
            moved += n;
        }
        PQclear(m);
        fflush(stdout);  /* each month is committed: say so as it happens */
    }
    if (dry_run)
        printf("dry run: %d partition(s) would be created, %lld row(s) would be moved out of "
               "DEFAULT; nothing changed\n", created, moved);
    else if (created == 0 && failed == 0)
        printf("nothing to do: every month from %s to %s has its partition, and DEFAULT holds "
               "no rows\n", PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    else
        printf("ensure: %d partition(s) created, %lld row(s) moved out of DEFAULT%s\n", created,
               moved, failed > 0 ? "; some months FAILED, see above" : "");
    rc = failed > 0 ? CTL_FAILED : CTL_OK;
out:
    PQclear(plan);
    PQclear(r);
    PQfinish(pg);  /* also releases the session advisory lock */
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------ */

static int part_usage(const char *what)
{
    fprintf(stderr, PART_PROG ": %s; run 'auditqctl partitions --help'\n", what);
    return CTL_USAGE;
}

/* Parses N of --ahead (0..120). 0, or -1. */
static int part_parse_ahead(const char *s, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 120)
        return -1;
    *out = (int)v;
    return 0;
}

int ctl_partitions(const aq_config *cfg, int argc, char **argv)
{
    int exact = 0, json = 0, dry_run = 0, ahead = cfg->partitions_ahead;
    int list;
    char msg[256];

    if (argc < 2)
        return part_usage("missing subcommand: list or ensure");
    if (strcmp(argv[1], "list") == 0)
        list = 1;
    else if (strcmp(argv[1], "ensure") == 0)
        list = 0;
    else {
        snprintf(msg, sizeof msg, "unknown subcommand '%s' (list or ensure)", argv[1]);
        return part_usage(msg);
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];

        if (list && strcmp(a, "--exact") == 0) {
            exact = 1;
        } else if (list && strcmp(a, "--json") == 0) {
            json = 1;
        } else if (!list && strcmp(a, "--dry-run") == 0) {
            dry_run = 1;
        } else if (!list && (strcmp(a, "--ahead") == 0 || strncmp(a, "--ahead=", 8) == 0)) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[i + 1] : NULL);

            /* The one rule for values (config.h): "--ahead --dry-run" is refused. */
            if (a[7] != '=' && config_arg_value("--ahead", v, msg, sizeof msg) != 0)
                return part_usage(msg);
            if (a[7] != '=')
                i++;
            if (part_parse_ahead(v, &ahead) != 0) {
                snprintf(msg, sizeof msg, "--ahead needs a number of months 0..120 (got '%s')",
                         v != NULL ? v : "");
                return part_usage(msg);
            }
        } else {
            snprintf(msg, sizeof msg, "unknown argument '%s' for '%s'", a, argv[1]);
            return part_usage(msg);
        }
    }
    return list ? part_list(cfg, exact, json) : part_ensure(cfg, ahead, dry_run);
}
