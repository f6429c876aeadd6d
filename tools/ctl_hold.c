/* ctl_hold.c -- `auditqctl hold add | list | release`: legal holds
 * (sql/006_holds.sql; docs/SECURITY.md section 9).
 *
 * A hold is a scope -- a tenant, optionally one actor and an occurred_at
 * window -- that retention must not delete (common/retention_run.c skips
 * every month holding a row in the scope of an active hold). Everything
 * goes through the append-only auditq_hold_history: add and release are
 * rows of it (via auditq_hold_add / auditq_hold_release, which record the
 * PostgreSQL role; the operating-system user is passed along), and the
 * active holds are the view auditq_holds_active. Nothing is ever updated
 * or deleted, so `hold list --all` shows who placed and lifted each hold,
 * when, and why.
 */
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "clock.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_query.h"
#include "retention.h"

#define H_PROG "auditqctl hold"
#define H_REASON_MAX 2000

const char ctl_hold_synopsis[] =
    "hold add|list|release ...        legal holds: months retention must keep";
const char ctl_hold_help[] =
    "Usage: auditqctl [OPTIONS] hold add --tenant T [--actor A] [--since TIME]\n"
    "                                    [--until TIME] --reason TEXT [--json]\n"
    "       auditqctl [OPTIONS] hold list [--all] [--json]\n"
    "       auditqctl [OPTIONS] hold release ID --reason TEXT [--json]\n"
    "\n"
    "A legal hold keeps events from being deleted, whatever the retention policy\n"
    "says: while a hold is active, `retention run` (and the worker's retention\n"
    "thread) neither archives, exports nor drops a month that holds a row in its\n"
    "scope -- it says 'kept ... legal hold ID' instead -- and handles that month\n"
    "normally on the first run after the hold is released.\n"
    "\n"
    "  add       places a hold on the events of tenant T (--tenant, required),\n"
    "            only those of actor A (--actor), only those with occurred_at >=\n"
    "            --since and/or < --until (TIME as for query: 2024-07-19,\n"
    "            2024-07-19T12:00:00Z, ...). --reason (required) says why: a case\n"
    "            or matter number. Prints the hold's id.\n"
    "  list      the active holds, oldest first (--all: the whole history, every\n"
    "            add and release with who, when and why)\n"
    "  release   ends hold ID; --reason (required) says why. Releasing a hold\n"
    "            deletes nothing itself: the next retention run does what the\n"
    "            policy says for the months it kept.\n"
    "\n"
    "  --json      one JSON object instead of the lines\n"
    "  -h, --help  show this help\n"
    "\n"
    "The history (auditq_hold_history) is append-only: UPDATE, DELETE and\n"
    "TRUNCATE are refused, so a hold cannot be removed without a trace. Each row\n"
    "records the PostgreSQL role and the operating-system user that acted.\n"
    "Needs migration 006 (auditqctl migrate).\n"
    "\n"
    "Exit status: 0 ok, 1 connection/SQL error or no such hold (or already\n"
    "released), 2 usage error.\n";

/* The operating-system user running us, for the history. */
static const char *h_os_user(char *buf, size_t n)
{
    struct passwd *pw = getpwuid(geteuid());

    if (pw && pw->pw_name)
        snprintf(buf, n, "%s", pw->pw_name);
    else
        snprintf(buf, n, "uid %u", (unsigned)geteuid());
    return buf;
}

/* The database connection, or NULL after saying why. */
static PGconn *h_connect(const aq_config *cfg)
{
    char err[1024];
    PGconn *pg = retention_connect(cfg, "auditqctl", err, sizeof err);

    if (pg == NULL)
        fprintf(stderr, H_PROG ": %s\n", err);
    return pg;
}

/* Says what failed; names the migration when the holds do not exist yet. */
static void h_sqlerr(PGconn *pg, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char err[1200];

    if (state && strcmp(state, "42883") == 0) {
        fprintf(stderr, H_PROG ": %s: the database has no legal holds yet: run 'auditqctl migrate' "
                "(migration 006)\n", what);
        return;
    }
    retention_pgerr(pg, r, what, err, sizeof err);
    fprintf(stderr, H_PROG ": %s\n", err);
}

static int h_need_reason(const char *reason, const char *cmd)
{
    const char *p = reason;

    while (p && (*p == ' ' || *p == '\t'))
        p++;
    if (!p || !*p) {
        fprintf(stderr, H_PROG " %s: --reason TEXT is required: say why (e.g. a case number)\n", cmd);
        return -1;
    }
    if (strlen(reason) > H_REASON_MAX) {
        fprintf(stderr, H_PROG " %s: --reason is longer than %d bytes\n", cmd, H_REASON_MAX);
        return -1;
    }
    return 0;
}

/* Takes "--name VALUE" or "--name=VALUE" at argv[*i]; 1 if it was name. */
static int h_opt(int argc, char **argv, int *i, const char *name, const char **out, int *bad)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, H_PROG ": %s needs a value\n", name);
        *bad = 1;
        return 1;
    }
    *out = argv[++*i];
    return 1;
}

