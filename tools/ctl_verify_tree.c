/* ctl_verify_tree.c -- stream 1 of `auditqctl verify` (DESIGN in
 * ctl_verify.c): the assignments in leaf order with their batches' stored
 * leaf hashes, appended to a frontier and compared at every size a
 * checkpoint names, in PostgreSQL and published. */
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

/* ---- stream 1: the tree ------------------------------------------------------ */

typedef struct dbck {
    PGresult *res;
    int row, n, eof;
} dbck;

/* Next signed checkpoint row of cursor "cks" (tree_size, root, note).
 * Returns 1 with *row set, 0 at the end, -1 on error. */
static int dbck_next(verify *v, dbck *d)
{
    if (d->eof)
        return 0;
    if (d->res == NULL || d->row + 1 >= d->n) {
        PQclear(d->res);
        d->res = vfetch(v, "cks");
        if (d->res == NULL)
            return -1;
        d->n = PQntuples(d->res);
        d->row = -1;
        if (d->n == 0) {
            d->eof = 1;
            return 0;
        }
    }
    d->row++;
    return 1;
}

/* Compares root (the recomputed tree of `size` leaves) with the checkpoints
 * of that size: the current database row (if its size matches) and the
 * published ones. */
static void check_size(verify *v, uint64_t size, const merkle_hash root, dbck *d, size_t *pi)
{
    char want[64], got[64];

    vfy_b64(root, MERKLE_HASH_LEN, got, sizeof got);
    if (d->res != NULL && d->row >= 0 && d->row < d->n && !d->eof &&
        vfy_be64(PQgetvalue(d->res, d->row, 0)) == size) {
        const char *note = PQgetvalue(d->res, d->row, 2);
        size_t len = (size_t)PQgetlength(d->res, d->row, 2);
        char err[600];
        ckpt c;
        int rc = ckpt_open(note, len, v->keys, v->nkeys, v->cfg->namespace_, &c, err, sizeof err);

        v->ck_db++;
        if (rc != CKPT_OK) {
            vfind(v, "bad_signature", "checkpoint %" PRIu64 " in PostgreSQL: %s: %s", size,
                  ckpt_strerror(rc), err);
        } else if (c.size != size) {
            vfind(v, "checkpoint", "checkpoint row %" PRIu64 " in PostgreSQL holds a note of tree size %"
                  PRIu64, size, c.size);
        } else if (memcmp(c.root, root, MERKLE_HASH_LEN) != 0) {
            vfy_b64(c.root, MERKLE_HASH_LEN, want, sizeof want);
            vfind(v, "checkpoint", "signed checkpoint %" PRIu64 " (root %s) does not match the tree "
                  "recomputed from the evidence (root %s): leaves %" PRIu64 "..%" PRIu64
                  " were altered, removed or reordered after they were sealed", size, want, got,
                  v->last_good_size, size - 1);
        } else {
            v->ck_matched++;
            v->last_good_size = size;
            snprintf(v->key_used, sizeof v->key_used, "%s+%08x", c.key_name, c.key_hash);
        }
    }
    while (*pi < v->npub && v->pub[*pi].size <= size) {
        struct pubck *p = &v->pub[*pi];
        if (p->size == size) {
            v->ck_pub++;
            if (memcmp(p->root, root, MERKLE_HASH_LEN) != 0) {
                vfy_b64(p->root, MERKLE_HASH_LEN, want, sizeof want);
                vfind(v, "forked", "published checkpoint %s (tree size %" PRIu64 ", root %s) disagrees "
                      "with the tree in PostgreSQL at that size (root %s): a forked or rewritten history",
                      p->file, size, want, got);
            }
        } else if (p->size >= v->tree_lo) {
            vfind(v, "forked", "published checkpoint %s (tree size %" PRIu64 ") has no checkpoint of "
                  "its size in PostgreSQL", p->file, p->size);
        }
        (*pi)++;
    }
}

