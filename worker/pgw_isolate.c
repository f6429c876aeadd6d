/* pgw_isolate.c -- finding the rows PostgreSQL refuses (pgw.h: pgw_bisect
 * and pgw_isolate; the DESIGN of pgw.c says when each is used). Pure
 * search logic over callbacks, so unit tests drive it without a server.
 */
#include "pgw.h"

#include <stdio.h>
#include <string.h>

/* ---- bisection ----------------------------------------------------------- */

typedef struct bisect_ctx {
    void *ctx;
    pgw_try_fn try_fn;
    pgw_row_result *res;
    pgw_stats *st;
} bisect_ctx;

enum { RANGE_RETRY = -1, RANGE_CLEAN = 0, RANGE_SPLIT = 1 };

/* Writes [lo, hi). known_bad: the caller has already proven this range holds
 * a bad row (its parent failed and its left sibling committed cleanly), so a
 * multi-row range is split without spending a transaction on it. A single
 * row is always tried: that is where the error message comes from, and an
 * error that does not reproduce just means the row commits. Returns
 * RANGE_CLEAN (committed in one transaction), RANGE_SPLIT (rows committed or
 * marked bad across several) or RANGE_RETRY (transient error). Recursion
 * depth is log2(hi - lo). */
static int bisect_range(bisect_ctx *b, size_t lo, size_t hi, int known_bad)
{
    if (!known_bad || hi - lo == 1) {
        char sqlstate[6] = "";
        char message[sizeof b->res[0].message] = "";

        b->st->transactions++;
        int rc = b->try_fn(b->ctx, lo, hi, sqlstate, message, sizeof message);
        if (rc == 0)
            return RANGE_CLEAN;
        if (rc < 0)
            return RANGE_RETRY;
        if (hi - lo == 1) {
            pgw_row_result *r = &b->res[lo];
            r->bad = 1;
            sqlstate[5] = '\0';
            message[sizeof message - 1] = '\0';
            memcpy(r->sqlstate, sqlstate, sizeof r->sqlstate);
            memcpy(r->message, message, sizeof r->message);
            return RANGE_SPLIT;
        }
    }
    b->st->bisections++;
    size_t mid = lo + (hi - lo) / 2;
    int left = bisect_range(b, lo, mid, 0);
    if (left == RANGE_RETRY)
        return RANGE_RETRY;
    if (bisect_range(b, mid, hi, left == RANGE_CLEAN) == RANGE_RETRY)
        return RANGE_RETRY;
    return RANGE_SPLIT;
}

int pgw_bisect(void *ctx, pgw_try_fn try_fn, size_t n, pgw_row_result *res, pgw_stats *st)
{
    pgw_stats local = {0};
    bisect_ctx b = { ctx, try_fn, res, st ? st : &local };

    for (size_t i = 0; i < n; i++)
        memset(&res[i], 0, sizeof res[i]);
    if (n == 0)
        return PGW_DONE;
    return bisect_range(&b, 0, n, 0) == RANGE_RETRY ? PGW_RETRY : PGW_DONE;
}

/* ---- isolation inside one transaction ------------------------------------ */

static void mark_bad(pgw_row_result *r, const char *sqlstate, const char *message)
{
    r->bad = 1;
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate);
    snprintf(r->message, sizeof r->message, "%s", message);
}

int pgw_isolate(void *ctx, pgw_probe_fn probe, size_t lo, size_t hi, const char *sqlstate,
                const char *message, pgw_row_result *res, pgw_stats *st)
{
    pgw_stats local = {0};
    char state[6], msg[sizeof res[0].message];

    if (!st)
        st = &local;
    snprintf(state, sizeof state, "%s", sqlstate);
    snprintf(msg, sizeof msg, "%s", message);
    /* Invariant: rows before lo are inserted or marked; [lo, hi) is
     * uninserted and its first bad row raised state/msg. */
    for (;;) {
        size_t l = lo, h = hi;
        char s2[6], m2[sizeof msg];
        int rc;

        /* Halve [l, h) down to the first bad row. Whatever succeeds is
         * kept, so everything before l stays inserted. */
        while (h - l > 1) {
            size_t mid = l + (h - l) / 2;
            s2[0] = m2[0] = '\0';
            st->bisections++;
            rc = probe(ctx, l, mid, 0, s2, m2, sizeof m2);
            if (rc < 0)
                return PGW_RETRY;
            if (rc == 0) {
                l = mid;
            } else {
                h = mid;
                memcpy(state, s2, sizeof state);
                state[5] = '\0';
                memcpy(msg, m2, sizeof msg);
                msg[sizeof msg - 1] = '\0';
            }
        }
        /* [l, l + 1) is the last range that failed with rows [lo, l)
         * inserted: row l raised the error. */
        mark_bad(&res[l], state, msg);
        lo = l + 1;
        /* Everything after it at once, committing if it goes in: with one
         * bad row this is the last round trip. */
        s2[0] = m2[0] = '\0';
        if (lo < hi)
            st->bisections++;
        rc = probe(ctx, lo, hi, 1, s2, m2, sizeof m2);
        if (rc == 0)
            return PGW_DONE;
        if (rc < 0 || lo == hi)  /* a bare COMMIT has no row to blame */
            return PGW_RETRY;
        memcpy(state, s2, sizeof state);
        state[5] = '\0';
        memcpy(msg, m2, sizeof msg);
        msg[sizeof msg - 1] = '\0';
    }
}

