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

typedef struct leafsrc {
    verify *v;
    PGresult *res;
    int row, n;
    uint64_t cur_first, cur_n;   /* the item in res[row] */
    int open, eof;
} leafsrc;

/* merkle_leaf_fn over cursor "pl" (tree order). */
static int leafsrc_leaves(void *ctx, uint64_t first, size_t n, merkle_hash *out, char *err, size_t errlen)
{
    leafsrc *s = ctx;
    size_t done = 0;

    while (done < n) {
        uint64_t want = first + done;
        while (s->res == NULL || s->row >= s->n || want >= s->cur_first + s->cur_n) {
            if (s->res != NULL && s->row + 1 < s->n) {
                s->row++;
            } else {
                PQclear(s->res);
                s->res = vfetch(s->v, "pl");
                s->row = 0;
                s->n = s->res ? PQntuples(s->res) : 0;
                if (s->n == 0) {
                    snprintf(err, errlen, "leaf %" PRIu64 " has no evidence", want);
                    return -1;
                }
            }
            s->cur_first = vfy_be64(PQgetvalue(s->res, s->row, 0));
            s->cur_n = vfy_be32(PQgetvalue(s->res, s->row, 1));
            if (s->cur_first > want) {
                snprintf(err, errlen, "leaf %" PRIu64 " has no evidence (a gap in the tree: run a full "
                         "'auditqctl verify')", want);
                return -1;
            }
        }
        const char *kind = PQgetvalue(s->res, s->row, 2);
        uint64_t k = want - s->cur_first;
        if (strcmp(kind, "batch") == 0) {
            if (PQgetisnull(s->res, s->row, 3) ||
                (uint64_t)PQgetlength(s->res, s->row, 3) != s->cur_n * MERKLE_HASH_LEN) {
                snprintf(err, errlen, "the evidence of leaf %" PRIu64 " is missing or altered", want);
                return -1;
            }
            memcpy(out[done], PQgetvalue(s->res, s->row, 3) + k * MERKLE_HASH_LEN, MERKLE_HASH_LEN);
        } else {
            const char *fv[6];
            int fl[6];
            for (int j = 0; j < 6; j++) {
                fv[j] = PQgetvalue(s->res, s->row, 4 + j);
                fl[j] = PQgetlength(s->res, s->row, 4 + j);
            }
            if (PQgetisnull(s->res, s->row, 4) || vfy_retention_leaf(fv, fl, out[done]) != 0) {
                snprintf(err, errlen, "the retention record of leaf %" PRIu64 " is missing", want);
                return -1;
            }
        }
        done++;
    }
    return 0;
}

int verify_event(verify *v, const char *id, const char *outfile)
{
    const char *pv[1] = { id };
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
    merkle_source src = { .leaves = leafsrc_leaves, .ctx = &ls };
    FILE *out = stdout;

    r = PQexecParams(v->pg,
        "SELECT a.first_leaf + u.pos - 1, substring(b.leaves from ((u.pos - 1) * 32 + 1)::int for 32),"
        "       e.event_id IS NOT NULL, " VERIFY_ROW_FIELDS
        "  FROM auditq_evidence_batch b"
        " CROSS JOIN LATERAL unnest(b.event_ids, b.occurred_ats) WITH ORDINALITY AS u(event_id, occurred_at, pos)"
        "  LEFT JOIN auditq_seal_assignment a ON a.item_id = b.batch_id"
        "  LEFT JOIN audit_events e ON e.event_id = u.event_id AND e.occurred_at = u.occurred_at"
        " WHERE b.event_ids @> ARRAY[$1::uuid] AND u.event_id = $1::uuid",
        1, NULL, pv, NULL, NULL, 0);
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
    {
        char hi[32];
        const char *hv[1] = { hi };
        snprintf(hi, sizeof hi, "%" PRIu64, size);
        if (vdeclare(v, "pl",
                "SELECT a.first_leaf, a.n, a.kind, b.leaves, r.record_id::text,"
                "       to_char(r.month_from AT TIME ZONE 'UTC', 'YYYY-MM'), r.table_name, r.action,"
                "       r.row_count::text, encode(r.leaves_hash, 'hex')"
                "  FROM auditq_seal_assignment a"
                "  LEFT JOIN auditq_evidence_batch b ON a.kind = 'batch' AND b.batch_id = a.item_id"
                "  LEFT JOIN auditq_evidence_retention r ON a.kind = 'retention' AND r.record_id = a.item_id"
                " WHERE a.first_leaf < $1::bigint ORDER BY a.first_leaf", 1, hv) != 0)
            goto out;
    }
    if (merkle_inclusion_proof(&src, leaf_index, size, path, &plen, err, sizeof err) != 0) {
        fprintf(stderr, "%s --event: %s\n", VERIFY_PROG, err);
        goto out;
    }
    if (merkle_verify_inclusion(leaf_index, size, leaf, path, plen, c.root, err, sizeof err) != 0) {
        fprintf(stderr, "%s --event: the evidence does not lead to the signed root: %s; run a full "
                "'auditqctl verify'\n", VERIFY_PROG, err);
        goto out;
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
        fprintf(stderr, "%s: inclusion proof of event %s (leaf %" PRIu64 " of %" PRIu64 ") written to %s\n",
                VERIFY_PROG, id, leaf_index, size, outfile);
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

