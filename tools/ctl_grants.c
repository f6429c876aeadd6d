/* ctl_grants.c -- `auditqctl grants [--writer ROLE]... [--reader ROLE]...`.
 *
 * A thin shell around the SQL functions auditq_grant_writer and
 * auditq_grant_reader (sql/003_roles.sql), which hold the privilege rules
 * so that psql, Terraform or any deploy tool can apply the same ones. The
 * role names are passed as parameters and looked up in pg_roles by exact
 * name: nothing typed here is ever pasted into SQL text (the functions
 * quote the name themselves). All roles are granted in one transaction:
 * either every role gets its privileges or none does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "ctl_common.h"

#define GR_PROG "auditqctl grants"
#define GR_MAX_ROLES 32

const char ctl_grants_synopsis[] =
    "grants --writer W --reader R [--json]  grant roles the worker's or readers' rights";

const char ctl_grants_help[] =
    "Usage: auditqctl [OPTIONS] grants [--writer ROLE]... [--reader ROLE]... [--json]\n"
    "\n"
    "Gives existing PostgreSQL roles exactly the privileges auditq needs, in one\n"
    "transaction (SQL functions auditq_grant_writer/auditq_grant_reader, from\n"
    "migration 003):\n"
    "  --writer ROLE   the worker's role: USAGE on the schema, INSERT on\n"
    "                  audit_events and SELECT on its (event_id, occurred_at)\n"
    "                  only (ON CONFLICT needs them), TEMPORARY on the database\n"
    "                  (the COPY staging table), EXECUTE on\n"
    "                  auditq_ensure_partitions (partition upkeep; taken from\n"
    "                  PUBLIC). Any UPDATE, DELETE, TRUNCATE or table-wide SELECT\n"
    "                  it had on audit_events is revoked.\n"
    "  --reader ROLE   auditqctl query and auditors: USAGE on the schema, SELECT\n"
    "                  on audit_events.\n"
    "  --json          one JSON object instead of the lines:\n"
    "                  {\"granted\": [{\"role\": R, \"rights\": \"writer\" or \"reader\",\n"
    "                  \"detail\": what was granted}, ...]}\n"
    "Each option may be repeated. ROLE is the exact role name (case and spaces\n"
    "kept; a name that starts with '-' is written --writer=-name). Roles are\n"
    "not created here: create them first, e.g.\n"
    "  CREATE ROLE auditq_writer LOGIN PASSWORD '...';\n"
    "Refused: the owner of audit_events, a member of the owner, a superuser\n"
    "(they could disable the append-only triggers). Run it as the owner of\n"
    "audit_events (the role that ran migrate), with the same database_url.\n"
    "Running it again is harmless. See docs/SECURITY.md.\n"
    "\n"
    "Exit status: 0 ok, 1 connection or SQL error (nothing granted), 2 usage error.\n";

typedef struct gr_role {
    const char *name;
    int writer;
} gr_role;

/* The error of r (or of the connection) as one line into err, and
 * PostgreSQL's hint (or ours) into hint ("" when none). */
static void gr_error(PGconn *conn, const PGresult *r, char *err, size_t errlen, char *hintbuf,
                     size_t hintlen)
{
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *hint = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL;

    hintbuf[0] = '\0';
    if (!primary) {
        ctl_first_line(PQerrorMessage(conn), err, errlen);
        if (!err[0])
            snprintf(err, errlen, "connection to the server lost");
        return;
    }
    /* 42883: the functions are missing, the schema predates migration 003. */
    if (state && strcmp(state, "42883") == 0)
        hint = "run 'auditqctl migrate' first (migration 003 adds the grant functions)";
    snprintf(err, errlen, "%s (SQLSTATE %s)", primary, state ? state : "?????");
    if (hint)
        snprintf(hintbuf, hintlen, "%s", hint);
}

static int gr_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    char hint[512];

    if (rc != 0)
        gr_error(conn, r, err, errlen, hint, sizeof hint);
    PQclear(r);
    return rc;
}

