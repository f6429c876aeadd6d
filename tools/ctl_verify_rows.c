/* ctl_verify_rows.c -- streams 2 and 3 of `auditqctl verify` (DESIGN in
 * ctl_verify.c): every row against the sealed leaf of its evidence, the
 * evidence whose row is gone, the rows no evidence covers; and the months
 * retention removed. */
#include <errno.h>
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

int verify_rows(verify *v, retmonth *rm, size_t nrm, int with_pending)
{
    char lo_t[32], hi_t[32];
    const char *pv[4] = { lo_t, hi_t, with_pending ? "true" : "false", v->have_window ? "true" : "false" };
    char q[600];
    int rc = -1;
    uint64_t seen = 0;

    snprintf(lo_t, sizeof lo_t, "%" PRIu64, v->tree_lo);
    snprintf(hi_t, sizeof hi_t, "%" PRIu64, v->tree_hi);
    /* Full run: one hash FULL JOIN of the evidence and the rows (rows with
     * no evidence are the inserted ones, so no second pass); hashing the
     * evidence side and scanning audit_events once beats both per-row
     * index lookups (what the planner picks, misjudging unnest's size) and
     * sorting both sides for a merge. Incremental: the evidence of the
     * range, LEFT JOIN the rows; stream 3 finds inserted rows. */
    if (vsql(v, "SET LOCAL enable_nestloop = off") != 0 || vsql(v, "SET LOCAL enable_mergejoin = off") != 0 ||
        !PQsendQueryParams(v->pg,
            "SELECT ev.event_id::text, (extract(epoch from ev.occurred_at) * 1000000)::bigint, ev.batch_id,"
            "       ev.pos, ev.first_leaf + ev.pos - 1,"
            "       substring(ev.leaves from ((ev.pos - 1) * 32 + 1)::int for 32),"
            "       CASE WHEN ev.first_leaf IS NULL"
            "            THEN (extract(epoch from clock_timestamp() - ev.created_at) * 1000)::bigint ELSE 0 END,"
            "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS_RAW ","
            "       CASE WHEN ev.event_id IS NULL"
            "            THEN to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END"
            "  FROM (SELECT b.batch_id, b.leaves, b.created_at, a.first_leaf, u.event_id, u.occurred_at, u.pos"
            "          FROM auditq_evidence_batch b"
            "          LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
            "         CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            "         WHERE (a.first_leaf >= $1::bigint AND a.first_leaf < $2::bigint)"
            "            OR (a.item_id IS NULL AND $3::boolean)) ev"
            " FULL JOIN audit_events e ON e.event_id = ev.event_id AND e.occurred_at = ev.occurred_at"
            " WHERE ev.event_id IS NOT NULL OR NOT $4::boolean",
            4, NULL, pv, NULL, NULL, 1) ||
        !PQsetSingleRowMode(v->pg)) {
        char first[600];
        ctl_first_line(PQerrorMessage(v->pg), first, sizeof first);
        fprintf(stderr, "%s: reading the rows and their evidence: %s\n", VERIFY_PROG, first);
        return -1;
    }
    /* Single-row mode, not a cursor: PostgreSQL streams the join while we
     * hash the rows already received (a FETCH makes each side wait for the
     * other: measured 14.3 s for 1M rows, the sum of both sides' CPU).
     * Memory: one row at a time. */
    for (;;) {
        PGresult *r = PQgetResult(v->pg);
        int n;

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
            while ((r = PQgetResult(v->pg)) != NULL)
                PQclear(r);
            goto out;
        }
        n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(r, i, 0);
            int64_t occ = (int64_t)vfy_be64(PQgetvalue(r, i, 1));
            uint64_t batch = vfy_be64(PQgetvalue(r, i, 2));
            uint64_t pos = vfy_be64(PQgetvalue(r, i, 3));
            int sealed = !PQgetisnull(r, i, 4);
            uint64_t leaf_index = sealed ? vfy_be64(PQgetvalue(r, i, 4)) : 0;
            const char *sealed_leaf = PQgetvalue(r, i, 5);
            int64_t age_ms = (int64_t)vfy_be64(PQgetvalue(r, i, 6));
            int found = PQgetvalue(r, i, 7)[0] != 0;
            char where[160];

            if (PQgetisnull(r, i, 0)) {
                /* A row of the FULL JOIN with no evidence. */
                const char *iv[ENTRY_EVENT_NFIELDS];
                size_t il[ENTRY_EVENT_NFIELDS];
                char tb[100];

                verify_row_texts(r, i, 8, iv, il, tb);
                v->inserted++;
                vfind(v, "inserted_row", "inserted row: event_id %.36s (received_at %s): no evidence covers it",
                      iv[0], PQgetvalue(r, i, 8 + ENTRY_EVENT_NFIELDS));
                continue;
            }

            if (sealed)
                snprintf(where, sizeof where, "leaf %" PRIu64 ", batch %" PRIu64 " position %" PRIu64,
                         leaf_index, batch, pos);
            else
                snprintf(where, sizeof where, "batch %" PRIu64 " position %" PRIu64 ", not sealed yet",
                         batch, pos);
            if (!sealed) {
                v->pending++;
                if (age_ms > v->pending_max_ms && pos == 1)
                    vfind(v, "pending", "batch %" PRIu64 " was committed %.1f s ago and is not sealed yet "
                          "(more than --pending-max): is a worker with seal_key_file running?", batch,
                          (double)age_ms / 1000.0);
            }
            if (!found) {
                size_t k;
                for (k = 0; k < nrm; k++)
                    if (occ >= rm[k].from_us && occ < rm[k].to_us)
                        break;
                if (k < nrm && rm[k].records > 0) {
                    rm[k].found++;
                    v->archived++;
                } else {
                    vfind(v, "deleted_row", "deleted row: event_id %.36s (%s): its sealed evidence has no "
                          "row in audit_events", id, where);
                }
            } else {
                const char *vals[ENTRY_EVENT_NFIELDS];
                size_t lens[ENTRY_EVENT_NFIELDS];
                merkle_hash leaf;

                char tb[100];

                verify_row_texts(r, i, 8, vals, lens, tb);
                v->rows_checked++;
                if (entry_event_leaf_hash(vals, lens, leaf) != 0 ||
                    memcmp(leaf, sealed_leaf, MERKLE_HASH_LEN) != 0)
                    vfind(v, "modified_row", "modified row: event_id %.36s (%s): the stored row does not "
                          "hash to its sealed leaf", id, where);
                else
                    v->rows_ok++;
            }
            if (v->tty && ++seen % VERIFY_PROGRESS_ROWS == 0)
                fprintf(stderr, "\r%s: %" PRIu64 " rows ...", VERIFY_PROG, seen);
        }
        PQclear(r);
    }
    if (v->tty && seen >= VERIFY_PROGRESS_ROWS)
        fprintf(stderr, "\r%s: %" PRIu64 " rows, done\n", VERIFY_PROG, seen);
    rc = 0;