static int h_add(const aq_config *cfg, int argc, char **argv)
{
    const char *tenant = NULL, *actor = NULL, *since = NULL, *until = NULL, *reason = NULL;
    char since_ts[Q_TS_LEN], until_ts[Q_TS_LEN], why[300], user[128];
    int json = 0, bad = 0;
    int64_t now = clock_now_us(), s_us = 0, u_us = 0;

    for (int i = 2; i < argc && !bad; i++) {
        if (h_opt(argc, argv, &i, "--tenant", &tenant, &bad) || h_opt(argc, argv, &i, "--actor", &actor, &bad) ||
            h_opt(argc, argv, &i, "--since", &since, &bad) || h_opt(argc, argv, &i, "--until", &until, &bad) ||
            h_opt(argc, argv, &i, "--reason", &reason, &bad))
            continue;
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        fprintf(stderr, H_PROG " add: unknown argument '%s'; run 'auditqctl hold --help'\n", argv[i]);
        return CTL_USAGE;
    }
    if (bad)
        return CTL_USAGE;
    if (!tenant || !*tenant) {
        fprintf(stderr, H_PROG " add: --tenant T is required: a hold covers one tenant's events\n");
        return CTL_USAGE;
    }
    if (h_need_reason(reason, "add") != 0)
        return CTL_USAGE;
    if (since && q_parse_time(since, now, &s_us, why, sizeof why) != 0) {
        fprintf(stderr, H_PROG " add: --since %s\n", why);
        return CTL_USAGE;
    }
    if (until && q_parse_time(until, now, &u_us, why, sizeof why) != 0) {
        fprintf(stderr, H_PROG " add: --until %s\n", why);
        return CTL_USAGE;
    }
    if (since && until && s_us >= u_us) {
        fprintf(stderr, H_PROG " add: --since must be before --until\n");
        return CTL_USAGE;
    }
    if (since)
        q_format_time(s_us, since_ts);
    if (until)
        q_format_time(u_us, until_ts);
    PGconn *pg = h_connect(cfg);
    if (!pg)
        return CTL_FAILED;
    const char *pv[6] = { tenant, actor && *actor ? actor : NULL, since ? since_ts : NULL,
                          until ? until_ts : NULL, reason, h_os_user(user, sizeof user) };
    PGresult *r = PQexecParams(pg, "SELECT auditq_hold_add($1, $2, $3::timestamptz, $4::timestamptz, $5, $6)",
                               6, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        h_sqlerr(pg, r, "adding the hold");
        PQclear(r);
        PQfinish(pg);
        return CTL_FAILED;
    }
    const char *id = PQgetvalue(r, 0, 0);
    if (json) {
        printf("{\"hold_id\": %s, \"tenant\": ", id);
        ctl_json_str(stdout, tenant, strlen(tenant));
        printf(", \"actor\": ");
        if (pv[1])
            ctl_json_str(stdout, actor, strlen(actor));
        else
            printf("null");
        printf(", \"since\": %s%s%s, \"until\": %s%s%s, \"reason\": ", since ? "\"" : "",
               since ? since_ts : "null", since ? "\"" : "", until ? "\"" : "", until ? until_ts : "null",
               until ? "\"" : "");
        ctl_json_str(stdout, reason, strlen(reason));
        printf("}\n");
    } else {
        printf("hold %s added: tenant %s%s%s%s%s%s%s; retention keeps every month holding these events "
               "until 'auditqctl hold release %s --reason ...'\n", id, tenant, pv[1] ? ", actor " : "",
               pv[1] ? actor : "", since ? ", since " : "", since ? since_ts : "", until ? ", until " : "",
               until ? until_ts : "", id);
    }
    PQclear(r);
    PQfinish(pg);
    return CTL_OK;
}

