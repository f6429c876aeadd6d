/* ctl_verify_join.c -- stream 2 of a full `auditqctl verify` run (DESIGN in
 * ctl_verify.c): every stored row against the sealed leaf of its evidence,
 * joined here rather than in PostgreSQL.
 *
 * DESIGN
 * The rows are split into parts by occurred_at, each holding at most about
 * --part-events events (default VERIFY_PART_ITEMS; part_bounds, weighted
 * by the batches' sizes),
 * and at least --jobs parts. --jobs threads, each with its own connection
 * in the run's exported snapshot, take the parts in turn. For one part:
 *   1. the evidence: the batches whose occurred_at span meets the part's
 *      range, in binary (uuid[], timestamptz[], the 32-byte leaves); the
 *      items whose occurred_at is in the range go into an open-addressing
 *      table keyed by (event_id, occurred_at);
 *   2. the rows: COPY (SELECT ... WHERE occurred_at in the range) TO STDOUT
 *      in binary -- a plain scan of the part's partitions, no join and no
 *      hash on the server, and no PGresult per row here; each row's leaf is
 *      recomputed (common/entry.c) and compared with every item of its key;
 *      a row with no item is an inserted row;
 *   3. the items no row claimed: deleted rows, or archived ones in a month
 *      retention removed.
 * Why: the join in PostgreSQL hashed the 400 MB of rows (the evidence side
 * comes from unnest() and has no statistics), spilled to disk at 10M rows,
 * and was two thirds of the run's CPU; a PGresult per row in single-row
 * mode was most of ours.
 * Memory: one part's table per thread, at most --part-events items
 * (~100 bytes each: 80 of item, 8-16 of slot) unless more events than
 * that sit in batches beginning at one same occurred_at (the bounds are
 * chosen among the batches' first occurred_at); the server streams.
 * Incremental runs (--since/--until) keep the server-side join of
 * ctl_verify_rows.c: their evidence is a leaf range, small, and index
 * lookups of its rows beat a scan of every partition. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "ctl.h"
#include "ctl_common.h"
#include "ctl_verify.h"
#include "ctl_verify_int.h"
#include "entry.h"
#include "merkle.h"

/* ---- the evidence table ---------------------------------------------------- */

static uint64_t vj_rd64(const unsigned char *p)
{
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32) |
           ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

static uint32_t vj_rd32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static size_t vj_slot(const unsigned char id[16], int64_t occ, size_t mask)
{
    uint64_t h = vj_rd64(id) ^ (vj_rd64(id + 8) * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)occ;

    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    return (size_t)h & mask;
}

void vtable_free(vtable *t)
{
    free(t->items);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

void vtable_reset(vtable *t)
{
    t->n = 0;
    if (t->slots != NULL)
        memset(t->slots, 0, t->nslots * sizeof *t->slots);
}

static int vtable_rehash(vtable *t, size_t nslots)
{
    uint32_t *s = calloc(nslots, sizeof *s);

    if (s == NULL)
        return -1;
    free(t->slots);
    t->slots = s;
    t->nslots = nslots;
    for (size_t i = 0; i < t->n; i++) {
        size_t k = vj_slot(t->items[i].id, t->items[i].occ, nslots - 1);
        while (s[k] != 0)
            k = (k + 1) & (nslots - 1);
        s[k] = (uint32_t)(i + 1);
    }
    return 0;
}

vitem *vtable_add(vtable *t)
{
    vitem *it;

    if (t->n >= UINT32_MAX - 1)
        return NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        vitem *ni = realloc(t->items, cap * sizeof *ni);
        if (ni == NULL)
            return NULL;
        t->items = ni;
        t->cap = cap;
    }
    /* Load at most 1/2: a probe of a missing key ends at an empty slot soon. */
    if ((t->n + 1) * 2 > t->nslots && vtable_rehash(t, t->nslots ? t->nslots * 2 : 8192) != 0)
        return NULL;
    it = &t->items[t->n];
    memset(it, 0, sizeof *it);
    return it;
}

