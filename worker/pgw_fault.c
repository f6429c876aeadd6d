/* pgw_fault.c -- how the writer judges a failure (pgw.h): SQLSTATE
 * classes, the faults /readyz and the logs name with their fixes, libpq's
 * connect messages, and the retry / probe / release step of a failing
 * batch. Pure functions, no I/O.
 */
#include "pgw.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
    pgconn_flatten(out, n, tmp);
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