static int h_release(const aq_config *cfg, int argc, char **argv)
{
    const char *id = NULL, *reason = NULL;
    char user[128];
    int json = 0, bad = 0;

    for (int i = 2; i < argc && !bad; i++) {
        if (h_opt(argc, argv, &i, "--reason", &reason, &bad))
            continue;
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (!id && argv[i][0] != '-') {
            id = argv[i];
        } else {
            fprintf(stderr, H_PROG " release: unknown argument '%s'; run 'auditqctl hold --help'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    if (bad)
        return CTL_USAGE;
    char *end = NULL;
    long long n = id ? strtoll(id, &end, 10) : 0;
    if (!id || !*id || *end || n <= 0) {
        fprintf(stderr, H_PROG " release: give the hold's ID (a positive number, from 'auditqctl hold list')\n");
        return CTL_USAGE;
    }
    if (h_need_reason(reason, "release") != 0)
        return CTL_USAGE;
    PGconn *pg = h_connect(cfg);
    if (!pg)
        return CTL_FAILED;
    const char *pv[3] = { id, reason, h_os_user(user, sizeof user) };
    PGresult *r = PQexecParams(pg, "SELECT auditq_hold_release($1::bigint, $2, $3)", 3, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && (strcmp(st, "P0002") == 0 || strcmp(st, "23505") == 0) && msg)
            fprintf(stderr, H_PROG " release: %s%s\n", msg,
                    strcmp(st, "P0002") == 0 ? ": 'auditqctl hold list' shows the active holds" : "");
        else
            h_sqlerr(pg, r, "releasing the hold");
        PQclear(r);
        PQfinish(pg);
        return CTL_FAILED;
    }
    if (json) {
        printf("{\"hold_id\": %lld, \"released\": true, \"scope\": ", n);
        ctl_json_str(stdout, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
        printf(", \"reason\": ");
        ctl_json_str(stdout, reason, strlen(reason));
        printf("}\n");
    } else {
        printf("hold %lld released (%s); the next retention run applies the policy to the months it kept\n", n,
               PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    PQfinish(pg);
    return CTL_OK;
}

/* The columns of list: both forms read auditq_hold_history. */
static const char h_cols[] =
    "hold_id, event, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), db_role,"
    " coalesce(os_user, ''), reason, tenant_id, actor_id,"
    " to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " to_char(until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

static void h_json_field(const char *key, const PGresult *r, int row, int col, int first)
{
    printf("%s\"%s\": ", first ? "" : ", ", key);
    if (PQgetisnull(r, row, col))
        printf("null");
    else
        ctl_json_str(stdout, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static int h_list(const aq_config *cfg, int argc, char **argv)
{
    int json = 0, all = 0;
    char sql[1200];

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else {
            fprintf(stderr, H_PROG " list: unknown argument '%s'; run 'auditqctl hold --help'\n", argv[i]);
            return CTL_USAGE;
        }
    }
    if (all)
        snprintf(sql, sizeof sql, "SELECT %s FROM auditq_hold_history ORDER BY seq", h_cols);
    else
        snprintf(sql, sizeof sql, "SELECT %s FROM auditq_hold_history a WHERE event = 'add' AND NOT EXISTS"
                 " (SELECT 1 FROM auditq_hold_history r WHERE r.hold_id = a.hold_id AND r.event = 'release')"
                 " ORDER BY hold_id", h_cols);
    PGconn *pg = h_connect(cfg);
    if (!pg)
        return CTL_FAILED;
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && strcmp(st, "42P01") == 0)
            fprintf(stderr, H_PROG " list: the database has no legal holds yet: run 'auditqctl migrate' "
                    "(migration 006)\n");
        else
            h_sqlerr(pg, r, "listing the holds");
        PQclear(r);
        PQfinish(pg);
        return CTL_FAILED;
    }
    int n = PQntuples(r);
    if (json) {
        printf("{\"%s\": [", all ? "history" : "holds");
        for (int i = 0; i < n; i++) {
            printf("%s\n  {\"hold_id\": %s", i ? "," : "", PQgetvalue(r, i, 0));
            if (all)
                h_json_field("event", r, i, 1, 0);
            h_json_field("at", r, i, 2, 0);
            h_json_field("db_role", r, i, 3, 0);
            h_json_field("os_user", r, i, 4, 0);
            h_json_field("reason", r, i, 5, 0);
            if (!all || strcmp(PQgetvalue(r, i, 1), "add") == 0) {
                h_json_field("tenant", r, i, 6, 0);
                h_json_field("actor", r, i, 7, 0);
                h_json_field("since", r, i, 8, 0);
                h_json_field("until", r, i, 9, 0);
            }
            printf("}");
        }
        printf("%s], \"count\": %d}\n", n ? "\n" : "", n);
    } else if (n == 0) {
        printf(all ? "no hold was ever placed\n" : "no active legal hold\n");
    } else {
        for (int i = 0; i < n; i++) {
            int add = strcmp(PQgetvalue(r, i, 1), "add") == 0;
            printf("hold %s%s%s  %s by %s (%s)  ", PQgetvalue(r, i, 0), all ? " " : "",
                   all ? PQgetvalue(r, i, 1) : "", PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                   PQgetvalue(r, i, 4));
            if (add) {
                printf("tenant ");
                ctl_put_text(stdout, PQgetvalue(r, i, 6), (size_t)PQgetlength(r, i, 6), 200);
                if (!PQgetisnull(r, i, 7)) {
                    printf(", actor ");
                    ctl_put_text(stdout, PQgetvalue(r, i, 7), (size_t)PQgetlength(r, i, 7), 200);
                }
                if (!PQgetisnull(r, i, 8))
                    printf(", since %s", PQgetvalue(r, i, 8));
                if (!PQgetisnull(r, i, 9))
                    printf(", until %s", PQgetvalue(r, i, 9));
                printf("  ");
            }
            printf("reason: ");
            ctl_put_text(stdout, PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5), 400);
            printf("\n");
        }
    }
    PQclear(r);
    PQfinish(pg);
    return CTL_OK;
}

int ctl_hold(const aq_config *cfg, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "add") == 0)
        return h_add(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "release") == 0)
        return h_release(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return h_list(cfg, argc, argv);
    fprintf(stderr, H_PROG ": give add, list or release; run 'auditqctl hold --help'\n");
    return CTL_USAGE;
}