void vtable_commit(vtable *t)
{
    vitem *it = &t->items[t->n];
    size_t k = vj_slot(it->id, it->occ, t->nslots - 1);

    while (t->slots[k] != 0)
        k = (k + 1) & (t->nslots - 1);
    t->slots[k] = (uint32_t)(++t->n);
}

vitem *vtable_next(vtable *t, const unsigned char id[16], int64_t occ, size_t *cursor)
{
    size_t k;

    if (t->nslots == 0)
        return NULL;
    k = *cursor == 0 ? vj_slot(id, occ, t->nslots - 1) : *cursor & (t->nslots - 1);
    for (;;) {
        uint32_t s = t->slots[k];
        vitem *it;

        if (s == 0)
            return NULL;
        it = &t->items[s - 1];
        k = (k + 1) & (t->nslots - 1);
        if (it->occ == occ && memcmp(it->id, id, 16) == 0) {
            *cursor = k == 0 ? t->nslots : k; /* never 0: 0 means "start" */
            return it;
        }
    }
}

/* ---- binary values ----------------------------------------------------------- */

int vj_array(const unsigned char *p, size_t len, uint32_t elem_len, const unsigned char **elems, size_t *n)
{
    uint32_t ndim, dim;

    if (len < 12)
        return -1;
    ndim = vj_rd32(p);
    if (ndim == 0) {
        *elems = p + 12;
        *n = 0;
        return 0;
    }
    if (ndim != 1 || len < 20 || vj_rd32(p + 4) != 0) /* one dimension, no NULLs */
        return -1;
    dim = vj_rd32(p + 12);
    if ((size_t)dim > (len - 20) / (4 + elem_len) || len - 20 != (size_t)dim * (4 + elem_len))
        return -1;
    for (size_t i = 0; i < dim; i++)
        if (vj_rd32(p + 20 + i * (4 + elem_len)) != elem_len)
            return -1;
    *elems = p + 20;
    *n = dim;
    return 0;
}

int vj_copy_fields(const unsigned char *p, size_t len, size_t *off, int nf, const unsigned char **vals,
                   int32_t *lens)
{
    size_t o = *off;
    int16_t count;

    if (len - o < 2)
        return -1;
    count = (int16_t)(((unsigned)p[o] << 8) | p[o + 1]);
    o += 2;
    if (count == -1) {
        *off = o;
        return 0; /* the trailer */
    }
    if (count != nf)
        return -1;
    for (int j = 0; j < nf; j++) {
        int32_t l;
        if (len - o < 4)
            return -1;
        l = (int32_t)vj_rd32(p + o);
        o += 4;
        if (l < -1 || (l > 0 && (size_t)l > len - o))
            return -1;
        vals[j] = l < 0 ? NULL : p + o;
        lens[j] = l;
        if (l > 0)
            o += (size_t)l;
    }
    *off = o;
    return 1;
}