out:
    (void)q;
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
 * exactly the removed ones -- the count, and (one record for the month)
 * the SHA-256 over their sealed leaf hashes in (event_id, occurred_at)
 * order, which the record took over the rows at removal. */
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
        if (m->records != 1 || v->have_window)
            continue;
        char f[32], t[32];
        const char *pv[2] = { f, t };
        snprintf(f, sizeof f, "%" PRId64, m->from_us);
        snprintf(t, sizeof t, "%" PRId64, m->to_us);
        PGresult *r = PQexecParams(v->pg,
            "SELECT encode(sha256(coalesce(string_agg(substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
            "                                          ''::bytea ORDER BY u.event_id, u.occurred_at), ''::bytea)), 'hex')"
            "  FROM auditq_evidence_batch b"
            " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
            " WHERE tstzrange(b.min_occurred_at, b.max_occurred_at, '[]') && "
            "       tstzrange(to_timestamp($1::bigint / 1e6), to_timestamp($2::bigint / 1e6), '[)')"
            "   AND u.occurred_at >= to_timestamp($1::bigint / 1e6) AND u.occurred_at < to_timestamp($2::bigint / 1e6)"
            "   AND NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.event_id = u.event_id AND e.occurred_at = u.occurred_at)",
            2, NULL, pv, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char first[600];
            ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
            fprintf(stderr, "%s: hashing archived leaves: %s\n", VERIFY_PROG, first);
            PQclear(r);
            return -1;
        }
        if (strcmp(PQgetvalue(r, 0, 0), m->hash) != 0)
            vfind(v, "retention", "month %s: the %lld rows retention removed (record %s) hash to %s, their "
                  "sealed leaves to %s: a row was altered before it was removed", m->month, m->expected,
                  m->record_id, m->hash, PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return 0;
}
