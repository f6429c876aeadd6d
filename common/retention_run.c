/* retention_run.c -- applying the retention policy: one run and its
 * steps (see retention.h for the policy, the locks, the crash windows and
 * the privileges; retention_export.c for the csv export step).
 *
 * DESIGN
 * retention_run = preflight (audit_events found, we own it, settings sane)
 * -> session advisory lock (RET_LOCK_KEY; try only: two overlapping cron
 * runs must not queue) -> retention_list -> retention_plan (pure) -> one
 * transaction per action -> unlock. Every transaction starts with SET LOCAL
 * (UTC, ISO dates, no statement_timeout, lock_timeout 5 s), so the caller's
 * session settings survive, and takes the partition DDL lock of
 * auditq_ensure_partitions when it changes audit_events.
 *
 * Legal holds (retention.h): after the plan, every table with an action is
 * checked against auditq_holds_active; a held table gets one "hold" report
 * instead of its actions. Each action's transaction checks again under a
 * SHARE lock of the hold history (ret_hold_guard), which closes the window
 * between that first check and the DETACH/DROP.
 */
#include "retention_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- running -------------------------------------------------------------------- */

void ret_emit(ret_run *r, const retention_event *ev)
{
    if (r->report != NULL)
        r->report(r->ctx, ev);
}

static void ret_emitf(ret_run *r, int kind, const char *fmt, ...)
{
    retention_event ev;
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.line = line;
    ev.month = -1;
    ev.rows = -1;
    ret_emit(r, &ev);
}

/* How a table is shown: hot ones by name (they sit next to audit_events),
 * archived ones with their schema. */
void ret_display(const retention_part *p, char *out, size_t outlen)
{
    if (p->location == RET_LOC_ARCHIVE)
        snprintf(out, outlen, "%s.%s", p->schema, p->name);
    else
        snprintf(out, outlen, "%s", p->name);
}

/* Reports one action. */
void ret_action(ret_run *r, const char *action, const retention_part *p, const char *target,
                const char *manifest, const char *sha256, long long rows, int done,
                const char *fmt, ...)
{
    retention_event ev;
    char line[1600], table[140];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ret_display(p, table, sizeof table);
    memset(&ev, 0, sizeof ev);
    ev.kind = RET_EV_ACTION;
    ev.line = line;
    ev.action = action;
    ev.table = table;
    ev.target = target;
    ev.manifest = manifest;
    ev.sha256 = sha256;
    ev.month = p->month;
    ev.rows = rows;
    ev.done = done;
    ret_emit(r, &ev);
}

/* BEGIN with our settings, plus the partition DDL lock when ddl. */
int ret_begin(ret_run *r, int ddl, const char *what)
{
    if (ret_cmd(r->pg, RET_BEGIN, 0, NULL, what, r->err, r->errlen) != 0)
        return -1;
    if (ddl && ret_cmd(r->pg, "SELECT pg_advisory_xact_lock(" RET_PART_KEY ")", 0, NULL, what,
                       r->err, r->errlen) != 0)
        return -1;
    /* On Citus, a distributed table with triggers is refused ("triggers are
     * not supported on distributed tables") unless this is on: for this
     * transaction only, and only where the extension is (docs/SCALING.md). */
    if (ddl && ret_cmd(r->pg, "SELECT set_config('citus.enable_unsafe_triggers', 'on', true)"
                       " WHERE EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')", 0, NULL, what,
                       r->err, r->errlen) != 0)
        return -1;
    return 0;
}

int ret_commit(ret_run *r, const char *what)
{
    return ret_cmd(r->pg, "COMMIT", 0, NULL, what, r->err, r->errlen);
}

/* Makes sure the archived table (oid, quoted name q) has the append-only
 * triggers: the row trigger (DETACH removed the clone of the parent's) and
 * the TRUNCATE one (per table, it survives DETACH; checked all the same). */