size_t vj_iso_us(int64_t pg_us, char *out, size_t cap)
{
    int64_t us = pg_us + VERIFY_PG_EPOCH_US;
    int64_t s = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    long frac = (long)(us - s * 1000000);
    time_t t = (time_t)s;
    struct tm tm;
    char d[32];
    int n;

    if (gmtime_r(&t, &tm) == NULL || strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return 0;
    n = snprintf(out, cap, "%s.%06ldZ", d, frac);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- one part -------------------------------------------------------------- */

/* The per-thread state: its connection, its table, its counts. */
typedef struct vjob {
    verify *v;
    PGconn *pg;
    int own;
    const char *const *bounds;   /* nparts - 1 timestamptz texts */
    int nparts;
    atomic_int *next;
    const retmonth *rm;
    size_t nrm;
    int with_pending;
    vtable t;
    vstats st;                     /* the part's counts */
    int rc;
} vjob;

static void vj_sql_error(const char *what, const char *msg)
{
    char first[600];

    ctl_first_line(msg, first, sizeof first);
    fprintf(stderr, "%s: %s: %s\n", VERIFY_PROG, what, first);
}

static void vj_where(const vitem *it, char *where, size_t cap)
{
    if (it->sealed)
        snprintf(where, cap, "leaf %" PRIu64 ", batch %" PRIu64 " position %" PRIu32, it->leaf_index, it->batch,
                 it->pos);
    else
        snprintf(where, cap, "batch %" PRIu64 " position %" PRIu32 ", not sealed yet", it->batch, it->pos);
}

/* Step 1: the part's evidence into the table. */
static int vj_load(vjob *j, const char *lo, const char *hi)
{
    verify *v = j->v;
    char lo_t[32], hi_t[32];
    const char *pv[5] = { lo_t, hi_t, j->with_pending ? "true" : "false", lo, hi };
    int64_t lo_us = INT64_MIN, hi_us = INT64_MAX;
    PGresult *r;
    int rc = 0;

    snprintf(lo_t, sizeof lo_t, "%" PRIu64, v->tree_lo);
    snprintf(hi_t, sizeof hi_t, "%" PRIu64, v->tree_hi);
    /* The bounds as PostgreSQL's own microseconds, to cut items exactly
     * where the rows' WHERE does. */
    {
        const char *bp[2] = { lo, hi };
        r = PQexecParams(j->pg,
                         "SELECT CASE WHEN isfinite(t) THEN ((extract(epoch from t) - 946684800) * 1000000)::bigint"
                         "            WHEN t > 'epoch' THEN 9223372036854775807 ELSE -9223372036854775807 - 1 END"
                         "  FROM unnest(ARRAY[$1::timestamptz, $2::timestamptz]) WITH ORDINALITY AS u(t, o)"
                         " ORDER BY o",
                         2, NULL, bp, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 2) {
            vj_sql_error("reading a part's bounds", PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        if (lo != NULL)
            lo_us = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (hi != NULL)
            hi_us = strtoll(PQgetvalue(r, 1, 0), NULL, 10);
        PQclear(r);
    }
    if (!PQsendQueryParams(j->pg,
            "SELECT b.batch_id, a.first_leaf,"
            "       (extract(epoch from clock_timestamp() - b.created_at) * 1000)::bigint,"
            "       b.event_ids, b.occurred_ats, b.leaves"
            "  FROM auditq_evidence_batch b"
            "  LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
            " WHERE ((a.first_leaf >= $1::bigint AND a.first_leaf < $2::bigint)"
            "        OR (a.item_id IS NULL AND $3::boolean))"
            "   AND ($4::timestamptz IS NULL OR b.max_occurred_at >= $4::timestamptz)"
            "   AND ($5::timestamptz IS NULL OR b.min_occurred_at < $5::timestamptz)",
            5, NULL, pv, NULL, NULL, 1) ||
        !PQsetSingleRowMode(j->pg)) {
        vj_sql_error("reading the evidence", PQerrorMessage(j->pg));
        return -1;
    }
    while ((r = PQgetResult(j->pg)) != NULL) {
        const unsigned char *ids, *occs, *leaves;
        size_t nid, nocc;
        uint64_t batch, first_leaf;
        int sealed;
        int64_t age_ms;

        if (PQresultStatus(r) == PGRES_TUPLES_OK || rc != 0) {
            PQclear(r);
            continue;
        }
        if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
            vj_sql_error("reading the evidence", PQresultErrorMessage(r));
            PQclear(r);
            rc = -1;
            continue;
        }
        batch = vfy_be64(PQgetvalue(r, 0, 0));
        sealed = !PQgetisnull(r, 0, 1);
        first_leaf = sealed ? vfy_be64(PQgetvalue(r, 0, 1)) : 0;
        age_ms = (int64_t)vfy_be64(PQgetvalue(r, 0, 2));
        leaves = (const unsigned char *)PQgetvalue(r, 0, 5);
        if (vj_array((const unsigned char *)PQgetvalue(r, 0, 3), (size_t)PQgetlength(r, 0, 3), 16, &ids, &nid) != 0 ||
            vj_array((const unsigned char *)PQgetvalue(r, 0, 4), (size_t)PQgetlength(r, 0, 4), 8, &occs, &nocc) != 0 ||
            nid != nocc || (size_t)PQgetlength(r, 0, 5) != nid * MERKLE_HASH_LEN) {
            /* The table's CHECK forbids this shape: someone altered it. */
            vfind(v, "malformed_evidence", "evidence batch %" PRIu64 " is malformed (its event_ids, occurred_ats "
                  "and leaves do not line up): it cannot vouch for any row", batch);
            PQclear(r);
            continue;
        }
        for (size_t i = 0; i < nid; i++) {
            int64_t occ = (int64_t)vj_rd64(occs + i * 12 + 4);
            vitem *it;

            if (occ < lo_us || occ >= hi_us)
                continue; /* another part's */
            if (!sealed) {
                j->st.pending++;
                if (age_ms > v->pending_max_ms && i == 0)
                    vfind(v, "pending", "batch %" PRIu64 " was committed %.1f s ago and is not sealed yet "
                          "(more than --pending-max): is a worker with seal_key_file running?", batch,
                          (double)age_ms / 1000.0);
            }
            if ((it = vtable_add(&j->t)) == NULL) {
                fprintf(stderr, "%s: out of memory for the evidence of a part (%zu items)\n", VERIFY_PROG, j->t.n);
                rc = -1;
                break;
            }
            memcpy(it->id, ids + i * 20 + 4, 16);
            it->occ = occ;
            it->batch = batch;
            it->pos = (uint32_t)(i + 1);
            it->sealed = (uint8_t)sealed;
            it->leaf_index = first_leaf + i;
            memcpy(it->leaf, leaves + i * MERKLE_HASH_LEN, MERKLE_HASH_LEN);
            vtable_commit(&j->t);
        }
        PQclear(r);
    }
    return rc;
}

/* Step 2, one row of the COPY: its 18 entry fields. */
static void vj_row(vjob *j, const unsigned char *const f[ENTRY_EVENT_NFIELDS], const int32_t fl[ENTRY_EVENT_NFIELDS])
{
    verify *v = j->v;
    const char *vals[ENTRY_EVENT_NFIELDS];
    size_t lens[ENTRY_EVENT_NFIELDS], cur = 0;
    char id[40], ts1[32], ts2[32], where[160];
    int64_t occ = (int64_t)vj_rd64(f[1]);
    merkle_hash leaf;
    int hashed = 0, any = 0;
    vitem *it;

    vfy_uuid_text(f[0], id);
    while ((it = vtable_next(&j->t, f[0], occ, &cur)) != NULL) {
        any = 1;
        it->seen = 1;
        if (!hashed) {
            vals[0] = id;
            lens[0] = 36;
            vals[1] = ts1;
            lens[1] = entry_format_us(occ + VERIFY_PG_EPOCH_US, ts1, sizeof ts1);
            vals[2] = ts2;
            lens[2] = entry_format_us((int64_t)vj_rd64(f[2]) + VERIFY_PG_EPOCH_US, ts2, sizeof ts2);
            for (int k = 3; k < ENTRY_EVENT_NFIELDS; k++) {
                vals[k] = (const char *)f[k];
                lens[k] = fl[k] < 0 ? 0 : (size_t)fl[k];
            }
            if (entry_event_leaf_hash(vals, lens, leaf) != 0)
                memset(leaf, 0, sizeof leaf); /* too long a field: no stored leaf is all zero */
            hashed = 1;
        }
        j->st.rows_checked++;
        if (memcmp(leaf, it->leaf, MERKLE_HASH_LEN) != 0) {
            vj_where(it, where, sizeof where);
            vfind(v, "modified_row", "modified row: event_id %.36s (%s): the stored row does not "
                  "hash to its sealed leaf", id, where);
        } else {
            j->st.rows_ok++;
        }
    }
    if (!any) {
        char rt[40];
        vj_iso_us((int64_t)vj_rd64(f[2]), rt, sizeof rt);
        j->st.inserted++;
        vfind(v, "inserted_row", "inserted row: event_id %.36s (received_at %s): no evidence covers it", id, rt);
    }
}

/* Step 2: the part's rows, streamed. */
static int vj_rows(vjob *j, const char *lo, const char *hi)
{
    verify *v = j->v;
    char *qlo = NULL, *qhi = NULL, *buf = NULL, sql[1024];
    int rc = -1, header = 0, done = 0;
    PGresult *r;

    if ((lo != NULL && (qlo = PQescapeLiteral(j->pg, lo, strlen(lo))) == NULL) ||
        (hi != NULL && (qhi = PQescapeLiteral(j->pg, hi, strlen(hi))) == NULL)) {
        vj_sql_error("quoting a part's bounds", PQerrorMessage(j->pg));
        goto out;
    }
    /* The bounds are timestamptz texts PostgreSQL printed (< 48 bytes),
     * quoted: the statement fits in sql. */
    if ((size_t)snprintf(sql, sizeof sql, "COPY (SELECT " VERIFY_ROW_FIELDS_RAW " FROM audit_events e WHERE true%s%s%s%s%s%s)"
             " TO STDOUT (FORMAT binary)",
             qlo ? " AND e.occurred_at >= " : "", qlo ? qlo : "", qlo ? "::timestamptz" : "",
             qhi ? " AND e.occurred_at < " : "", qhi ? qhi : "", qhi ? "::timestamptz" : "") >= sizeof sql) {
        fprintf(stderr, "%s: reading the rows: a part's bounds are too long\n", VERIFY_PROG);
        goto out;
    }
    r = PQexec(j->pg, sql);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        vj_sql_error("reading the rows", PQresultErrorMessage(r));
        PQclear(r);
        goto out;
    }
    PQclear(r);
    for (;;) {
        const unsigned char *p, *f[ENTRY_EVENT_NFIELDS];
        int32_t fl[ENTRY_EVENT_NFIELDS];
        size_t off = 0, len;
        int got;

        if (buf != NULL)
            PQfreemem(buf);
        buf = NULL;
        got = PQgetCopyData(j->pg, &buf, 0);
        if (got == -1)
            break; /* the end: the command's result follows */
        if (got < 0) {
            vj_sql_error("reading the rows", PQerrorMessage(j->pg));
            goto drain;
        }
        p = (const unsigned char *)buf;
        len = (size_t)got;
        if (!header) {
            /* PGCOPY\n\377\r\n\0, flags, the header extension's length. */
            if (len < 19 || memcmp(p, "PGCOPY\n\377\r\n", 11) != 0 || len - 19 < vj_rd32(p + 15)) {
                fprintf(stderr, "%s: reading the rows: the COPY stream does not start with its header\n",
                        VERIFY_PROG);
                goto drain;
            }
            off = 19 + vj_rd32(p + 15);
            header = 1;
        }
        while (off < len && !done) {
            int k = vj_copy_fields(p, len, &off, ENTRY_EVENT_NFIELDS, f, fl);
            if (k < 0 || (k == 1 && (fl[0] != 16 || fl[1] != 8 || fl[2] != 8))) {
                fprintf(stderr, "%s: reading the rows: a malformed row in the COPY stream\n", VERIFY_PROG);
                goto drain;
            }
            if (k == 0) {
                done = 1;
                break;
            }
            vj_row(j, f, fl);
            uint64_t seen = atomic_fetch_add(&v->progress, 1) + 1;
            if (v->tty && seen % VERIFY_PROGRESS_ROWS == 0)
                fprintf(stderr, "\r%s: %" PRIu64 " rows ...", VERIFY_PROG, seen);
        }
    }
    rc = 0;
drain:
    while ((r = PQgetResult(j->pg)) != NULL) {
        if (rc == 0 && PQresultStatus(r) != PGRES_COMMAND_OK) {
            vj_sql_error("reading the rows", PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
out:
    if (buf != NULL)
        PQfreemem(buf);
    PQfreemem(qlo);
    PQfreemem(qhi);
    return rc;
}

/* Step 3: the items no row claimed. */
static void vj_leftovers(vjob *j)
{
    verify *v = j->v;
    char id[40], where[160];

    for (size_t i = 0; i < j->t.n; i++) {
        const vitem *it = &j->t.items[i];
        int64_t occ_unix = it->occ + VERIFY_PG_EPOCH_US;
        size_t k;

        if (it->seen)
            continue;
        for (k = 0; k < j->nrm; k++)
            if (occ_unix >= j->rm[k].from_us && occ_unix < j->rm[k].to_us)
                break;
        if (k < j->nrm && j->rm[k].records > 0) {
            j->st.rm_found[k]++;
            j->st.archived++;
            continue;
        }
        vfy_uuid_text(it->id, id);
        vj_where(it, where, sizeof where);
        vfind(v, "deleted_row", "deleted row: event_id %.36s (%s): its sealed evidence has no "
              "row in audit_events", id, where);
    }
}

static void *vj_thread(void *arg)
{
    vjob *j = arg;

    j->rc = 0;
    for (;;) {
        int k = atomic_fetch_add(j->next, 1);
        const char *lo, *hi;

        if (k >= j->nparts)
            break;
        lo = k == 0 ? NULL : j->bounds[k - 1];
        hi = k == j->nparts - 1 ? NULL : j->bounds[k];
        vtable_reset(&j->t);
        if (vj_load(j, lo, hi) != 0 || vj_rows(j, lo, hi) != 0) {
            j->rc = -1;
            atomic_store(j->next, j->nparts); /* the others stop after their part */
            break;
        }
        vj_leftovers(j);
    }
    return NULL;
}

/* A thread could not start: the others take no new part. */
static void vj_stop_all(void *arg)
{
    vjob *j = arg;
    atomic_store(j->next, j->nparts);
}

int verify_rows_full(verify *v, retmonth *rm, size_t nrm, int with_pending)
{
    vjob jobs[VERIFY_MAX_JOBS];
    char (*bounds)[48] = NULL;
    const char **bp = NULL;
    char snapshot[128] = "";
    atomic_int next = 0;
    int njobs = v->jobs < 1 ? 1 : v->jobs, nparts, rc = -1;
    long long total;
    PGresult *r;

    memset(jobs, 0, sizeof jobs);
    r = PQexec(v->pg, "SELECT coalesce(sum(n), 0) FROM auditq_evidence_batch");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        vj_sql_error("counting the evidence", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    total = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    nparts = (int)((total + v->part_items - 1) / v->part_items);
    if (nparts < njobs)
        nparts = njobs;
    if (nparts > VERIFY_MAX_PARTS)
        nparts = VERIFY_MAX_PARTS; /* bigger parts rather than a huge list of bounds */
    if ((bounds = calloc((size_t)nparts, sizeof *bounds)) == NULL ||
        (bp = calloc((size_t)nparts, sizeof *bp)) == NULL) {
        fprintf(stderr, "%s: out of memory\n", VERIFY_PROG);
        goto out;
    }
    if (nparts > 1 && verify_part_bounds(v, nparts, bounds) != 0)
        goto out;
    for (int k = 0; k + 1 < nparts; k++)
        bp[k] = bounds[k];
    if (njobs > 1 && verify_export_snapshot(v, snapshot, sizeof snapshot) != 0)
        goto out;
    for (int k = 0; k < njobs; k++) {
        vjob *j = &jobs[k];
        j->v = v;
        j->bounds = bp;
        j->nparts = nparts;
        j->next = &next;
        j->rm = rm;
        j->nrm = nrm;
        j->with_pending = with_pending;
        j->st.rm_found = calloc(nrm ? nrm : 1, sizeof *j->st.rm_found);
        if (j->st.rm_found == NULL) {
            fprintf(stderr, "%s: out of memory\n", VERIFY_PROG);
            goto out;
        }
        if (k == 0) {
            j->pg = v->pg;
        } else {
            if ((j->pg = verify_part_connect(v, snapshot)) == NULL)
                goto out;
            j->own = 1;
        }
    }
    if (verify_run_parts(v, jobs, sizeof jobs[0], njobs, vj_thread, vj_stop_all, &jobs[0]) != 0)
        goto out;
    rc = 0;
    for (int k = 0; k < njobs; k++) {
        if (jobs[k].rc != 0)
            rc = -1;
        verify_stats_add(v, &jobs[k].st, rm, nrm);
    }
out:
    for (int k = 0; k < njobs; k++) {
        if (jobs[k].own)
            PQfinish(jobs[k].pg);
        free(jobs[k].st.rm_found);
        vtable_free(&jobs[k].t);
    }
    free(bounds);
    free(bp);
    return rc;
}
