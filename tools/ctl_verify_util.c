/* ctl_verify_util.c -- helpers of `auditqctl verify` (ctl_verify_int.h):
 * findings, byte order, SQL and cursors, the retention entry's leaf. */
#include <pthread.h>
#include <stdarg.h>
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

/* ---- findings ------------------------------------------------------------- */

void vfind(verify *v, const char *kind, const char *fmt, ...)
{
    va_list ap;
    finding *f = NULL;

    /* Stream 2 runs in several threads (--jobs). */
    pthread_mutex_lock(&v->found_mu);
    v->nfound_total++;
    if (v->nfound < VERIFY_FINDINGS_KEPT && v->found == NULL)
        v->found = calloc(VERIFY_FINDINGS_KEPT, sizeof *v->found);
    if (v->nfound < VERIFY_FINDINGS_KEPT && v->found != NULL) {
        f = &v->found[v->nfound++];
        snprintf(f->kind, sizeof f->kind, "%s", kind);
        va_start(ap, fmt);
        vsnprintf(f->text, sizeof f->text, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&v->found_mu);
}

void vfy_b64(const unsigned char *p, size_t n, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
}

uint64_t vfy_be64(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = x << 8 | u[i];
    return x;
}

uint32_t vfy_be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* The entry texts of a row read with VERIFY_ROW_FIELDS_RAW from column
 * col of r (binary): event_id and the two timestamps formatted into buf
 * (at least 100 bytes), the others pointed at. */
void vfy_uuid_text(const unsigned char *u, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;

    for (int j = 0; j < 16; j++) {
        if (j == 4 || j == 6 || j == 8 || j == 10)
            out[k++] = '-';
        out[k++] = hex[u[j] >> 4];
        out[k++] = hex[u[j] & 15];
    }
    out[k] = '\0';
}

void verify_row_texts(const PGresult *r, int i, int col, const char *vals[ENTRY_EVENT_NFIELDS],
                             size_t lens[ENTRY_EVENT_NFIELDS], char *buf)
{
    char *id = buf, *ts1 = buf + 40, *ts2 = buf + 70;

    vfy_uuid_text((const unsigned char *)PQgetvalue(r, i, col), id);
    vals[0] = id;
    lens[0] = 36;
    vals[1] = ts1;
    lens[1] = entry_format_us((int64_t)vfy_be64(PQgetvalue(r, i, col + 1)) + VERIFY_PG_EPOCH_US, ts1, 30);
    vals[2] = ts2;
    lens[2] = entry_format_us((int64_t)vfy_be64(PQgetvalue(r, i, col + 2)) + VERIFY_PG_EPOCH_US, ts2, 30);
    for (int j = 3; j < ENTRY_EVENT_NFIELDS; j++) {
        vals[j] = PQgetisnull(r, i, col + j) ? NULL : PQgetvalue(r, i, col + j);
        lens[j] = (size_t)PQgetlength(r, i, col + j);
    }
}

int vsql(verify *v, const char *sql)
{
    PGresult *r = PQexec(v->pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: %s: %s\n", VERIFY_PROG, sql, first);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* FETCH from cursor in binary. NULL after printing on error. */
PGresult *vfetch(verify *v, const char *cursor)
{
    char sql[96];
    PGresult *r;

    /* A tree row carries a whole batch's leaf hashes (32 bytes per event):
     * fetch those few at a time, so memory does not follow the batch count. */
    snprintf(sql, sizeof sql, "FETCH %d FROM %s",
             strcmp(cursor, "tree") == 0 || strcmp(cursor, "pl") == 0 ? VERIFY_FETCH_TREE : VERIFY_FETCH,
             cursor);
    r = PQexecParams(v->pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: reading %s: %s\n", VERIFY_PROG, cursor, first);
        PQclear(r);
        return NULL;
    }
    return r;
}

int vdeclare(verify *v, const char *name, const char *query, int np, const char *const *pv)
{
    char *sql;
    size_t n = strlen(query) + 128;
    PGresult *r;
    int ok;

    sql = malloc(n);
    if (sql == NULL)
        return -1;
    snprintf(sql, n, "DECLARE %s NO SCROLL CURSOR FOR %s", name, query);
    r = PQexecParams(v->pg, sql, np, NULL, pv, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        char first[600];
        ctl_first_line(PQresultErrorMessage(r), first, sizeof first);
        fprintf(stderr, "%s: opening %s: %s\n", VERIFY_PROG, name, first);
    }
    PQclear(r);
    free(sql);
    return ok ? 0 : -1;
}

/* ---- retention entries ------------------------------------------------------ */

static size_t put_field(unsigned char *out, size_t off, size_t cap, const char *s, size_t n)
{
    if (off + 4 + n <= cap) {
        out[off] = (unsigned char)(n >> 24);
        out[off + 1] = (unsigned char)(n >> 16);
        out[off + 2] = (unsigned char)(n >> 8);
        out[off + 3] = (unsigned char)n;
        memcpy(out + off + 4, s, n);
    }
    return off + 4 + n;
}

/* The leaf of a retention record (type 0x02; docs/INTEGRITY.md): fields
 * record_id, month, table, action, row_count, leaves_hash (hex). */
int vfy_retention_leaf(const char *const f[6], const int lens[6], merkle_hash out)
{
    unsigned char buf[2048];
    size_t off = 1;

    buf[0] = ENTRY_TYPE_RETENTION;
    for (int i = 0; i < 6; i++)
        off = put_field(buf, off, sizeof buf, f[i], (size_t)lens[i]);
    if (off > sizeof buf)
        return -1;
    merkle_leaf_hash(buf, off, out);
    return 0;
}

/* ---- stream 2's parts ----------------------------------------------------------- */

void verify_stats_add(verify *v, const vstats *s, retmonth *rm, size_t nrm)
{
    v->rows_checked += s->rows_checked;
    v->rows_ok += s->rows_ok;
    v->archived += s->archived;
    v->pending += s->pending;
    v->inserted += s->inserted;
    for (size_t k = 0; k < nrm; k++)
        rm[k].found += s->rm_found[k];
}

int verify_run_parts(verify *v, void *base, size_t stride, int n, void *(*fn)(void *), void (*on_fail)(void *),
                     void *fail_arg)
{
    pthread_t tid[VERIFY_MAX_JOBS];
    int started = 0;

    for (int k = 1; k < n && k < VERIFY_MAX_JOBS; k++) {
        if (pthread_create(&tid[k], NULL, fn, (char *)base + (size_t)k * stride) != 0) {
            fprintf(stderr, "%s: cannot start a thread for --jobs\n", VERIFY_PROG);
            if (on_fail)
                on_fail(fail_arg);
            break;
        }
        started = k;
    }
    fn(base);
    for (int k = 1; k <= started; k++)
        pthread_join(tid[k], NULL);
    if (started != n - 1)
        return -1;
    if (v->tty && atomic_load(&v->progress) >= VERIFY_PROGRESS_ROWS)
        fprintf(stderr, "\r%s: %" PRIu64 " rows, done\n", VERIFY_PROG, (uint64_t)atomic_load(&v->progress));
    return 0;
}