static int ret_protect(ret_run *r, unsigned int oid, const char *q, const char *what)
{
    /* bit 1 row, 8 delete, 16 update, 32 truncate (pg_trigger.tgtype). */
    static const char check[] =
        "SELECT coalesce(bool_or((t.tgtype & 25) = 25), false),"
        "       coalesce(bool_or((t.tgtype & 33) = 32), false)"
        "  FROM pg_trigger t"
        " WHERE t.tgrelid = $1::oid AND t.tgenabled <> 'D'"
        "   AND t.tgfoid = to_regprocedure(format('%I.auditq_refuse_modification()', $2::text))";
    char oidtxt[16], sql[700], fn[200];
    const char *pv[2] = { oidtxt, r->parent_schema };
    PGresult *res;
    int row_ok, trunc_ok;

    snprintf(oidtxt, sizeof oidtxt, "%u", oid);
    res = ret_query(r->pg, check, 2, pv, what, r->err, r->errlen);
    if (res == NULL)
        return -1;
    row_ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    trunc_ok = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    PQclear(res);
    if (ret_qname(r->pg, r->parent_schema, "auditq_refuse_modification", fn, sizeof fn, r->err,
                  r->errlen) != 0)
        return -1;
    if (!row_ok) {
        snprintf(sql, sizeof sql, "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE"
                 " ON %s FOR EACH ROW EXECUTE FUNCTION %s()", q, fn);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
            return -1;
    }
    if (!trunc_ok) {
        snprintf(sql, sizeof sql, "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE"
                 " ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()", q, fn);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
            return -1;
    }
    return 0;
}

/* Integrity evidence (sql/005_integrity.sql, docs/INTEGRITY.md): the rows
 * of table q (month p->month) are about to leave audit_events -- `action`
 * "detach" (archived) or "drop". Records their count and the hash of their
 * leaves as a retention record, in the transaction that removes them, so
 * `auditqctl verify` reports them as archived, verified by hash, rather
 * than deleted. A database without the evidence (migrated before 005)
 * records nothing. 0, or -1 with r->err. */
static int ret_seal_removal(ret_run *r, const retention_part *p, const char *q, const char *action,
                            const char *what)
{
    char from[40];
    const char *pv[3] = { q, from, action };
    PGresult *res = ret_query(r->pg, "SELECT to_regprocedure('auditq_evidence_retain(regclass, timestamptz, text)')"
                              " IS NOT NULL", 0, NULL, what, r->err, r->errlen);
    int have;

    if (res == NULL)
        return -1;
    have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!have)
        return 0;
    snprintf(from, sizeof from, "%04d-%02d-01 00:00:00+00", p->month / 12, p->month % 12 + 1);
    res = ret_query(r->pg, "SELECT auditq_evidence_retain($1::regclass, $2::timestamptz, $3)", 3, pv,
                    what, r->err, r->errlen);
    if (res == NULL)
        return -1;
    PQclear(res);
    return 0;
}

/* ---- legal holds ----------------------------------------------------------------- */

/* Finds the holds' view and table (migration 006); none: no holds. */
static int ret_holds_init(ret_run *r)
{
    const char *pv[1] = { r->parent_schema };
    PGresult *res = ret_query(r->pg, "SELECT to_regclass(format('%I.auditq_holds_active', $1::text)) IS NOT NULL",
                              1, pv, "looking up auditq_holds_active", r->err, r->errlen);
    int have;

    if (res == NULL)
        return -1;
    have = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    r->holds_q[0] = r->hold_hist_q[0] = '\0';
    if (!have)
        return 0;
    if (ret_qname(r->pg, r->parent_schema, "auditq_holds_active", r->holds_q, sizeof r->holds_q, r->err,
                  r->errlen) != 0 ||
        ret_qname(r->pg, r->parent_schema, "auditq_hold_history", r->hold_hist_q, sizeof r->hold_hist_q,
                  r->err, r->errlen) != 0)
        return -1;
    return 0;
}

/* The lowest active hold covering rows of p, into p->hold_* (hold_id 0:
 * none). The EXISTS runs on the table's (tenant_id, occurred_at) index. */
