/* retention.c -- listing audit_events' partitions, the retention plan (a
 * pure function), and the SQL helpers the module shares (see retention.h
 * for the policy, the locks, the crash windows and the privileges).
 *
 * The module is three files, one concern each:
 *   retention.c         helpers, connecting, listing, the plan
 *   retention_run.c     one run: preflight, lock, probe, the archive /
 *                       merge / drop steps, each its own transaction
 *   retention_export.c  the csv export: COPY -> gzip + sha256 file ->
 *                       manifest -> DROP, and the file helpers
 * retention_int.h holds what they share.
 */
#include "retention_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgconn.h"
#include "text.h"

#define RET_MONTHLY_RE "^audit_events_[0-9]{4}_(0[1-9]|1[0-2])$"

/* ---- small helpers --------------------------------------------------------- */

void retention_month_label(int month, char *out, size_t outlen)
{
    if (month < 0)
        snprintf(out, outlen, "-");
    else
        snprintf(out, outlen, "%04d-%02d", month / 12, month % 12 + 1);
}

int retention_hot_from(int current_month, int hot_months)
{
    return current_month - (hot_months - 1);
}

int retention_keep_from(int current_month, int retain_months)
{
    return current_month - (retain_months - 1);
}

static int buf_sink(void *ctx, const char *p, size_t n)
{
    return aq_buf_append(ctx, p, n);
}

int retention_json_append(aq_buf *b, const char *s)
{
    return text_json_string(buf_sink, b, s, strlen(s), 0);
}

/* err = "what: <server message> (SQLSTATE x)", plus the fix for the cases
 * an operator meets: a lock we could not get, a missing privilege. r may
 * be NULL (connection lost, out of memory): the connection's message then. */
void retention_pgerr(PGconn *pg, const PGresult *r, const char *what, char *err, size_t errlen)
{
    const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *fix = "";

    if (msg == NULL) {
        const char *m = PQerrorMessage(pg);

        snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(m, "\n"),
                 m[0] ? m : "connection to the server lost");
        return;
    }
    if (state != NULL && strcmp(state, "55P03") == 0)
        fix = "; a long-running query or transaction holds a conflicting lock on audit_events: "
              "nothing was changed by this step, run again later";
    else if (state != NULL && strcmp(state, "42501") == 0)
        fix = "; run as the owner of audit_events (the role that ran 'auditqctl migrate')";
    snprintf(err, errlen, "%s: %s (SQLSTATE %s)%s", what, msg, state != NULL ? state : "?????", fix);
}

/* Runs one statement (or a list without parameters) expecting no rows or
 * rows we ignore. 0, or -1 with err. */
