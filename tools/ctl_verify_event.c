/* ctl_verify_event.c -- `auditqctl verify --event ID`: an inclusion proof
 * of one event against the newest signed checkpoint, written as a proof
 * file (ctl_verify_proof.c) a third party checks offline. */
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

/* ---- --event: an inclusion proof ------------------------------------------------ */

/* The proof's hashes, read by index rather than by a pass over the tree
 * (RFC 9162 proofs need O(log n) subtree hashes):
 *   nodes   a perfect subtree [lo, lo + 2^k) with lo a multiple of 2^(k+1)
 *           is one of the frontier hashes of every tree size in
 *           [lo + 2^k, lo + 2^(k+1)): the frontier stored with such a
 *           checkpoint gives it (one index lookup on tree_size). A right
 *           child never is a frontier hash; merkle.c then asks for its
 *           halves.
 *   leaves  only for the subtrees no checkpoint gives (those below the
 *           spacing of the checkpoints): the items holding them, by the
 *           index on first_leaf.
 * The frontiers are not signed: a wrong one gives a path that does not
 * lead to the signed root, which verify_event checks before writing the
 * proof; it then builds the proof from the leaves alone (and reports a
 * path that still does not lead there). */
typedef struct leafsrc {
    verify *v;
    uint64_t size;               /* the tree the proof is for */
    PGresult *res;               /* items in leaf order, from one indexed read */
    int n;
    uint64_t leaves_read, nodes_read;
} leafsrc;

#define LEAFSRC_ITEMS "16"

static int leafsrc_fetch(leafsrc *s, uint64_t want, char *err, size_t errlen)
{
    char w[32], hi[32];
    const char *pv[2] = { w, hi };

    PQclear(s->res);
    snprintf(w, sizeof w, "%" PRIu64, want);
    snprintf(hi, sizeof hi, "%" PRIu64, s->size);
    s->res = PQexecParams(s->v->pg,
        "SELECT a.first_leaf, a.n, a.kind, b.leaves, r.record_id::text,"
        "       to_char(r.month_from AT TIME ZONE 'UTC', 'YYYY-MM'), r.table_name, r.action,"
        "       r.row_count::text, encode(r.leaves_hash, 'hex')"
        "  FROM auditq_seal_assignment a"
        "  LEFT JOIN auditq_evidence_batch b ON a.kind = 'batch' AND b.batch_id = a.item_id"
        "  LEFT JOIN auditq_evidence_retention r ON a.kind = 'retention' AND r.record_id = a.item_id"
        " WHERE a.first_leaf >= (SELECT max(first_leaf) FROM auditq_seal_assignment WHERE first_leaf <= $1::bigint)"
        "   AND a.first_leaf < $2::bigint"
        " ORDER BY a.first_leaf LIMIT " LEAFSRC_ITEMS, 2, NULL, pv, NULL, NULL, 1);
    s->n = 0;
    if (PQresultStatus(s->res) != PGRES_TUPLES_OK) {
        ctl_first_line(PQresultErrorMessage(s->res), err, errlen);
        return -1;
    }
    s->n = PQntuples(s->res);
    return 0;
}

/* The row of s->res holding leaf want, or -1. */
static int leafsrc_find(const leafsrc *s, uint64_t want)
{
    for (int i = 0; i < s->n; i++) {
        uint64_t first = vfy_be64(PQgetvalue(s->res, i, 0));
        if (first <= want && want < first + vfy_be32(PQgetvalue(s->res, i, 1)))
            return i;
        if (first > want)
            break;
    }
    return -1;
}