/* Streams the tree over leaves [lo, hi) from frontier f. */
int verify_tree(verify *v, merkle_frontier *f, uint64_t hi)
{
    char lo_t[32], hi_t[32];
    const char *pv[2] = { lo_t, hi_t };
    dbck d = { 0 };
    size_t pi = 0;
    uint64_t next = f->size;
    int rc = -1;

    snprintf(lo_t, sizeof lo_t, "%" PRIu64, f->size);
    snprintf(hi_t, sizeof hi_t, "%" PRIu64, hi);
    if (vdeclare(v, "tree",
            "SELECT a.first_leaf, a.n, a.kind, a.item_id, b.n, b.leaves,"
            "       r.record_id::text, to_char(r.month_from AT TIME ZONE 'UTC', 'YYYY-MM'), r.table_name,"
            "       r.action, r.row_count::text, encode(r.leaves_hash, 'hex')"
            "  FROM auditq_seal_assignment a"
            "  LEFT JOIN auditq_evidence_batch b ON a.kind = 'batch' AND b.batch_id = a.item_id"
            "  LEFT JOIN auditq_evidence_retention r ON a.kind = 'retention' AND r.record_id = a.item_id"
            " WHERE a.first_leaf >= $1::bigint AND a.first_leaf < $2::bigint"
            " ORDER BY a.first_leaf", 2, pv) != 0 ||
        vdeclare(v, "cks", "SELECT tree_size, root, note FROM auditq_checkpoint"
                 " WHERE tree_size > $1::bigint AND tree_size <= $2::bigint ORDER BY tree_size", 2, pv) != 0)
        return -1;
    /* Published checkpoints below the start were checked by the run that
     * made the starting checkpoint trusted; skip them. */
    while (pi < v->npub && v->pub[pi].size <= f->size)
        pi++;
    if (dbck_next(v, &d) < 0)
        goto out;
    for (;;) {
        PGresult *r = vfetch(v, "tree");
        int n;

        if (r == NULL)
            goto out;
        n = PQntuples(r);
        if (n == 0) {
            PQclear(r);
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t first = vfy_be64(PQgetvalue(r, i, 0));
            uint32_t cnt = vfy_be32(PQgetvalue(r, i, 1));
            const char *kind = PQgetvalue(r, i, 2);
            uint64_t item = vfy_be64(PQgetvalue(r, i, 3));
            merkle_hash leaf;

            if (v->tree_broken)
                break;
            if (first != next) {
                vfind(v, "missing_leaves", first > next
                      ? "leaves %" PRIu64 "..%" PRIu64 " have no evidence: a batch and its assignment were "
                        "deleted (the next sealed item, %s %" PRIu64 ", starts at leaf %" PRIu64 ")"
                      : "leaves %" PRIu64 "..%" PRIu64 " are assigned twice: batches were reordered or "
                        "duplicated (%s %" PRIu64 " starts at leaf %" PRIu64 ")",
                      first > next ? next : first, first > next ? first - 1 : next - 1, kind, item, first);
                v->tree_broken = 1;
                break;
            }
            if (strcmp(kind, "batch") == 0) {
                if (PQgetisnull(r, i, 4)) {
                    vfind(v, "missing_leaves", "leaves %" PRIu64 "..%" PRIu64 ": batch %" PRIu64
                          " was sealed there but its evidence row is gone (deleted)", first,
                          first + cnt - 1, item);
                    v->tree_broken = 1;
                    break;
                }
                if (vfy_be32(PQgetvalue(r, i, 4)) != cnt ||
                    (size_t)PQgetlength(r, i, 5) != (size_t)cnt * MERKLE_HASH_LEN) {
                    vfind(v, "missing_leaves", "leaves %" PRIu64 "..%" PRIu64 ": batch %" PRIu64
                          " now holds %u leaves, it was sealed with %u", first, first + cnt - 1, item,
                          vfy_be32(PQgetvalue(r, i, 4)), cnt);
                    v->tree_broken = 1;
                    break;
                }
                const char *lv = PQgetvalue(r, i, 5);
                for (uint32_t k = 0; k < cnt; k++) {
                    merkle_frontier_append(f, (const unsigned char *)lv + (size_t)k * MERKLE_HASH_LEN);
                    /* A checkpoint may fall inside a batch only if the
                     * sequencer split one, which it never does; still
                     * compare at every size a checkpoint names. */
                    if (k + 1 < cnt) {
                        while (!d.eof && d.res && vfy_be64(PQgetvalue(d.res, d.row, 0)) == f->size) {
                            merkle_frontier_root(f, leaf);
                            check_size(v, f->size, leaf, &d, &pi);
                            if (dbck_next(v, &d) < 0)
                                goto out;
                        }
                    }
                }
                v->event_leaves += cnt;
            } else {
                const char *fv[6];
                int fl[6];
                if (PQgetisnull(r, i, 6)) {
                    vfind(v, "missing_leaves", "leaf %" PRIu64 ": retention record %" PRIu64
                          " was sealed there but is gone (deleted)", first, item);
                    v->tree_broken = 1;
                    break;
                }
                for (int k = 0; k < 6; k++) {
                    fv[k] = PQgetvalue(r, i, 6 + k);
                    fl[k] = PQgetlength(r, i, 6 + k);
                }
                if (vfy_retention_leaf(fv, fl, leaf) != 0) {
                    vfind(v, "missing_leaves", "leaf %" PRIu64 ": retention record %" PRIu64
                          " is malformed", first, item);
                    v->tree_broken = 1;
                    break;
                }
                merkle_frontier_append(f, leaf);
                v->retention_leaves++;
            }
            next = f->size;
            /* Checkpoints at this size: database row(s) and published. */
            {
                merkle_hash root;
                int have = 0;
                while (!d.eof && d.res && vfy_be64(PQgetvalue(d.res, d.row, 0)) <= f->size) {
                    if (vfy_be64(PQgetvalue(d.res, d.row, 0)) < f->size) {
                        vfind(v, "checkpoint", "checkpoint %" PRIu64 " in PostgreSQL falls inside a "
                              "sealed item (leaves up to %" PRIu64 "): its tree cannot be rebuilt",
                              vfy_be64(PQgetvalue(d.res, d.row, 0)), f->size);
                    } else {
                        if (!have)
                            merkle_frontier_root(f, root);
                        have = 1;
                        check_size(v, f->size, root, &d, &pi);
                    }
                    if (dbck_next(v, &d) < 0) {
                        PQclear(r);
                        goto out;
                    }
                }
                if (pi < v->npub && v->pub[pi].size == f->size) {
                    if (!have)
                        merkle_frontier_root(f, root);
                    check_size(v, f->size, root, &d, &pi);
                }
            }
        }
        PQclear(r);
        if (v->tree_broken)
            break;
    }
    v->tree_hi = f->size;
    /* Whatever is left was not reached by the tree. */
    while (!d.eof && d.res) {
        uint64_t s = vfy_be64(PQgetvalue(d.res, d.row, 0));
        if (!v->tree_broken)
            vfind(v, "checkpoint", "signed checkpoint %" PRIu64 " in PostgreSQL is larger than the "
                  "tree its evidence rebuilds (%" PRIu64 " leaves): sealed evidence is missing", s, f->size);
        v->ck_db++;
        if (dbck_next(v, &d) < 0)
            goto out;
    }
    for (; pi < v->npub; pi++) {
        /* Beyond hi (--until): after the range this run checks. */
        if (v->tree_broken || v->pub[pi].size > hi)
            continue;
        vfind(v, "rolled_back", "published checkpoint %s (tree size %" PRIu64 ") is larger than the tree "
              "in PostgreSQL (%" PRIu64 " leaves): evidence and checkpoints were removed from the "
              "database (rolled back)", v->pub[pi].file, v->pub[pi].size, f->size);
        v->ck_pub++;
    }
    if (v->tree_broken)
        vfind(v, "checkpoint", "the tree could not be rebuilt past leaf %" PRIu64 "; checkpoints after "
              "it were not compared", f->size);
    rc = 0;
out:
    PQclear(d.res);
    vsql(v, "CLOSE tree");
    vsql(v, "CLOSE cks");
    return rc;
}