static int ret_hold_find(ret_run *r, retention_part *p, const char *what)
{
    char q[300], sql[1600];
    PGresult *res;

    p->hold_id = 0;
    if (!r->holds_q[0])
        return 0;
    if (ret_qname(r->pg, p->schema, p->name, q, sizeof q, r->err, r->errlen) != 0)
        return -1;
    snprintf(sql, sizeof sql,
             "SELECT h.hold_id, 'tenant ' || h.tenant_id || coalesce(', actor ' || h.actor_id, '')"
             " || coalesce(', since ' || to_char(h.since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', '')"
             " || coalesce(', until ' || to_char(h.until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', ''),"
             " h.reason FROM %s h"
             " WHERE EXISTS (SELECT 1 FROM %s e WHERE e.tenant_id = h.tenant_id"
             "   AND (h.actor_id IS NULL OR e.actor_id = h.actor_id)"
             "   AND (h.since IS NULL OR e.occurred_at >= h.since)"
             "   AND (h.until IS NULL OR e.occurred_at < h.until))"
             " ORDER BY h.hold_id LIMIT 1", r->holds_q, q);
    res = ret_query(r->pg, sql, 0, NULL, what, r->err, r->errlen);
    if (res == NULL)
        return -1;
    if (PQntuples(res) > 0) {
        p->hold_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        snprintf(p->hold_scope, sizeof p->hold_scope, "%s", PQgetvalue(res, 0, 1));
        snprintf(p->hold_reason, sizeof p->hold_reason, "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return 0;
}

int ret_hold_guard(ret_run *r, const retention_part *p, const char *what)
{
    retention_part t = *p;
    char sql[400];

    if (!r->holds_q[0])
        return 0;
    snprintf(sql, sizeof sql, "LOCK TABLE %s IN SHARE MODE", r->hold_hist_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_hold_find(r, &t, what) != 0)
        return -1;
    if (t.hold_id > 0) {
        snprintf(r->err, r->errlen, "%s: legal hold %lld (%s) was placed on rows of this table during the "
                 "run; nothing changed: the table stays until the hold is released", what, t.hold_id,
                 t.hold_scope);
        return -1;
    }
    return 0;
}

/* Checks every table the plan would change. */
static int ret_probe_holds(ret_run *r, retention_part *parts, const retention_action *acts, size_t nacts)
{
    for (size_t i = 0; i < nacts; i++) {
        retention_part *p = &parts[acts[i].part];
        char what[200], table[140];

        if (acts[i].kind == RET_ACT_SKIP || p->hold_id != 0)
            continue;
        ret_display(p, table, sizeof table);
        snprintf(what, sizeof what, "looking for legal holds on %s", table);
        if (ret_hold_find(r, p, what) != 0)
            return -1;
        if (p->hold_id == 0)
            p->hold_id = -1; /* checked: none */
    }
    return 0;
}

/* Reports a table a legal hold keeps (once per table). */
static void ret_do_hold(ret_run *r, retention_part *p)
{
    retention_event ev;
    char line[1400], table[140], month[16];

    if (p->hold_reported)
        return;
    p->hold_reported = 1;
    ret_display(p, table, sizeof table);
    retention_month_label(p->month, month, sizeof month);
    snprintf(line, sizeof line, "kept %s (month %s): legal hold %lld (%s; reason: %s) covers rows of it; "
             "not archived or dropped until the hold is released", table, month, p->hold_id, p->hold_scope,
             p->hold_reason);
    r->held++;
    memset(&ev, 0, sizeof ev);
    ev.kind = RET_EV_ACTION;
    ev.line = line;
    ev.action = "hold";
    ev.table = table;
    ev.hold_id = p->hold_id;
    ev.hold_scope = p->hold_scope;
    ev.month = p->month;
    ev.rows = -1;
    ev.done = !r->dry_run;
    ret_emit(r, &ev);
}

/* Hot month -> archive_schema (both modes; in csv mode it waits there for
 * its export). On success p describes the archived table. */
static int ret_do_archive(ret_run *r, retention_part *p)
{
    char hot_q[300], arch_tq[300], sql[800], what[200], month[16], target[140], *lit = NULL;
    int rc = -1;

    snprintf(target, sizeof target, "%s.%s", r->cfg->archive_schema, p->name);
    if (r->dry_run) {
        ret_action(r, "archive", p, target, NULL, NULL, -1, 0, "would archive %s -> %s", p->name,
                   target);
        goto moved;
    }
    snprintf(what, sizeof what, "archiving %s", p->name);
    retention_month_label(p->month, month, sizeof month);
    if (ret_qname(r->pg, p->schema, p->name, hot_q, sizeof hot_q, r->err, r->errlen) != 0 ||
        ret_qname(r->pg, r->cfg->archive_schema, p->name, arch_tq, sizeof arch_tq, r->err,
                  r->errlen) != 0 ||
        ret_begin(r, 1, what) != 0 || ret_hold_guard(r, p, what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", r->arch_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 ||
        ret_seal_removal(r, p, hot_q, "detach", what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s", r->parent_q, hot_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    snprintf(sql, sizeof sql, "ALTER TABLE %s SET SCHEMA %s", hot_q, r->arch_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    if (ret_protect(r, p->oid, arch_tq, what) != 0)
        goto out;
    {
        char note[200];

        snprintf(note, sizeof note, "auditq: month %s of %s.audit_events, archived by retention",
                 month, r->parent_schema);
        lit = PQescapeLiteral(r->pg, note, strlen(note));
        if (lit == NULL) {
            snprintf(r->err, r->errlen, "%s: %s", what, PQerrorMessage(r->pg));
            goto out;
        }
        snprintf(sql, sizeof sql, "COMMENT ON TABLE %s IS %s", arch_tq, lit);
        if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
            goto out;
    }
    r->archived++;
    ret_action(r, "archive", p, target, NULL, NULL, -1, 1, "archived %s -> %s", p->name, target);
moved:
    snprintf(p->schema, sizeof p->schema, "%s", r->cfg->archive_schema);
    p->location = RET_LOC_ARCHIVE;
    rc = 0;
out:
    PQfreemem(lit);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* "a", "b", ... -- the column list of audit_events, quoted by the server. */
static int ret_columns(ret_run *r, char *out, size_t outlen, const char *what)
{
    PGresult *res = ret_query(r->pg,
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = to_regclass('audit_events') AND attnum > 0 AND NOT attisdropped",
        0, NULL, what, r->err, r->errlen);

    if (res == NULL)
        return -1;
    if ((size_t)snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0)) >= outlen) {
        snprintf(r->err, r->errlen, "%s: column list too long", what);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

/* Schema mode, a hot month whose table is already archived (its late rows:
 * DEFAULT rows of an archived month, moved by `partitions ensure` into a new
 * hot table): append them to the archived table and drop the hot one, in
 * one transaction. DETACH comes first, so no insert can reach the hot table
 * between the copy and the drop; that holds audit_events' ACCESS EXCLUSIVE
 * lock for the copy, which late rows keep short. */
static int ret_do_merge(ret_run *r, retention_part *p)
{
    char hot_q[300], arch_tq[300], cols[4096], sql[9000], what[300], target[140];
    PGresult *res = NULL;
    long long rows;
    int rc = -1;

    snprintf(target, sizeof target, "%s.%s", r->cfg->archive_schema, p->name);
    if (r->dry_run) {
        ret_action(r, "merge", p, target, NULL, NULL, -1, 0, "would merge %s into %s", p->name, target);
        return 0;
    }
    snprintf(what, sizeof what, "merging %s into %s", p->name, target);
    if (ret_qname(r->pg, p->schema, p->name, hot_q, sizeof hot_q, r->err, r->errlen) != 0 ||
        ret_qname(r->pg, r->cfg->archive_schema, p->name, arch_tq, sizeof arch_tq, r->err,
                  r->errlen) != 0 ||
        ret_begin(r, 1, what) != 0 || ret_hold_guard(r, p, what) != 0 ||
        ret_columns(r, cols, sizeof cols, what) != 0 ||
        ret_seal_removal(r, p, hot_q, "detach", what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "ALTER TABLE %s DETACH PARTITION %s", r->parent_q, hot_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    snprintf(sql, sizeof sql, "INSERT INTO %s (%s) SELECT %s FROM %s", arch_tq, cols, cols, hot_q);
    res = PQexec(r->pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        retention_pgerr(r->pg, res, what, r->err, r->errlen);
        goto out;
    }
    rows = strtoll(PQcmdTuples(res), NULL, 10);
    snprintf(sql, sizeof sql, "DROP TABLE %s", hot_q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
        goto out;
    r->merged++;
    ret_action(r, "merge", p, target, NULL, NULL, rows, 1, "merged %lld rows of %s into %s", rows,
               p->name, target);
    rc = 0;
out:
    PQclear(res);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* Drops a month older than retain_months, hot (DROP TABLE of a partition
 * detaches it: ACCESS EXCLUSIVE on audit_events for a moment) or archived. */
static int ret_do_drop(ret_run *r, const retention_part *p)
{
    char q[300], sql[400], what[200], table[140];
    int rc = -1;

    ret_display(p, table, sizeof table);
    if (r->dry_run) {
        ret_action(r, "drop", p, NULL, NULL, NULL, -1, 0, "would drop %s (older than retain_months=%d)",
                   table, r->cfg->retain_months);
        return 0;
    }
    snprintf(what, sizeof what, "dropping %s", table);
    if (ret_qname(r->pg, p->schema, p->name, q, sizeof q, r->err, r->errlen) != 0 ||
        ret_begin(r, p->location == RET_LOC_HOT, what) != 0 || ret_hold_guard(r, p, what) != 0)
        goto out;
    if (p->location == RET_LOC_HOT && ret_seal_removal(r, p, q, "drop", what) != 0)
        goto out;
    snprintf(sql, sizeof sql, "DROP TABLE %s", q);
    if (ret_cmd(r->pg, sql, 0, NULL, what, r->err, r->errlen) != 0 || ret_commit(r, what) != 0)
        goto out;
    r->dropped++;
    ret_action(r, "drop", p, NULL, NULL, NULL, -1, 1, "dropped %s (older than retain_months=%d)",
               table, r->cfg->retain_months);
    rc = 0;
out:
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* Checks that audit_events exists, that we may change it, and that the
 * settings make sense here; fills r->parent_schema and the quoted names. */
static int ret_preflight(ret_run *r)
{
    PGresult *res = ret_query(r->pg,
        "SELECT n.nspname, c.relowner::regrole::text, current_user::text,"
        "       pg_has_role(current_user, c.relowner, 'USAGE')"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass('audit_events')", 0, NULL, "looking up audit_events",
        r->err, r->errlen);
    int rc = -1;

    if (res == NULL)
        return -1;
    if (PQntuples(res) == 0) {
        snprintf(r->err, r->errlen, "table audit_events not found (search_path of database_url's "
                 "role): run 'auditqctl migrate' first, or fix database_url");
        goto out;
    }
    snprintf(r->parent_schema, sizeof r->parent_schema, "%s", PQgetvalue(res, 0, 0));
    if (strcmp(PQgetvalue(res, 0, 3), "t") != 0) {
        snprintf(r->err, r->errlen, "retention changes audit_events, which only its owner may do: "
                 "connected as role %s, owner is %s; use the database_url of the role that ran "
                 "'auditqctl migrate'", PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 1));
        goto out;
    }
    if (strcmp(r->parent_schema, r->cfg->archive_schema) == 0) {
        snprintf(r->err, r->errlen, "archive_schema = %s is the schema of audit_events itself; "
                 "choose another (e.g. auditq_archive)", r->cfg->archive_schema);
        goto out;
    }
    if (ret_qname(r->pg, r->parent_schema, "audit_events", r->parent_q, sizeof r->parent_q,
                  r->err, r->errlen) != 0 ||
        ret_qname(r->pg, NULL, r->cfg->archive_schema, r->arch_q, sizeof r->arch_q, r->err,
                  r->errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* csv mode: archive_dir must be a writable directory before anything is
 * detached (created, one level, if missing). */
static int ret_check_dir(ret_run *r)
{
    const char *dir = r->cfg->archive_dir;
    struct stat st;

    if (stat(dir, &st) != 0) {
        if (errno == ENOENT && r->dry_run) {
            ret_emitf(r, RET_EV_WARNING, "archive_dir %s does not exist yet; it will be created", dir);
            return 0;
        }
        if (errno != ENOENT || mkdir(dir, 0750) != 0) {
            snprintf(r->err, r->errlen, "archive_dir %s: %s; create it (writable by this user) or "
                     "fix archive_dir", dir, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0) {
        snprintf(r->err, r->errlen, "archive_dir %s is not a directory this user can write; fix its "
                 "permissions or archive_dir", dir);
        return -1;
    }
    return 0;
}

/* Takes the run lock, or says who holds it. 0, RETENTION_BUSY, or -1. */
static int ret_lock(ret_run *r)
{
    PGresult *res = ret_query(r->pg, "SELECT pg_try_advisory_lock(" RET_LOCK_KEY ")", 0, NULL,
                              "taking the retention lock", r->err, r->errlen);
    int got;

    if (res == NULL)
        return -1;
    got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (got)
        return 0;
    res = ret_query(r->pg,
        "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l"
        "  LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = " RET_LOCK_HI
        "   AND l.objid = " RET_LOCK_LO " AND l.objsubid = 1 LIMIT 1",
        0, NULL, "taking the retention lock", r->err, r->errlen);
    snprintf(r->err, r->errlen, "another retention run holds the lock (PostgreSQL backend pid %s, "
             "application_name '%s'); nothing done: run again when it has finished",
             res != NULL && PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "?",
             res != NULL && PQntuples(res) > 0 ? PQgetvalue(res, 0, 1) : "?");
    PQclear(res);
    return RETENTION_BUSY;
}

/* "YYYY-MM-01 00:00:00+00", the first instant of a month (UTC). */
static void ret_month_start(int month, char *out, size_t outlen)
{
    snprintf(out, outlen, "%04d-%02d-01 00:00:00+00", month / 12, month % 12 + 1);
}

/* The received_at probe of one table (retention.h, "The producer's
 * clock"): fills p->recv_*. enable_seqscan = off: with the BRIN index of
 * sql/004 the planner must use it -- a seq scan under LIMIT 1 is only fast
 * when a row matches early, and the common answer is "none", which would
 * read the whole month. A table without the index (made by hand) is still
 * scanned, correctly, just not cheaply. */
static int ret_probe_one(ret_run *r, retention_part *p, const char *keep, const char *hot)
{
    char q[300], sql[700], what[200], table[140];
    const char *pv[2] = { keep, hot };
    PGresult *res = NULL;
    int rc = -1;

    ret_display(p, table, sizeof table);
    snprintf(what, sizeof what, "looking for rows of %s received since %.10s", table, keep);
    if (ret_qname(r->pg, p->schema, p->name, q, sizeof q, r->err, r->errlen) != 0 ||
        ret_begin(r, 0, what) != 0 ||
        ret_cmd(r->pg, "SET LOCAL enable_seqscan = off", 0, NULL, what, r->err, r->errlen) != 0)
        goto out;
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE received_at >= $1::timestamptz LIMIT 1", q);
    res = ret_query(r->pg, sql, 1, pv, what, r->err, r->errlen);
    if (res == NULL)
        goto out;
    if (PQntuples(res) > 0) {
        PQclear(res);
        /* Only for a table that will be skipped: exact numbers for the
         * operator, read through the same index. */
        snprintf(sql, sizeof sql, "SELECT count(*), count(*) FILTER (WHERE received_at >= "
                 "$2::timestamptz), max(received_at)::text, extract(year FROM max(received_at))::int"
                 " * 12 + extract(month FROM max(received_at))::int - 1 FROM %s"
                 " WHERE received_at >= $1::timestamptz", q);
        res = ret_query(r->pg, sql, 2, pv, what, r->err, r->errlen);
        if (res == NULL)
            goto out;
        p->recv_rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        p->recv_rows_hot = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        snprintf(p->recv_newest, sizeof p->recv_newest, "%s", PQgetvalue(res, 0, 2));
        p->recv_month = (int)strtol(PQgetvalue(res, 0, 3), NULL, 10);
    }
    rc = ret_commit(r, what);
out:
    PQclear(res);
    if (rc != 0)
        ret_rollback(r->pg);
    return rc;
}

/* Probes every table the policy would archive or drop by its month. */
static int ret_probe_received(ret_run *r, retention_part *parts, size_t n)
{
    char keep[40], hot[40];

    ret_month_start(r->keep_from, keep, sizeof keep);
    ret_month_start(r->hot_from, hot, sizeof hot);
    for (size_t i = 0; i < n; i++) {
        retention_part *p = &parts[i];

        if (p->month < 0 || p->location == RET_LOC_DEFAULT)
            continue;
        if (p->location == RET_LOC_HOT ? p->month >= r->hot_from : p->month >= r->keep_from)
            continue;
        if (ret_probe_one(r, p, keep, hot) != 0)
            return -1;
    }
    return 0;
}

/* Reports a table kept because of rows received within the period: hot
 * ones are not archived (rows received since hot_from) or, if they hold
 * none of those, not dropped; archived ones are not dropped. */
static void ret_do_skip(ret_run *r, const retention_part *p)
{
    retention_event ev;
    char line[1200], table[140], month[16], since[16];
    int hot = p->location == RET_LOC_HOT && p->recv_month >= r->hot_from;
    long long rows = hot ? p->recv_rows_hot : p->recv_rows;

    ret_display(p, table, sizeof table);
    retention_month_label(p->month, month, sizeof month);
    retention_month_label(hot ? r->hot_from : r->keep_from, since, sizeof since);
    snprintf(since + strlen(since), sizeof since - strlen(since), "-01");
    if (hot)
        snprintf(line, sizeof line, "skipped %s (month %s): %lld row%s received since %s, within "
                 "hot_months=%d (newest received_at %s); kept in audit_events until %s older",
                 table, month, rows, rows == 1 ? "" : "s", since, r->cfg->hot_months, p->recv_newest,
                 rows == 1 ? "it is" : "they are");
    else
        snprintf(line, sizeof line, "skipped the drop of %s (month %s): %lld row%s received since "
                 "%s, within retain_months=%d (newest received_at %s); kept until %s older",
                 table, month, rows, rows == 1 ? "" : "s", since, r->cfg->retain_months,
                 p->recv_newest, rows == 1 ? "it is" : "they are");
    r->skipped++;
    memset(&ev, 0, sizeof ev);
    ev.kind = RET_EV_ACTION;
    ev.line = line;
    ev.action = "skip";
    ev.table = table;
    ev.newest = p->recv_newest;
    ev.since = since;
    ev.within = hot ? "hot_months" : "retain_months";
    ev.month = p->month;
    ev.rows = rows;
    ev.done = 1;
    ret_emit(r, &ev);
}

/* Warnings about tables retention leaves alone. */
static void ret_warn_unmanaged(ret_run *r, const retention_part *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const retention_part *p = &parts[i];

        if (p->location == RET_LOC_DEFAULT && p->rows > 0)
            ret_emitf(r, RET_EV_WARNING, "the DEFAULT partition %s holds %lld rows; retention "
                      "never touches them: run 'auditqctl partitions ensure' to move them into "
                      "monthly partitions", p->name, p->rows);
        else if (p->location == RET_LOC_HOT && p->month < 0)
            ret_emitf(r, RET_EV_WARNING, "%s.%s (%s) is not a monthly partition named after its "
                      "month; retention leaves it alone", p->schema, p->name, p->bound);
    }
}

static int ret_execute(ret_run *r, retention_part *parts, const retention_action *acts, size_t nacts)
{
    for (size_t i = 0; i < nacts; i++) {
        retention_part *p = &parts[acts[i].part];
        int rc = 0;

        if (acts[i].kind != RET_ACT_SKIP && p->hold_id > 0) {
            ret_do_hold(r, p);
            continue;
        }
        switch (acts[i].kind) {
        case RET_ACT_ARCHIVE: rc = ret_do_archive(r, p); break;
        case RET_ACT_MERGE:   rc = ret_do_merge(r, p); break;
        case RET_ACT_EXPORT:  rc = ret_do_export(r, p); break;
        case RET_ACT_DROP:    rc = ret_do_drop(r, p); break;
        case RET_ACT_SKIP:    ret_do_skip(r, p); break;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

int retention_run(PGconn *pg, const aq_config *cfg, int dry_run, retention_report_fn report,
                  void *ctx, char *err, size_t errlen)
{
    ret_run r;
    retention_part *parts = NULL;
    retention_action *acts = NULL;
    size_t n = 0, nacts;
    int current = 0, locked = 0, rc = RETENTION_FAILED;

    memset(&r, 0, sizeof r);
    r.pg = pg;
    r.cfg = cfg;
    r.dry_run = dry_run;
    r.report = report;
    r.ctx = ctx;
    r.err = err;
    r.errlen = errlen;

    if (ret_preflight(&r) != 0 || ret_holds_init(&r) != 0)
        goto out;
    if (!dry_run) {
        int l = ret_lock(&r);

        if (l != 0) {
            rc = l == RETENTION_BUSY ? RETENTION_BUSY : RETENTION_FAILED;
            goto out;
        }
        locked = 1;
    }
    if (retention_list(pg, cfg->archive_schema, 0, &parts, &n, &current, err, errlen) != 0)
        goto out;
    r.hot_from = retention_hot_from(current, cfg->hot_months);
    r.keep_from = retention_keep_from(current, cfg->retain_months);

    {
        retention_event ev;
        char line[700], hot[16], keep[16];

        memset(&ev, 0, sizeof ev);
        ev.kind = RET_EV_POLICY;
        ev.hot_from = retention_hot_from(current, cfg->hot_months);
        ev.keep_from = retention_keep_from(current, cfg->retain_months);
        ev.month = current;
        ev.rows = -1;
        retention_month_label(ev.hot_from, hot, sizeof hot);
        retention_month_label(ev.keep_from, keep, sizeof keep);
        if (cfg->archive_mode == ARCHIVE_CSV)
            snprintf(line, sizeof line, "policy: audit_events keeps %s and later (hot_months=%d); "
                     "older months are exported to %s (archive_mode=csv); months before %s are "
                     "dropped (retain_months=%d)", hot, cfg->hot_months, cfg->archive_dir, keep,
                     cfg->retain_months);
        else
            snprintf(line, sizeof line, "policy: audit_events keeps %s and later (hot_months=%d); "
                     "older months move to schema %s (archive_mode=schema); months before %s are "
                     "dropped (retain_months=%d)", hot, cfg->hot_months, cfg->archive_schema, keep,
                     cfg->retain_months);
        ev.line = line;
        ret_emit(&r, &ev);
    }
    ret_warn_unmanaged(&r, parts, n);
    /* Before anything is detached: a csv run must be able to finish. */
    if (cfg->archive_mode == ARCHIVE_CSV && ret_check_dir(&r) != 0)
        goto out;

    if (ret_probe_received(&r, parts, n) != 0)
        goto out;
    /* At most three actions per table (skip, archive, export). */
    acts = calloc(3 * n + 1, sizeof *acts);
    if (acts == NULL) {
        snprintf(err, errlen, "out of memory planning %zu partitions", n);
        goto out;
    }
    nacts = retention_plan(parts, n, current, cfg->hot_months, cfg->retain_months,
                           cfg->archive_mode, acts, 3 * n + 1);
    if (nacts == 0) {
        ret_emitf(&r, RET_EV_INFO, "nothing to do");
        rc = RETENTION_OK;
        goto out;
    }
    if (ret_probe_holds(&r, parts, acts, nacts) != 0)
        goto out;
    if (ret_execute(&r, parts, acts, nacts) != 0)
        goto out;
    {
        char held[80] = "";
        size_t held_acts = 0;

        for (size_t i = 0; i < nacts; i++)
            held_acts += acts[i].kind != RET_ACT_SKIP && parts[acts[i].part].hold_id > 0;
        if (r.held > 0)
            snprintf(held, sizeof held, ", %d kept by legal holds", r.held);
        if (dry_run && r.skipped > 0)
            ret_emitf(&r, RET_EV_INFO, "dry run: %zu action(s) planned, %d month(s) skipped for rows "
                      "received within the period%s; nothing changed",
                      nacts - (size_t)r.skipped - held_acts, r.skipped, held);
        else if (dry_run)
            ret_emitf(&r, RET_EV_INFO, "dry run: %zu action(s) planned%s; nothing changed", nacts - held_acts,
                      held);
        else if (r.skipped > 0)
            ret_emitf(&r, RET_EV_INFO, "done: %d archived, %d merged, %d exported, %d dropped, "
                      "%d skipped for rows received within the period%s", r.archived, r.merged,
                      r.exported, r.dropped, r.skipped, held);
        else
            ret_emitf(&r, RET_EV_INFO, "done: %d archived, %d merged, %d exported, %d dropped%s",
                      r.archived, r.merged, r.exported, r.dropped, held);
    }
    rc = RETENTION_OK;
out:
    if (locked) {
        char e2[256];

        ret_rollback(pg);
        ret_cmd(pg, "SELECT pg_advisory_unlock(" RET_LOCK_KEY ")", 0, NULL, "unlock", e2, sizeof e2);
    }
    free(acts);
    free(parts);
    return rc;
}