/* merkle_leaf_fn */
static int leafsrc_leaves(void *ctx, uint64_t first, size_t n, merkle_hash *out, char *err, size_t errlen)
{
    leafsrc *s = ctx;

    for (size_t done = 0; done < n; done++) {
        uint64_t want = first + done;
        int row = leafsrc_find(s, want);

        if (row < 0) {
            if (leafsrc_fetch(s, want, err, errlen) != 0)
                return -1;
            row = leafsrc_find(s, want);
            if (row < 0) {
                snprintf(err, errlen, "leaf %" PRIu64 " has no evidence (a gap in the tree: run a full "
                         "'auditqctl verify')", want);
                return -1;
            }
        }
        uint64_t cur_first = vfy_be64(PQgetvalue(s->res, row, 0)), cur_n = vfy_be32(PQgetvalue(s->res, row, 1));
        uint64_t k = want - cur_first;
        if (strcmp(PQgetvalue(s->res, row, 2), "batch") == 0) {
            if (PQgetisnull(s->res, row, 3) ||
                (uint64_t)PQgetlength(s->res, row, 3) != cur_n * MERKLE_HASH_LEN) {
                snprintf(err, errlen, "the evidence of leaf %" PRIu64 " is missing or altered", want);
                return -1;
            }
            memcpy(out[done], PQgetvalue(s->res, row, 3) + k * MERKLE_HASH_LEN, MERKLE_HASH_LEN);
        } else {
            const char *fv[6];
            int fl[6];
            for (int j = 0; j < 6; j++) {
                fv[j] = PQgetvalue(s->res, row, 4 + j);
                fl[j] = PQgetlength(s->res, row, 4 + j);
            }
            if (PQgetisnull(s->res, row, 4) || vfy_retention_leaf(fv, fl, out[done]) != 0) {
                snprintf(err, errlen, "the retention record of leaf %" PRIu64 " is missing", want);
                return -1;
            }
        }
        s->leaves_read++;
    }
    return 0;
}

/* merkle_node_fn: the subtree [lo, hi) from a stored frontier (above). */
static int leafsrc_node(void *ctx, uint64_t lo, uint64_t hi, merkle_hash out, char *err, size_t errlen)
{
    leafsrc *s = ctx;
    uint64_t span = hi - lo, until = hi + span, size;
    char a[32], b[32], ferr[200];
    const char *pv[2] = { a, b };
    merkle_frontier f;
    unsigned k = (unsigned)__builtin_ctzll(span);
    PGresult *r;
    int idx;

    if (lo % (span * 2) != 0 || hi > s->size)
        return 0;
    if (until > s->size + 1)
        until = s->size + 1;
    snprintf(a, sizeof a, "%" PRIu64, hi);
    snprintf(b, sizeof b, "%" PRIu64, until);
    r = PQexecParams(s->v->pg, "SELECT tree_size, frontier FROM auditq_checkpoint"
                     " WHERE tree_size >= $1::bigint AND tree_size < $2::bigint ORDER BY tree_size LIMIT 1",
                     2, NULL, pv, NULL, NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        ctl_first_line(PQresultErrorMessage(r), err, errlen);
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    size = vfy_be64(PQgetvalue(r, 0, 0));
    if (merkle_frontier_decode(&f, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1), ferr, sizeof ferr) != 0 ||
        f.size != size) {
        PQclear(r);
        return 0;   /* unusable: read the leaves instead */
    }
    PQclear(r);
    /* Largest subtree first: one hash per set bit of size above bit k. */
    idx = __builtin_popcountll(size >> (k + 1));
    if (((size >> k) & 1) == 0 || idx >= (int)f.n)
        return 0;
    memcpy(out, f.h[idx], MERKLE_HASH_LEN);
    s->nodes_read++;
    return 1;
}