int ret_cmd(PGconn *pg, const char *sql, int np, const char *const *pv, const char *what,
            char *err, size_t errlen)
{
    PGresult *r = np > 0 ? PQexecParams(pg, sql, np, NULL, pv, NULL, NULL, 0) : PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        retention_pgerr(pg, r, what, err, errlen);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* Runs a query expecting rows. The result (caller PQclear-s) or NULL with err. */
PGresult *ret_query(PGconn *pg, const char *sql, int np, const char *const *pv,
                    const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(pg, sql, np, NULL, pv, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        retention_pgerr(pg, r, what, err, errlen);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Ends a failed transaction, if one is open; the error is already in err. */
void ret_rollback(PGconn *pg)
{
    if (PQtransactionStatus(pg) != PQTRANS_IDLE)
        PQclear(PQexec(pg, "ROLLBACK"));
}

/* out = "schema"."name" (each part quoted only if it must be), or "name"
 * when schema is NULL. 0, or -1 with err. */
int ret_qname(PGconn *pg, const char *schema, const char *name, char *out, size_t outlen,
              char *err, size_t errlen)
{
    char *qs = schema != NULL ? PQescapeIdentifier(pg, schema, strlen(schema)) : NULL;
    char *qn = PQescapeIdentifier(pg, name, strlen(name));
    int rc = -1;

    if (qn == NULL || (schema != NULL && qs == NULL)) {
        snprintf(err, errlen, "cannot quote %s: %s", name, PQerrorMessage(pg));
        goto out;
    }
    if ((size_t)snprintf(out, outlen, "%s%s%s", qs != NULL ? qs : "", qs != NULL ? "." : "",
                         qn) >= outlen) {
        snprintf(err, errlen, "name too long: %s", name);
        goto out;
    }
    rc = 0;
out:
    PQfreemem(qs);
    PQfreemem(qn);
    return rc;
}

/* ---- connecting and listing ------------------------------------------------ */

PGconn *retention_connect(const aq_config *cfg, const char *component, char *err, size_t errlen)
{
    const pgconn_opts o = { .conninfo = cfg->database_url, .component = component,
                            .connect_timeout_s = cfg->pg_connect_timeout_s };

    return pgconn_open(&o, err, errlen);
}

/* One row per table: its oid, schema, name, location, bound, the month it
 * holds (-1 unless it is a managed monthly table: named audit_events_YYYY_MM
 * and, if attached, bound to exactly that month), the reltuples estimate,
 * its size. Needs TimeZone = UTC and DateStyle = ISO (RET_BEGIN) for the
 * bound comparison, which is against the text PostgreSQL prints. */
#define RET_LIST_SQL(EST, BYTES)                                                                   \
    "WITH parent AS (SELECT to_regclass('audit_events') AS relid)," \
    " parts AS (" \
    "  SELECT c.oid AS relid, n.nspname, c.relname," \
    "         CASE WHEN c.oid = pt.partdefid THEN 2 ELSE 0 END AS loc," \
    "         pg_get_expr(c.relpartbound, c.oid) AS bound" \
    "    FROM parent p" \
    "    JOIN pg_inherits i ON i.inhparent = p.relid" \
    "    JOIN pg_partitioned_table pt ON pt.partrelid = p.relid" \
    "    JOIN pg_class c ON c.oid = i.inhrelid" \
    "    JOIN pg_namespace n ON n.oid = c.relnamespace" \
    "  UNION ALL" \
    "  SELECT c.oid, n.nspname, c.relname, 1, ''" \
    "    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace" \
    "   WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition" \
    "     AND c.relname ~ '" RET_MONTHLY_RE "'" \
    " ), named AS (" \
    "  SELECT x.*, CASE WHEN x.relname ~ '" RET_MONTHLY_RE "'" \
    "    THEN make_timestamptz(substr(x.relname, 14, 4)::int, substr(x.relname, 19, 2)::int," \
    "                          1, 0, 0, 0, 'UTC') END AS m" \
    "    FROM parts x" \
    " ), sized AS (" \
    "  SELECT x.*, CASE WHEN x.m IS NOT NULL AND (x.loc = 1 OR x.bound =" \
    "              format('FOR VALUES FROM (%L) TO (%L)', x.m, x.m + interval '1 month'))" \
    "         THEN extract(year FROM x.m)::int * 12 + extract(month FROM x.m)::int - 1" \
    "         ELSE -1 END AS month," \
    "         " EST " AS est," \
    "         " BYTES " AS bytes" \
    "    FROM named x JOIN pg_class c ON c.oid = x.relid" \
    " )" \
    " SELECT relid, nspname, relname, loc, coalesce(bound, ''), month, est, bytes," \
    "        pg_size_pretty(bytes)" \
    "   FROM sized" \
    "  ORDER BY loc = 2, month = -1, month, loc DESC, relname"

static const char ret_list_sql[] =
    RET_LIST_SQL("CASE WHEN c.reltuples < 0 THEN -1 ELSE c.reltuples::bigint END",
                 "pg_total_relation_size(x.relid)");
/* On Citus (docs/SCALING.md) a distributed table's rows and bytes are in
 * its shards on the workers: the coordinator's table is an empty
 * placeholder, so its reltuples and size would say 0. Sizes come from
 * citus_total_relation_size; the row estimate is unknown ('?', or
 * --exact counts). */
static const char ret_list_sql_citus[] =
    RET_LIST_SQL("CASE WHEN x.relid IN (SELECT logicalrelid FROM pg_dist_partition) THEN -1"
                 " WHEN c.reltuples < 0 THEN -1 ELSE c.reltuples::bigint END",
                 "CASE WHEN x.relid IN (SELECT logicalrelid FROM pg_dist_partition)"
                 " THEN citus_total_relation_size(x.relid) ELSE pg_total_relation_size(x.relid) END");

/* count(*) of one table into *rows. 0, or -1 with err. */
static int ret_count(PGconn *pg, const retention_part *p, long long *rows, char *err,
                     size_t errlen)
{
    char q[300], sql[400], what[200];
    PGresult *r;

    if (ret_qname(pg, p->schema, p->name, q, sizeof q, err, errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", q);
    snprintf(what, sizeof what, "counting the rows of %s.%s", p->schema, p->name);
    r = ret_query(pg, sql, 0, NULL, what, err, errlen);
    if (r == NULL)
        return -1;
    *rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

/* retention_list's body, inside the caller's transaction. */
static int ret_list_tx(PGconn *pg, const char *archive_schema, int exact, retention_part **parts,
                       size_t *n, int *current_month, char *err, size_t errlen)
{
    const char *params[1] = { archive_schema };
    retention_part *v = NULL;
    PGresult *r;
    int rows, rc = -1, citus;

    r = ret_query(pg, "SELECT to_regclass('audit_events') IS NOT NULL,"
                  " extract(year FROM now())::int * 12 + extract(month FROM now())::int - 1,"
                  " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
                  0, NULL, "looking up audit_events", err, errlen);
    if (r == NULL)
        return -1;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        snprintf(err, errlen, "table audit_events not found (search_path of database_url's "
                 "role): run 'auditqctl migrate' first, or fix database_url");
        PQclear(r);
        return -1;
    }
    if (current_month != NULL)
        *current_month = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
    citus = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    PQclear(r);

    r = ret_query(pg, citus ? ret_list_sql_citus : ret_list_sql, 1, params, "listing the partitions", err, errlen);
    if (r == NULL)
        return -1;
    rows = PQntuples(r);
    v = calloc(rows > 0 ? (size_t)rows : 1, sizeof *v);
    if (v == NULL) {
        snprintf(err, errlen, "out of memory listing %d partitions", rows);
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        retention_part *p = &v[i];

        p->oid = (unsigned int)strtoul(PQgetvalue(r, i, 0), NULL, 10);
        snprintf(p->schema, sizeof p->schema, "%s", PQgetvalue(r, i, 1));
        snprintf(p->name, sizeof p->name, "%s", PQgetvalue(r, i, 2));
        p->location = (int)strtol(PQgetvalue(r, i, 3), NULL, 10);
        snprintf(p->bound, sizeof p->bound, "%s", PQgetvalue(r, i, 4));
        p->month = (int)strtol(PQgetvalue(r, i, 5), NULL, 10);
        p->rows = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        p->bytes = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        snprintf(p->size, sizeof p->size, "%s", PQgetvalue(r, i, 8));
        p->recv_month = -1;
        if ((exact || p->location == RET_LOC_DEFAULT) && ret_count(pg, p, &p->rows, err, errlen) != 0)
            goto out;
    }
    *parts = v;
    *n = (size_t)rows;
    v = NULL;
    rc = 0;
out:
    free(v);
    PQclear(r);
    return rc;
}

int retention_list(PGconn *pg, const char *archive_schema, int exact, retention_part **parts,
                   size_t *n, int *current_month, char *err, size_t errlen)
{
    *parts = NULL;
    *n = 0;
    if (ret_cmd(pg, RET_BEGIN, 0, NULL, "starting a transaction", err, errlen) != 0)
        return -1;
    if (ret_list_tx(pg, archive_schema, exact, parts, n, current_month, err, errlen) != 0 ||
        ret_cmd(pg, "COMMIT", 0, NULL, "listing the partitions", err, errlen) != 0) {
        ret_rollback(pg);
        free(*parts);
        *parts = NULL;
        *n = 0;
        return -1;
    }
    return 0;
}

/* ---- the plan ------------------------------------------------------------------ */

/* Is there an archived table named like parts[i]? */
static int ret_in_archive(const retention_part *parts, size_t n, size_t i)
{
    for (size_t j = 0; j < n; j++)
        if (j != i && parts[j].location == RET_LOC_ARCHIVE && strcmp(parts[j].name, parts[i].name) == 0)
            return 1;
    return 0;
}

size_t retention_plan(const retention_part *parts, size_t n, int current_month, int hot_months,
                      int retain_months, int archive_mode, retention_action *out, size_t max)
{
    int hot_from = retention_hot_from(current_month, hot_months);
    int keep_from = retention_keep_from(current_month, retain_months);
    size_t k = 0;

#define RET_ADD(kind_, i_)                                   \
    do {                                                     \
        if (k < max) {                                       \
            out[k].kind = (kind_);                           \
            out[k].part = (i_);                              \
        }                                                    \
        k++;                                                 \
    } while (0)

    for (size_t i = 0; i < n; i++) {
        const retention_part *p = &parts[i];
        /* The later of the occurred_at month and the month its newest row
         * arrived (retention.h, "The producer's clock"). */
        int eff = p->recv_month > p->month ? p->recv_month : p->month;

        if (p->month < 0 || p->location == RET_LOC_DEFAULT)
            continue;
        if (p->location == RET_LOC_HOT) {
            if (p->month >= hot_from)
                continue;
            if (eff >= hot_from || (p->month < keep_from && eff >= keep_from))
                RET_ADD(RET_ACT_SKIP, i);
            if (eff >= hot_from)
                continue;
            if (eff < keep_from) {
                RET_ADD(RET_ACT_DROP, i);
            } else if (archive_mode == ARCHIVE_CSV) {
                RET_ADD(RET_ACT_ARCHIVE, i);
                RET_ADD(RET_ACT_EXPORT, i);
            } else {
                RET_ADD(ret_in_archive(parts, n, i) ? RET_ACT_MERGE : RET_ACT_ARCHIVE, i);
            }
        } else if (eff < keep_from) {
            RET_ADD(RET_ACT_DROP, i);
        } else {
            if (p->month < keep_from)
                RET_ADD(RET_ACT_SKIP, i);
            if (archive_mode == ARCHIVE_CSV)
                RET_ADD(RET_ACT_EXPORT, i);
        }
    }
#undef RET_ADD
    return k;
}

