/* ctl_verify_rows.c -- streams 2 and 3 of `auditqctl verify` (DESIGN in
 * ctl_verify.c): every row against the sealed leaf of its evidence, the
 * evidence whose row is gone, the rows no evidence covers; and the months
 * retention removed. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "checkpoint.h"
#include "ctl.h"
#include "ctl_common.h"
#include "ctl_verify.h"
#include "ctl_verify_int.h"
#include "entry.h"
#include "merkle.h"

/* ---- stream 2: evidence joined to rows ----------------------------------------- */

/* One part of stream 2: the evidence and the rows whose occurred_at is in
 * [lo, hi), over its own connection (part 0: the run's). Counts are the
 * part's own, added to the run's when every part is done; findings go
 * through vfind (locked). */
typedef struct rowpart {
    verify *v;
    PGconn *pg;
    int own;                       /* pg was opened for this part */
    char lo[48], hi[48];           /* timestamptz texts; "": unbounded */
    const retmonth *rm;
    size_t nrm;
    int with_pending;
    vstats st;                     /* the part's counts */
    int rc;
} rowpart;

static int part_sql(rowpart *p, const char *sql)
{
    PGresult *r = PQexec(p->pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: %s: %s\n", VERIFY_PROG, sql, first);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static void part_row(rowpart *p, const PGresult *r, int i)
{
    verify *v = p->v;
    const char *id = PQgetvalue(r, i, 0);
    int64_t occ = (int64_t)vfy_be64(PQgetvalue(r, i, 1));
    uint64_t batch = vfy_be64(PQgetvalue(r, i, 2));
    uint64_t pos = vfy_be64(PQgetvalue(r, i, 3));
    int sealed = !PQgetisnull(r, i, 4);
    uint64_t leaf_index = sealed ? vfy_be64(PQgetvalue(r, i, 4)) : 0;
    const char *sealed_leaf = PQgetvalue(r, i, 5);
    int64_t age_ms = (int64_t)vfy_be64(PQgetvalue(r, i, 6));
    int found = PQgetvalue(r, i, 7)[0] != 0;
    const char *vals[ENTRY_EVENT_NFIELDS];
    size_t lens[ENTRY_EVENT_NFIELDS];
    char where[160], tb[100];

    if (PQgetisnull(r, i, 0)) {
        /* A row of the FULL JOIN with no evidence. */
        verify_row_texts(r, i, 8, vals, lens, tb);
        p->st.inserted++;
        vfind(v, "inserted_row", "inserted row: event_id %.36s (received_at %s): no evidence covers it",
              vals[0], PQgetvalue(r, i, 8 + ENTRY_EVENT_NFIELDS));
        return;
    }
    if (sealed)
        snprintf(where, sizeof where, "leaf %" PRIu64 ", batch %" PRIu64 " position %" PRIu64,
                 leaf_index, batch, pos);
    else
        snprintf(where, sizeof where, "batch %" PRIu64 " position %" PRIu64 ", not sealed yet", batch, pos);
    if (!sealed) {
        p->st.pending++;
        if (age_ms > v->pending_max_ms && pos == 1)
            vfind(v, "pending", "batch %" PRIu64 " was committed %.1f s ago and is not sealed yet "
                  "(more than --pending-max): is a worker with seal_key_file running?", batch,
                  (double)age_ms / 1000.0);
    }
    if (!found) {
        size_t k;
        for (k = 0; k < p->nrm; k++)
            if (occ >= p->rm[k].from_us && occ < p->rm[k].to_us)
                break;
        if (k < p->nrm && p->rm[k].records > 0) {
            p->st.rm_found[k]++;
            p->st.archived++;
        } else {
            vfind(v, "deleted_row", "deleted row: event_id %.36s (%s): its sealed evidence has no "
                  "row in audit_events", id, where);
        }
    } else {
        merkle_hash leaf;

        verify_row_texts(r, i, 8, vals, lens, tb);
        p->st.rows_checked++;
        if (entry_event_leaf_hash(vals, lens, leaf) != 0 || memcmp(leaf, sealed_leaf, MERKLE_HASH_LEN) != 0)
            vfind(v, "modified_row", "modified row: event_id %.36s (%s): the stored row does not "
                  "hash to its sealed leaf", id, where);
        else
            p->st.rows_ok++;
    }
}

static void *part_run(void *arg)
{
    rowpart *p = arg;
    verify *v = p->v;
    char lo_t[32], hi_t[32];
    /* NULL: no bound (the first and the last part), so that no row is
     * outside every part, whatever its occurred_at. */
    const char *pv[6] = { lo_t, hi_t, p->with_pending ? "true" : "false", v->have_window ? "true" : "false",
                          p->lo[0] ? p->lo : NULL, p->hi[0] ? p->hi : NULL };

    p->rc = -1;
    snprintf(lo_t, sizeof lo_t, "%" PRIu64, v->tree_lo);
    snprintf(hi_t, sizeof hi_t, "%" PRIu64, v->tree_hi);
    /* Full run: one hash FULL JOIN of the evidence and the rows (rows with
     * no evidence are the inserted ones, so no second pass); hashing the
     * evidence side and scanning audit_events once beats both per-row
     * index lookups (what the planner picks, misjudging unnest's size) and
     * sorting both sides for a merge. Incremental: the evidence of the
     * range, LEFT JOIN the rows; stream 3 finds inserted rows. Both sides
     * are limited to the part's occurred_at range, so that the partitions
     * outside it are pruned and the batches outside it skipped.
     * The leaf of each item is cut from its batch's `leaves` (32 bytes a
     * leaf, 32 kB for 1,000 events: stored out of line) after the value is
     * detoasted once per batch (the LATERAL `|| ''` under OFFSET 0):
     * substring() on the stored value fetched it from TOAST once per row,
     * 3.2 of the query's 8.7 s at 1M rows. The outer OFFSET 0 keeps the
     * 32-byte leaf, not the 32 kB value, in the join whichever side the
     * planner hashes. */
    if (part_sql(p, "SET LOCAL enable_nestloop = off") != 0 || part_sql(p, "SET LOCAL enable_mergejoin = off") != 0 ||
        !PQsendQueryParams(p->pg,
            "SELECT ev.event_id::text, (extract(epoch from ev.occurred_at) * 1000000)::bigint, ev.batch_id,"
            "       ev.pos, ev.first_leaf + ev.pos - 1,"
            "       ev.leaf,"
            "       CASE WHEN ev.first_leaf IS NULL"
            "            THEN (extract(epoch from clock_timestamp() - ev.created_at) * 1000)::bigint ELSE 0 END,"
            "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS_RAW ","
            "       CASE WHEN ev.event_id IS NULL"
            "            THEN to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END"
            "  FROM (SELECT b.batch_id, substring(d.leaves from ((u.pos - 1) * 32 + 1)::int for 32) AS leaf,"
            "               b.created_at, a.first_leaf, u.event_id, u.occurred_at, u.pos"
            "          FROM auditq_evidence_batch b"
            "          LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
            "         CROSS JOIN LATERAL (SELECT b.leaves || ''::bytea AS leaves OFFSET 0) d"
            "         CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            "         WHERE ((a.first_leaf >= $1::bigint AND a.first_leaf < $2::bigint)"
            "                OR (a.item_id IS NULL AND $3::boolean))"
            "           AND ($5::timestamptz IS NULL OR b.max_occurred_at >= $5::timestamptz)"
            "           AND ($6::timestamptz IS NULL OR b.min_occurred_at < $6::timestamptz)"
            "           AND ($5::timestamptz IS NULL OR u.occurred_at >= $5::timestamptz)"
            "           AND ($6::timestamptz IS NULL OR u.occurred_at < $6::timestamptz)"
            "        OFFSET 0) ev"
            " FULL JOIN (SELECT * FROM audit_events"
            "             WHERE ($5::timestamptz IS NULL OR occurred_at >= $5::timestamptz)"
            "               AND ($6::timestamptz IS NULL OR occurred_at < $6::timestamptz)) e"
            "   ON e.event_id = ev.event_id AND e.occurred_at = ev.occurred_at"
            " WHERE ev.event_id IS NOT NULL OR NOT $4::boolean",
            6, NULL, pv, NULL, NULL, 1) ||
        !PQsetSingleRowMode(p->pg)) {
        char first[600];
        ctl_first_line(PQerrorMessage(p->pg), first, sizeof first);
        fprintf(stderr, "%s: reading the rows and their evidence: %s\n", VERIFY_PROG, first);
        return NULL;
    }
    /* Single-row mode, not a cursor: PostgreSQL streams the join while we
     * hash the rows already received (a FETCH makes each side wait for the
     * other: measured 14.3 s for 1M rows, the sum of both sides' CPU).
     * Memory: one row at a time. */
    for (;;) {
        PGresult *r = PQgetResult(p->pg);

        if (r == NULL)
            break;
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            PQclear(r);   /* the end of the rows */
            continue;
        }
        if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
            char first[600];
            ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
            fprintf(stderr, "%s: reading the rows and their evidence: %s\n", VERIFY_PROG, first);
            PQclear(r);
            while ((r = PQgetResult(p->pg)) != NULL)
                PQclear(r);
            return NULL;
        }
        for (int i = 0; i < PQntuples(r); i++) {
            uint64_t seen = atomic_fetch_add(&v->progress, 1) + 1;
            part_row(p, r, i);
            if (v->tty && seen % VERIFY_PROGRESS_ROWS == 0)
                fprintf(stderr, "\r%s: %" PRIu64 " rows ...", VERIFY_PROG, seen);
        }
        PQclear(r);
    }
    p->rc = 0;
    return NULL;
}

/* A part's connection: the run's snapshot (exported by the run's
 * transaction), so every part reads the same database state. */
PGconn *verify_part_connect(verify *v, const char *snapshot)
{
    char sql[160];
    rowpart p;

    memset(&p, 0, sizeof p);
    p.v = v;
    p.pg = ctl_pg_connect(v->cfg, VERIFY_PROG, "UTF8");
    if (p.pg == NULL)
        return NULL;
    snprintf(sql, sizeof sql, "SET TRANSACTION SNAPSHOT '%s'", snapshot);
    if (part_sql(&p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0 || part_sql(&p, sql) != 0 ||
        part_sql(&p, "SET LOCAL TimeZone = 'UTC'") != 0 || part_sql(&p, "SET LOCAL statement_timeout = 0") != 0 ||
        part_sql(&p, "SET LOCAL work_mem = '256MB'") != 0) {
        PQfinish(p.pg);
        return NULL;
    }
    return p.pg;
}

int verify_export_snapshot(verify *v, char *snapshot, size_t cap)
{
    PGresult *r = PQexec(v->pg, "SELECT pg_export_snapshot()");

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: exporting the snapshot for --jobs: %s\n", VERIFY_PROG, first);
        PQclear(r);
        return -1;
    }
    snprintf(snapshot, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

/* The occurred_at bounds that split the evidence into `jobs` parts of about
 * as many events each (by the batches' first occurred_at, weighted by
 * their size), into bounds[0 .. jobs - 2]. */
int verify_part_bounds(verify *v, int jobs, char (*bounds)[48])
{
    char nj[16];
    const char *pv[1] = { nj };
    PGresult *r;

    snprintf(nj, sizeof nj, "%d", jobs);
    r = PQexecParams(v->pg,
        "WITH q AS MATERIALIZED (SELECT min_occurred_at AS m,"
        "                               sum(n) OVER (ORDER BY min_occurred_at, batch_id) AS cs,"
        "                               sum(n) OVER () AS tot"
        "                          FROM auditq_evidence_batch)"
        "SELECT coalesce((SELECT q.m FROM q WHERE q.cs * $1::int >= q.tot * j ORDER BY q.cs LIMIT 1),"
        "                'infinity')::text"
        "  FROM generate_series(1, $1::int - 1) AS j ORDER BY j",
        1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != jobs - 1) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: splitting the rows into %d parts: %s\n", VERIFY_PROG, jobs, first);
        PQclear(r);
        return -1;
    }
    for (int j = 0; j < jobs - 1; j++)
        snprintf(bounds[j], sizeof bounds[j], "%.47s", PQgetvalue(r, j, 0));
    PQclear(r);
    return 0;
}

int verify_rows(verify *v, retmonth *rm, size_t nrm, int with_pending)
{
    rowpart parts[VERIFY_MAX_JOBS];
    char bounds[VERIFY_MAX_JOBS][48], snapshot[128] = "";
    int jobs = v->jobs < 1 ? 1 : v->jobs, rc = -1;

    memset(parts, 0, sizeof parts);
    if (!v->have_window)
        return verify_rows_full(v, rm, nrm, with_pending);
    if (jobs > 1 && (verify_export_snapshot(v, snapshot, sizeof snapshot) != 0 ||
                     verify_part_bounds(v, jobs, bounds) != 0))
        return -1;
    for (int j = 0; j < jobs; j++) {
        rowpart *p = &parts[j];
        p->v = v;
        p->rm = rm;
        p->nrm = nrm;
        p->with_pending = with_pending;
        p->st.rm_found = calloc(nrm ? nrm : 1, sizeof *p->st.rm_found);
        if (p->st.rm_found == NULL) {
            fprintf(stderr, "%s: out of memory\n", VERIFY_PROG);
            goto out;
        }
        snprintf(p->lo, sizeof p->lo, "%.47s", j == 0 ? "" : bounds[j - 1]);
        snprintf(p->hi, sizeof p->hi, "%.47s", j == jobs - 1 ? "" : bounds[j]);
        if (j == 0) {
            p->pg = v->pg;
        } else {
            if ((p->pg = verify_part_connect(v, snapshot)) == NULL)
                goto out;
            p->own = 1;
        }
    }
    if (verify_run_parts(v, parts, sizeof parts[0], jobs, part_run, NULL, NULL) != 0)
        goto out;
    rc = 0;
    for (int j = 0; j < jobs; j++) {
        if (parts[j].rc != 0)
            rc = -1;
        verify_stats_add(v, &parts[j].st, rm, nrm);
    }
out:
    for (int j = 0; j < jobs; j++) {
        if (parts[j].own)
            PQfinish(parts[j].pg);
        free(parts[j].st.rm_found);
    }
    return rc;
}

/* ---- stream 3: rows nothing covers ---------------------------------------------- */

int verify_inserted(verify *v)
{
    char lo[32], hi[32];
    const char *pv[2] = { lo, hi };
    int rc = -1;

    if (v->have_window) {
        snprintf(lo, sizeof lo, "%" PRId64, v->t_lo_us);
        snprintf(hi, sizeof hi, "%" PRId64, v->t_hi_us);
    } else {
        snprintf(lo, sizeof lo, "%s", "-9223372036854775807");
        snprintf(hi, sizeof hi, "%s", "9223372036854775807");
    }
    if (vdeclare(v, "ins",
            "SELECT e.event_id::text, to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            "  FROM audit_events e"
            " WHERE (extract(epoch from e.received_at) * 1000000)::bigint >= $1::bigint"
            "   AND (extract(epoch from e.received_at) * 1000000)::bigint < $2::bigint"
            "   AND NOT EXISTS (SELECT 1 FROM auditq_evidence_batch b"
            "                    CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) AS u(event_id, occurred_at)"
            "                   WHERE u.event_id = e.event_id AND u.occurred_at = e.occurred_at"
            "                     AND (extract(epoch from b.created_at) * 1000000)::bigint >= $1::bigint)",
            2, pv) != 0)
        return -1;
    for (;;) {
        PGresult *r = vfetch(v, "ins");
        int n;
        if (r == NULL)
            goto out;
        n = PQntuples(r);
        if (n == 0) {
            PQclear(r);
            break;
        }
        for (int i = 0; i < n; i++) {
            v->inserted++;
            vfind(v, "inserted_row", "inserted row: event_id %.36s (received_at %s): no evidence covers it",
                  PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        }
        PQclear(r);
    }
    rc = 0;
out:
    vsql(v, "CLOSE ins");
    return rc;
}

/* ---- retention ------------------------------------------------------------------- */

int load_retention(verify *v, retmonth **out, size_t *n)
{
    PGresult *r = PQexec(v->pg,
        "SELECT (extract(epoch from month_from) * 1000000)::bigint, (extract(epoch from month_to) * 1000000)::bigint,"
        "       sum(row_count), count(*), min(record_id)::text, to_char(month_from AT TIME ZONE 'UTC', 'YYYY-MM'),"
        "       encode((array_agg(leaves_hash ORDER BY record_id))[1], 'hex')"
        "  FROM auditq_evidence_retention GROUP BY month_from, month_to ORDER BY month_from");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: reading retention records: %s\n", VERIFY_PROG, first);
        PQclear(r);
        return -1;
    }
    *n = (size_t)PQntuples(r);
    *out = calloc(*n ? *n : 1, sizeof **out);
    if (*out == NULL) {
        PQclear(r);
        return -1;
    }
    for (size_t i = 0; i < *n; i++) {
        retmonth *m = &(*out)[i];
        m->from_us = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
        m->to_us = strtoll(PQgetvalue(r, (int)i, 1), NULL, 10);
        m->expected = strtoll(PQgetvalue(r, (int)i, 2), NULL, 10);
        m->records = atoi(PQgetvalue(r, (int)i, 3));
        snprintf(m->record_id, sizeof m->record_id, "%s", PQgetvalue(r, (int)i, 4));
        snprintf(m->month, sizeof m->month, "%s", PQgetvalue(r, (int)i, 5));
        snprintf(m->hash, sizeof m->hash, "%s", PQgetvalue(r, (int)i, 6));
    }
    PQclear(r);
    return 0;
}

/* Per month retention removed: the leaves whose rows are gone must be
 * exactly the removed ones -- the count, and per record the SHA-256 over
 * the sealed leaf hashes of its rows in (event_id, occurred_at) order,
 * which the record took over the rows at removal.
 *
 * A month can have several records: its table removed, then late rows of
 * the month (landed in DEFAULT, moved into a new table of the month by
 * `partitions ensure`) removed by a later run. A record's rows are those
 * of the month committed before it and after the month's previous record:
 * while a month has a table, every row of the month is in it (DEFAULT
 * holds none), and the record is taken in the transaction that removes the
 * table, after the writers that stored into it committed (their evidence
 * batches' created_at is stamped in their transactions, so it is earlier
 * than the record's); a row stored after the removal has a later
 * created_at. So each record is compared with the leaves of the month's
 * batches created in [previous record's created_at, its created_at). */
static int retention_records(verify *v, const retmonth *m)
{
    char f[32], t[32];
    const char *pv[2] = { f, t };
    PGresult *recs;
    int rc = -1;

    snprintf(f, sizeof f, "%" PRId64, m->from_us);
    snprintf(t, sizeof t, "%" PRId64, m->to_us);
    recs = PQexecParams(v->pg,
        "SELECT record_id::text, row_count, encode(leaves_hash, 'hex'),"
        "       coalesce(lag(created_at) OVER (ORDER BY created_at, record_id), '-infinity')::text, created_at::text"
        "  FROM auditq_evidence_retention"
        " WHERE month_from = to_timestamp($1::bigint / 1e6) ORDER BY created_at, record_id",
        1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(recs) != PGRES_TUPLES_OK) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(recs), first, sizeof first);
        fprintf(stderr, "%s: reading the retention records of %s: %s\n", VERIFY_PROG, m->month, first);
        PQclear(recs);
        return -1;
    }
    for (int i = 0; i < PQntuples(recs); i++) {
        /* One record: every leaf of the month whose row is gone. */
        int one = PQntuples(recs) == 1;
        const char *bv[4] = { f, t, one ? "-infinity" : PQgetvalue(recs, i, 3),
                              one ? "infinity" : PQgetvalue(recs, i, 4) };
        long long want = strtoll(PQgetvalue(recs, i, 1), NULL, 10), got;
        PGresult *r = PQexecParams(v->pg,
            "SELECT count(*),"
            "       encode(sha256(coalesce(string_agg(substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
            "                                          ''::bytea ORDER BY u.event_id, u.occurred_at), ''::bytea)), 'hex')"
            "  FROM auditq_evidence_batch b"
            " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            " WHERE tstzrange(b.min_occurred_at, b.max_occurred_at, '[]') && "
            "       tstzrange(to_timestamp($1::bigint / 1e6), to_timestamp($2::bigint / 1e6), '[)')"
            "   AND b.created_at >= $3::timestamptz AND b.created_at < $4::timestamptz"
            "   AND u.occurred_at >= to_timestamp($1::bigint / 1e6) AND u.occurred_at < to_timestamp($2::bigint / 1e6)"
            "   AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.event_id = u.event_id AND e.occurred_at = u.occurred_at)",
            4, NULL, bv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char first[600];
            ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
            fprintf(stderr, "%s: hashing archived leaves: %s\n", VERIFY_PROG, first);
            PQclear(r);
            goto out;
        }
        got = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (got != want)
            vfind(v, "retention", "month %s: retention record %s removed %lld rows, but %lld sealed leaves of "
                  "that month committed between the month's previous record and it have no row", m->month,
                  PQgetvalue(recs, i, 0), want, got);
        else if (strcmp(PQgetvalue(r, 0, 1), PQgetvalue(recs, i, 2)) != 0)
            vfind(v, "retention", "month %s: the %lld rows retention removed (record %s) hash to %s, their "
                  "sealed leaves to %s: a row was altered before it was removed", m->month, want,
                  PQgetvalue(recs, i, 0), PQgetvalue(recs, i, 2), PQgetvalue(r, 0, 1));
        PQclear(r);
    }
    rc = 0;
out:
    PQclear(recs);
    return rc;
}

int verify_retention(verify *v, retmonth *rm, size_t nrm)
{
    for (size_t k = 0; k < nrm; k++) {
        retmonth *m = &rm[k];
        if (m->found != m->expected) {
            vfind(v, "retention", "month %s: retention removed %lld rows, but %lld sealed leaves of that "
                  "month have no row: %lld rows deleted outside retention", m->month, m->expected, m->found,
                  m->found - m->expected);
            continue;
        }
        if (v->have_window)
            continue;
        if (retention_records(v, m) != 0)
            return -1;
    }
    return 0;
}