int verify_event(verify *v, const char *id, const char *outfile)
{
    char occ[64];
    const char *pv[2] = { id, occ };
    PGresult *r = NULL, *ck = NULL;
    int rc = CTL_FAILED;
    unsigned char entry[1 << 16], *ebuf = entry;
    size_t elen;
    const char *vals[ENTRY_EVENT_NFIELDS];
    size_t lens[ENTRY_EVENT_NFIELDS];
    merkle_hash leaf, path[MERKLE_MAX_PROOF];
    size_t plen = 0;
    uint64_t leaf_index, size;
    char err[600];
    ckpt c;
    const ckpt_key *k = NULL;
    leafsrc ls = { .v = v };
    merkle_source src = { .leaves = leafsrc_leaves, .nodes = leafsrc_node, .ctx = &ls };
    FILE *out = stdout;

    /* The row's occurred_at (the primary key's index) narrows the batches
     * to those whose time range holds it (the GiST index); with no row
     * (deleted or archived) every batch is searched, to say so. */
    r = PQexecParams(v->pg, "SELECT min(occurred_at)::text FROM audit_events WHERE event_id = $1::uuid",
                     1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        ctl_first_line(PQresultErrorMessage(r), err, sizeof err);
        fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
        rc = strstr(err, "invalid input syntax") ? CTL_USAGE : CTL_FAILED;
        goto out;
    }
    snprintf(occ, sizeof occ, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    r = PQexecParams(v->pg, occ[0] != '\0'
        ? "SELECT a.first_leaf + u.pos - 1, substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
          "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS
          "  FROM auditq_evidence_batch b"
          " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
          "  LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
          "  LEFT JOIN audit_events e ON e.event_id = u.event_id AND e.occurred_at = u.occurred_at"
          " WHERE tstzrange(b.min_occurred_at, b.max_occurred_at, '[]') @> $2::timestamptz"
          "   AND b.event_ids @> ARRAY[$1::uuid] AND u.event_id = $1::uuid"
        : "SELECT a.first_leaf + u.pos - 1, substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
          "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS
          "  FROM auditq_evidence_batch b"
          " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
          "  LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
          "  LEFT JOIN audit_events e ON e.event_id = u.event_id AND e.occurred_at = u.occurred_at"
          " WHERE b.event_ids @> ARRAY[$1::uuid] AND u.event_id = $1::uuid",
        occ[0] != '\0' ? 2 : 1, NULL, pv, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        ctl_first_line(PQresultErrorMessage(r), err, sizeof err);
        fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
        rc = strstr(err, "invalid input syntax") ? CTL_USAGE : CTL_FAILED;
        goto out;
    }
    if (PQntuples(r) == 0) {
        fprintf(stderr, "%s --event: no evidence for event %s: it was never stored, or was stored before "
                "the evidence existed and not yet backfilled\n", VERIFY_PROG, id);
        goto out;
    }
    if (PQgetisnull(r, 0, 0)) {
        fprintf(stderr, "%s --event: event %s is not sealed yet (pending); try again after "
                "checkpoint_interval_ms\n", VERIFY_PROG, id);
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 2), "t") != 0) {
        fprintf(stderr, "%s --event: event %s has sealed evidence but no row: deleted (or archived by "
                "retention)\n", VERIFY_PROG, id);
        goto out;
    }
    leaf_index = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    for (int i = 0; i < ENTRY_EVENT_NFIELDS; i++) {
        vals[i] = PQgetisnull(r, 0, 3 + i) ? NULL : PQgetvalue(r, 0, 3 + i);
        lens[i] = (size_t)PQgetlength(r, 0, 3 + i);
    }
    elen = entry_event_encode(vals, lens, NULL, 0);
    if (elen > sizeof entry) {
        ebuf = malloc(elen);
        if (ebuf == NULL)
            goto out;
    }
    entry_event_encode(vals, lens, ebuf, elen);
    merkle_leaf_hash(ebuf, elen, leaf);
    {
        /* bytea text output: \x + hex */
        const char *t = PQgetvalue(r, 0, 1);
        unsigned char sealed[32];
        size_t bl = 0;
        if (strncmp(t, "\\x", 2) != 0 || sodium_hex2bin(sealed, sizeof sealed, t + 2, strlen(t + 2), NULL,
                                                       &bl, NULL) != 0 || bl != 32 ||
            memcmp(sealed, leaf, 32) != 0) {
            fprintf(stderr, "%s --event: modified row: event_id %s does not hash to its sealed leaf %" PRIu64
                    "; no proof written\n", VERIFY_PROG, id, leaf_index);
            goto out;
        }
    }
    ck = PQexec(v->pg, "SELECT tree_size, note FROM auditq_checkpoint ORDER BY tree_size DESC LIMIT 1");
    if (PQresultStatus(ck) != PGRES_TUPLES_OK || PQntuples(ck) == 0) {
        fprintf(stderr, "%s --event: no checkpoint in PostgreSQL\n", VERIFY_PROG);
        goto out;
    }
    {
        int orc = ckpt_open(PQgetvalue(ck, 0, 1), (size_t)PQgetlength(ck, 0, 1), v->keys, v->nkeys,
                            v->cfg->namespace_, &c, err, sizeof err);
        if (orc != CKPT_OK) {
            fprintf(stderr, "%s --event: the newest checkpoint does not verify: %s: %s\n", VERIFY_PROG,
                    ckpt_strerror(orc), err);
            goto out;
        }
        for (size_t i = 0; i < v->nkeys; i++)
            if (strcmp(v->keys[i].name, c.key_name) == 0 && v->keys[i].hash == c.key_hash)
                k = &v->keys[i];
        if (k == NULL) {
            fprintf(stderr, "%s --event: the key that verified the checkpoint is not among --key\n",
                    VERIFY_PROG);
            goto out;
        }
    }
    size = c.size;
    ls.size = size;
    if (merkle_inclusion_proof(&src, leaf_index, size, path, &plen, err, sizeof err) != 0) {
        fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
        goto out;
    }
    if (merkle_verify_inclusion(leaf_index, size, leaf, path, plen, c.root, err, sizeof err) != 0) {
        /* A stored frontier that is not what was signed: the leaves alone. */
        src.nodes = NULL;
        if (merkle_inclusion_proof(&src, leaf_index, size, path, &plen, err, sizeof err) != 0) {
            fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
            goto out;
        }
        if (merkle_verify_inclusion(leaf_index, size, leaf, path, plen, c.root, err, sizeof err) != 0) {
            fprintf(stderr, "%s --event: the evidence does not lead to the signed root: %s; run a full "
                    "'auditqctl verify'\n", VERIFY_PROG, err);
            goto out;
        }
    }
    if (outfile != NULL) {
        out = fopen(outfile, "w");
        if (out == NULL) {
            fprintf(stderr, "%s --event: cannot write %s: %s\n", VERIFY_PROG, outfile, strerror(errno));
            rc = CTL_USAGE;
            goto out;
        }
    }
    {
        char canon[40];
        snprintf(canon, sizeof canon, "%.*s", (int)lens[0], vals[0]);
        if (ctl_proof_write_inclusion(out, canon, leaf_index, size, ebuf, elen, path, plen,
                                      PQgetvalue(ck, 0, 1), k) != 0 ||
            (outfile != NULL && fclose(out) != 0)) {
            fprintf(stderr, "%s --event: writing the proof failed: %s\n", VERIFY_PROG, strerror(errno));
            out = stdout;
            goto out;
        }
        out = stdout;
    }
    if (outfile != NULL)
        fprintf(stderr, "%s: inclusion proof of event %s (leaf %" PRIu64 " of %" PRIu64 ") written to %s "
                "(read %" PRIu64 " leaf hashes and %" PRIu64 " subtree hashes)\n", VERIFY_PROG, id, leaf_index,
                size, outfile, ls.leaves_read, ls.nodes_read);
    rc = CTL_OK;
out:
    if (out != stdout)
        fclose(out);
    if (ls.res != NULL)
        PQclear(ls.res);
    if (ebuf != entry)
        free(ebuf);
    PQclear(r);
    PQclear(ck);
    return rc;
}