int ctl_grants(const aq_config *cfg, int argc, char **argv)
{
    gr_role roles[GR_MAX_ROLES];
    char lines[GR_MAX_ROLES][512];
    int n = 0, rc = CTL_FAILED, json = 0;
    char err[1024], hint[512];
    PGconn *conn = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *name;
        int writer = strncmp(a, "--writer", 8) == 0 && (a[8] == '\0' || a[8] == '=');
        int attached = strchr(a, '=') != NULL;

        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (!writer && !(strncmp(a, "--reader", 8) == 0 && (a[8] == '\0' || a[8] == '='))) {
            fprintf(stderr, GR_PROG ": unknown argument '%s'; run 'auditqctl grants --help'\n", a);
            return CTL_USAGE;
        }
        if (attached) {
            name = a + 9;  /* --writer=ROLE: taken as written */
        } else if (config_arg_value(a, i + 1 < argc ? argv[i + 1] : NULL, err, sizeof err) == 0) {
            /* The one rule for values (config.h): "--writer --reader r" is refused. */
            name = argv[++i];
        } else {
            fprintf(stderr, GR_PROG ": %s%s\n", err, i + 1 < argc ? "" : " (a role name)");
            return CTL_USAGE;
        }
        if (name[0] == '\0') {
            fprintf(stderr, GR_PROG ": %s needs a role name\n", writer ? "--writer" : "--reader");
            return CTL_USAGE;
        }
        if (n == GR_MAX_ROLES) {
            fprintf(stderr, GR_PROG ": at most %d roles at a time\n", GR_MAX_ROLES);
            return CTL_USAGE;
        }
        roles[n].name = name;
        roles[n++].writer = writer;
    }
    if (n == 0) {
        fprintf(stderr, GR_PROG ": name at least one --writer ROLE or --reader ROLE; see --help\n");
        return CTL_USAGE;
    }

    conn = ctl_pg_connect(cfg, GR_PROG, NULL);
    if (!conn)
        return CTL_FAILED;
    if (gr_exec(conn, "SET client_min_messages = warning; BEGIN", err, sizeof err) != 0) {
        fprintf(stderr, GR_PROG ": %s\n", err);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const char *params[1] = {roles[i].name};
        PGresult *r = PQexecParams(conn,
                                   roles[i].writer
                                       ? "SELECT auditq_grant_writer(oid::regrole) FROM pg_roles WHERE rolname = $1"
                                       : "SELECT auditq_grant_reader(oid::regrole) FROM pg_roles WHERE rolname = $1",
                                   1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            gr_error(conn, r, err, sizeof err, hint, sizeof hint);
            fprintf(stderr, GR_PROG ": %s %s: %s; nothing was granted\n", roles[i].writer ? "--writer" : "--reader",
                    roles[i].name, err);
            if (hint[0])
                fprintf(stderr, GR_PROG ": hint: %s\n", hint);
            PQclear(r);
            goto out;
        }
        if (PQntuples(r) != 1) {
            fprintf(stderr, GR_PROG ": role '%s' does not exist; create it first (CREATE ROLE ... LOGIN "
                    "PASSWORD '...'); nothing was granted\n", roles[i].name);
            PQclear(r);
            goto out;
        }
        snprintf(lines[i], sizeof lines[i], "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    if (gr_exec(conn, "COMMIT", err, sizeof err) != 0) {
        fprintf(stderr, GR_PROG ": COMMIT: %s; nothing was granted\n", err);
        goto out;
    }
    if (json) {
        /* {"granted": [{"role": R, "rights": "writer"|"reader", "detail": D}, ...]}
         * in command-line order; detail is the grant function's summary line. */
        fputs("{\"granted\": [", stdout);
        for (int i = 0; i < n; i++) {
            fputs(i ? ", {\"role\": " : "{\"role\": ", stdout);
            ctl_json_str(stdout, roles[i].name, strlen(roles[i].name));
            printf(", \"rights\": \"%s\", \"detail\": ", roles[i].writer ? "writer" : "reader");
            ctl_json_str(stdout, lines[i], strlen(lines[i]));
            fputc('}', stdout);
        }
        fputs("]}\n", stdout);
    } else {
        for (int i = 0; i < n; i++)
            printf("%s\n", lines[i]);
    }
    rc = CTL_OK;
out:
    PQfinish(conn); /* an open transaction is rolled back */
    return rc;
}
