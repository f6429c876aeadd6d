/* sealtool.c -- test and measurement helper for the integrity core
 * (common/merkle.c, entry.c, checkpoint.c; tools/ctl_verify_proof.c).
 *
 *   sealtool gen KEY DIR N     a tree of N synthetic events signed with the
 *                              signing key KEY (from auditqctl keygen):
 *                              writes DIR/ckpt-<size>.checkpoint at sizes
 *                              N/3 and N, inclusion proofs DIR/incl-<i>.proof
 *                              for leaves 0, N/3 - 1, N/2 and N - 1, and the
 *                              consistency proof DIR/cons.proof between the
 *                              two checkpoints -- with the same writer
 *                              `auditqctl verify --event` uses, so the
 *                              offline verifiers (auditqctl verify --proof,
 *                              tools/auditq_verify.py) can be run on them
 *                              without a database (it_47_proofs_offline.sh).
 *   sealtool bench N           throughput of the verifier's hot path on this
 *                              machine: N rows of typical size encoded and
 *                              leaf-hashed, appended to a frontier, then an
 *                              inclusion proof over all N (one pass).
 *
 * Rows are deterministic: row i has event_id 00000000-0000-7000-8000-<i>,
 * fixed timestamps, some NULL columns and non-ASCII text.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "ctl_verify.h"
#include "entry.h"
#include "merkle.h"

typedef struct row {
    char id[37], occ[24], rcv[24], actor[32], entity[32], meta[256];
    const char *vals[ENTRY_EVENT_NFIELDS];
    size_t lens[ENTRY_EVENT_NFIELDS];
} row;

static void make_row(row *r, uint64_t i)
{
    snprintf(r->id, sizeof r->id, "00000000-0000-7000-8000-%012" PRIx64, i);
    snprintf(r->occ, sizeof r->occ, "%" PRId64, (int64_t)1764864000000000 + (int64_t)i * 1000);
    snprintf(r->rcv, sizeof r->rcv, "%" PRId64, (int64_t)1764864000000500 + (int64_t)i * 1000);
    snprintf(r->actor, sizeof r->actor, "user-%" PRIu64, i % 977);
    snprintf(r->entity, sizeof r->entity, "doc-%" PRIu64, i * 7 % 100003);
    snprintf(r->meta, sizeof r->meta,
             "{\"ip\": \"10.0.%u.%u\", \"note\": \"caf\xc3\xa9 \xe2\x9c\x93\", \"seq\": %" PRIu64
             ", \"trace\": \"4bf92f3577b34da6a3ce929d0e0e4736\"}",
             (unsigned)(i >> 8 & 255), (unsigned)(i & 255), i);
    r->vals[0] = r->id;
    r->vals[1] = r->occ;
    r->vals[2] = r->rcv;
    r->vals[3] = i % 10 == 0 ? "high" : "normal";
    r->vals[4] = "tenant-acme";
    r->vals[5] = r->actor;
    r->vals[6] = "user";
    r->vals[7] = "document.update";
    r->vals[8] = "document";
    r->vals[9] = r->entity;
    r->vals[10] = "success";
    r->vals[11] = i % 3 == 0 ? NULL : "203.0.113.7";
    r->vals[12] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)";
    r->vals[13] = "req-7f3a9c2e-5b1d-4e8f-9a0b-1c2d3e4f5a6b";
    r->vals[14] = i % 5 == 0 ? NULL : "sess-91d2";
    r->vals[15] = "{\"title\": [\"old title\", \"new title\"], \"size\": [1024, 2048]}";
    r->vals[16] = r->meta;
    r->vals[17] = NULL;
    for (int k = 0; k < ENTRY_EVENT_NFIELDS; k++)
        r->lens[k] = r->vals[k] ? strlen(r->vals[k]) : 0;
}

/* Leaf source over an in-memory array of leaf hashes. */
static int mem_leaves(void *ctx, uint64_t first, size_t n, merkle_hash *out, char *err,
                      size_t errlen)
{
    (void)err;
    (void)errlen;
    memcpy(out, (merkle_hash *)ctx + first, n * sizeof *out);
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* CPU time of this thread: on a shared, loaded machine the rate per core
 * that wall time hides. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int write_note(const char *dir, uint64_t size, const char *note)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/ckpt-%" PRIu64 ".checkpoint", dir, size);
    f = fopen(path, "w");
    if (f == NULL || fputs(note, f) == EOF || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

static int sign_at(const ckpt_key *k, const merkle_hash *leaves, uint64_t size, char *note)
{
    merkle_frontier f;
    ckpt c;
    size_t len;
    char err[300];

    merkle_frontier_init(&f);
    merkle_frontier_append_many(&f, leaves, size);
    memset(&c, 0, sizeof c);
    snprintf(c.origin, sizeof c.origin, "%s", k->name);
    c.size = size;
    merkle_frontier_root(&f, c.root);
    c.has_events = 1;
    c.events = size;
    c.has_time = 1;
    c.time = 1764864000 + (int64_t)size;
    if (ckpt_sign(&c, k, note, CKPT_NOTE_MAX, &len, err, sizeof err) != CKPT_OK) {
        fprintf(stderr, "sealtool: %s\n", err);
        return -1;
    }
    return 0;
}

static int gen(const char *keyfile, const char *dir, uint64_t n)
{
    char err[600], note_old[CKPT_NOTE_MAX], note_new[CKPT_NOTE_MAX], path[4096];
    merkle_hash *leaves = malloc(n * sizeof *leaves), proof[MERKLE_MAX_PROOF];
    merkle_source src = { mem_leaves, NULL, NULL };
    uint64_t old_size = n / 3, picks[4] = { 0, n / 3 - 1, n / 2, n - 1 };
    size_t plen;
    ckpt_key k;
    row r;

    if (leaves == NULL || n < 6)
        return 2;
    src.ctx = leaves;
    if (ckpt_crypto_init(err, sizeof err) != CKPT_OK ||
        ckpt_key_load_private(keyfile, &k, err, sizeof err) != CKPT_OK) {
        fprintf(stderr, "sealtool: %s\n", err);
        return 1;
    }
    for (uint64_t i = 0; i < n; i++) {
        make_row(&r, i);
        entry_event_leaf_hash(r.vals, r.lens, leaves[i]);
    }
    if (sign_at(&k, leaves, old_size, note_old) != 0 || sign_at(&k, leaves, n, note_new) != 0 ||
        write_note(dir, old_size, note_old) != 0 || write_note(dir, n, note_new) != 0)
        return 1;
    for (int p = 0; p < 4; p++) {
        uint64_t i = picks[p];
        unsigned char *entry;
        size_t elen;
        FILE *f;

        make_row(&r, i);
        elen = entry_event_encode(r.vals, r.lens, NULL, 0);
        entry = malloc(elen);
        entry_event_encode(r.vals, r.lens, entry, elen);
        if (merkle_inclusion_proof(&src, i, n, proof, &plen, err, sizeof err) != 0) {
            fprintf(stderr, "sealtool: %s\n", err);
            return 1;
        }
        snprintf(path, sizeof path, "%s/incl-%" PRIu64 ".proof", dir, i);
        f = fopen(path, "w");
        if (f == NULL || ctl_proof_write_inclusion(f, r.id, i, n, entry, elen, proof, plen,
                                                   note_new, &k) != 0 || fclose(f) != 0) {
            perror(path);
            return 1;
        }
        free(entry);
    }
    if (merkle_consistency_proof(&src, old_size, n, proof, &plen, err, sizeof err) != 0) {
        fprintf(stderr, "sealtool: %s\n", err);
        return 1;
    }
    snprintf(path, sizeof path, "%s/cons.proof", dir);
    {
        FILE *f = fopen(path, "w");
        if (f == NULL || ctl_proof_write_consistency(f, note_old, note_new, proof, plen, &k) != 0 ||
            fclose(f) != 0) {
            perror(path);
            return 1;
        }
    }
    ckpt_key_wipe(&k);
    free(leaves);
    printf("sealtool: tree of %" PRIu64 " events; checkpoints at %" PRIu64 " and %" PRIu64
           "; 4 inclusion proofs, 1 consistency proof in %s\n", n, old_size, n, dir);
    return 0;
}

static int bench(uint64_t n)
{
    row *rows = malloc(n * sizeof *rows);
    merkle_hash *leaves = malloc(n * sizeof *leaves), root, proof[MERKLE_MAX_PROOF];
    merkle_source src = { mem_leaves, NULL, NULL };
    merkle_frontier f;
    double t0, c0, t_leaf, t_app, t_proof, c_leaf, c_app, bytes = 0;
    size_t plen;
    char err[200];

    if (rows == NULL || leaves == NULL) {
        fprintf(stderr, "sealtool bench: out of memory for %" PRIu64 " rows\n", n);
        return 1;
    }
    src.ctx = leaves;
    for (uint64_t i = 0; i < n; i++) {
        make_row(&rows[i], i);
        bytes += (double)entry_event_encode(rows[i].vals, rows[i].lens, NULL, 0);
    }
    t0 = now_s();
    c0 = cpu_s();
    for (uint64_t i = 0; i < n; i++)
        entry_event_leaf_hash(rows[i].vals, rows[i].lens, leaves[i]);
    t_leaf = now_s() - t0;
    c_leaf = cpu_s() - c0;
    t0 = now_s();
    c0 = cpu_s();
    merkle_frontier_init(&f);
    for (uint64_t i = 0; i < n; i += 1000)
        merkle_frontier_append_many(&f, leaves + i, n - i < 1000 ? (size_t)(n - i) : 1000);
    merkle_frontier_root(&f, root);
    t_app = now_s() - t0;
    c_app = cpu_s() - c0;
    t0 = now_s();
    if (merkle_inclusion_proof(&src, n / 2, n, proof, &plen, err, sizeof err) != 0)
        return 1;
    t_proof = now_s() - t0;
    printf("rows %" PRIu64 ", mean entry %.0f bytes (rates: wall clock; per CPU second)\n", n,
           bytes / (double)n);
    printf("leaf hash (entry_event_leaf_hash): %.0f rows/s; %.0f rows/s\n", (double)n / t_leaf,
           (double)n / c_leaf);
    printf("frontier append (batches of 1000): %.0f leaves/s; %.0f leaves/s\n",
           (double)n / t_app, (double)n / c_app);
    printf("leaf + append:                     %.0f rows/s; %.0f rows/s\n",
           (double)n / (t_leaf + t_app), (double)n / (c_leaf + c_app));
    printf("inclusion proof over all %" PRIu64 " leaves: %.3f s (%zu hashes)\n", n, t_proof, plen);
    free(rows);
    free(leaves);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "gen") == 0)
        return gen(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "bench") == 0)
        return bench(strtoull(argv[2], NULL, 10));
    fprintf(stderr, "usage: sealtool gen KEY DIR N | sealtool bench N\n");
    return 2;
}
