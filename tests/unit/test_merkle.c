/* test_merkle.c -- unit tests for common/merkle.c (RFC 9162 tree, frontier,
 * streaming proofs, verification).
 *
 * The expected values are computed here, independently, from the RFC's
 * recursive definitions (MTH, PATH, PROOF/SUBPROOF) with libsodium's
 * SHA-256 -- merkle.c uses OpenSSL's -- for every tree size 0..70, every
 * leaf index and every (old, new) pair; plus the Certificate Transparency
 * test vectors (transparency-dev/merkle testonly/constants.go: the leaf
 * inputs and the roots of the trees of sizes 0..8 and their compact
 * ranges), which pin the hashing to what every CT implementation computes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "merkle.h"

#define NMAX 70

/* ---------------------------------------------------------- reference */

static void ref_sha(const unsigned char *p, size_t n, merkle_hash out)
{
    crypto_hash_sha256(out, p, n);
}

static void ref_leaf(const unsigned char *d, size_t n, merkle_hash out)
{
    unsigned char buf[256];
    buf[0] = 0x00;
    memcpy(buf + 1, d, n);
    ref_sha(buf, n + 1, out);
}

static void ref_node(const merkle_hash l, const merkle_hash r, merkle_hash out)
{
    unsigned char buf[65];
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    ref_sha(buf, 65, out);
}

static uint64_t ref_k(uint64_t n)
{
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

/* Leaf hashes of the test tree: leaf i is the 2-byte entry (i, i*7). */
static merkle_hash leaves[8192];

static void make_leaves(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char e[3] = { (unsigned char)i, (unsigned char)(i >> 8), (unsigned char)(i * 7) };
        ref_leaf(e, sizeof e, leaves[i]);
    }
}

/* MTH(D[lo:hi]) by the RFC's recursion. */
static void ref_mth(uint64_t lo, uint64_t hi, merkle_hash out)
{
    uint64_t n = hi - lo, k;
    merkle_hash l, r;

    if (n == 0) {
        ref_sha((const unsigned char *)"", 0, out);
        return;
    }
    if (n == 1) {
        memcpy(out, leaves[lo], 32);
        return;
    }
    k = ref_k(n);
    ref_mth(lo, lo + k, l);
    ref_mth(lo + k, hi, r);
    ref_node(l, r, out);
}

/* PATH(m, D[lo:hi]) appended to p (RFC 9162 2.1.3.1). */
static void ref_path(uint64_t m, uint64_t lo, uint64_t hi, merkle_hash *p, size_t *np)
{
    uint64_t n = hi - lo, k;

    if (n <= 1)
        return;
    k = ref_k(n);
    if (m < k) {
        ref_path(m, lo, lo + k, p, np);
        ref_mth(lo + k, hi, p[(*np)++]);
    } else {
        ref_path(m - k, lo + k, hi, p, np);
        ref_mth(lo, lo + k, p[(*np)++]);
    }
}

/* SUBPROOF(m, D[lo:hi], b) (RFC 9162 2.1.4.1). */
static void ref_subproof(uint64_t m, uint64_t lo, uint64_t hi, int b, merkle_hash *p, size_t *np)
{
    uint64_t n = hi - lo, k;

    if (m == n) {
        if (!b)
            ref_mth(lo, hi, p[(*np)++]);
        return;
    }
    k = ref_k(n);
    if (m <= k) {
        ref_subproof(m, lo, lo + k, b, p, np);
        ref_mth(lo + k, hi, p[(*np)++]);
    } else {
        ref_subproof(m - k, lo + k, hi, 0, p, np);
        ref_mth(lo, lo + k, p[(*np)++]);
    }
}

/* ---------------------------------------------------------- leaf source */

struct src_state {
    uint64_t next;       /* lowest leaf that may still be asked for */
    uint64_t reads;      /* leaves handed out */
    uint64_t calls;
    int fail_at;         /* fail the call that would read this leaf (-1: never) */
    int node_known;      /* node source: answer from the reference */
    uint64_t node_calls, node_hits;
};

static int src_leaves(void *ctx, uint64_t first, size_t n, merkle_hash *out, char *err,
                      size_t errlen)
{
    struct src_state *s = ctx;

    /* The contract: increasing, never overlapping, 1..MERKLE_CHUNK. */
    assert_true(n >= 1 && n <= MERKLE_CHUNK);
    assert_true(first >= s->next);
    if (s->fail_at >= 0 && (uint64_t)s->fail_at >= first && (uint64_t)s->fail_at < first + n) {
        snprintf(err, errlen, "cursor lost at leaf %d", s->fail_at);
        return -1;
    }
    memcpy(out, leaves[first], n * sizeof *out);
    s->next = first + n;
    s->reads += n;
    s->calls++;
    return 0;
}

static int src_nodes(void *ctx, uint64_t lo, uint64_t hi, merkle_hash out, char *err,
                     size_t errlen)
{
    struct src_state *s = ctx;
    uint64_t span = hi - lo;

    (void)err;
    (void)errlen;
    assert_true(span >= 2 && (span & (span - 1)) == 0 && lo % span == 0);
    assert_true(lo >= s->next);
    s->node_calls++;
    if (!s->node_known)
        return 0;
    ref_mth(lo, hi, out);
    s->next = hi;
    s->node_hits++;
    return 1;
}

static merkle_source make_src(struct src_state *s, int with_nodes)
{
    merkle_source src = { src_leaves, with_nodes ? src_nodes : NULL, s };
    memset(s, 0, sizeof *s);
    s->fail_at = -1;
    return src;
}

/* ---------------------------------------------------------- CT vectors */

static void unhex(const char *h, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
}

static void test_ct_vectors(void **state)
{
    static const char *inputs[8] = { "", "00", "10", "2021", "3031", "40414243",
                                     "5051525354555657", "606162636465666768696a6b6c6d6e6f" };
    static const char *roots[9] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    };
    /* Compact range of the tree of 7 leaves: nh[2][0], nh[1][2], nh[0][6]. */
    static const char *compact7[3] = {
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    };
    merkle_frontier f;
    merkle_hash root, want;

    (void)state;
    merkle_frontier_init(&f);
    merkle_frontier_root(&f, root);
    unhex(roots[0], want, 32);
    assert_memory_equal(root, want, 32);
    for (int i = 0; i < 8; i++) {
        unsigned char in[16];
        merkle_hash leaf;
        size_t n = strlen(inputs[i]) / 2;

        unhex(inputs[i], in, n);
        merkle_leaf_hash(in, n, leaf);
        assert_int_equal(merkle_frontier_append(&f, leaf), 0);
        merkle_frontier_root(&f, root);
        unhex(roots[i + 1], want, 32);
        assert_memory_equal(root, want, 32);
        if (i == 6) {
            assert_int_equal(f.n, 3);
            for (int j = 0; j < 3; j++) {
                unhex(compact7[j], want, 32);
                assert_memory_equal(f.h[j], want, 32);
            }
        }
    }
}

/* ---------------------------------------------------------- tests */

static void test_hashing(void **state)
{
    merkle_hash a, b, r1, r2;

    (void)state;
    /* The prefixes: a leaf and a node over the same bytes differ. */
    memset(a, 0xAA, 32);
    memset(b, 0xBB, 32);
    merkle_node_hash(a, b, r1);
    ref_node(a, b, r2);
    assert_memory_equal(r1, r2, 32);
    /* out may alias an input. */
    memcpy(r1, a, 32);
    merkle_node_hash(r1, b, r1);
    assert_memory_equal(r1, r2, 32);
    merkle_leaf_hash("abc", 3, r1);
    ref_leaf((const unsigned char *)"abc", 3, r2);
    assert_memory_equal(r1, r2, 32);
}

static void test_frontier_roots(void **state)
{
    (void)state;
    make_leaves(NMAX);
    for (uint64_t n = 0; n <= NMAX; n++) {
        merkle_frontier f, g;
        merkle_hash want, got;

        merkle_frontier_init(&f);
        for (uint64_t i = 0; i < n; i++)
            assert_int_equal(merkle_frontier_append(&f, leaves[i]), 0);
        ref_mth(0, n, want);
        merkle_frontier_root(&f, got);
        assert_memory_equal(got, want, 32);
        assert_int_equal(f.size, n);
        assert_int_equal(f.n, __builtin_popcountll(n));

        /* append_many, in two uneven pieces, lands on the same state. */
        merkle_frontier_init(&g);
        assert_int_equal(merkle_frontier_append_many(&g, leaves, n / 3), 0);
        assert_int_equal(merkle_frontier_append_many(&g, leaves + n / 3, n - n / 3), 0);
        assert_int_equal(g.size, f.size);
        assert_int_equal(g.n, f.n);
        assert_memory_equal(g.h, f.h, f.n * 32);
    }
}

static void test_frontier_subtree(void **state)
{
    merkle_frontier f, g;
    merkle_hash sub, a, b;

    (void)state;
    make_leaves(NMAX);
    /* 16 leaves, then leaves 16..31 as one subtree of height 4, then 5. */
    merkle_frontier_init(&f);
    assert_int_equal(merkle_frontier_append_many(&f, leaves, 16), 0);
    ref_mth(16, 32, sub);
    assert_int_equal(merkle_frontier_append_subtree(&f, sub, 4), 0);
    assert_int_equal(merkle_frontier_append_many(&f, leaves + 32, 5), 0);
    merkle_frontier_init(&g);
    assert_int_equal(merkle_frontier_append_many(&g, leaves, 37), 0);
    merkle_frontier_root(&f, a);
    merkle_frontier_root(&g, b);
    assert_memory_equal(a, b, 32);
    /* Misaligned: 37 is not a multiple of 4; refused, state unchanged. */
    assert_int_equal(merkle_frontier_append_subtree(&f, sub, 2), -1);
    assert_int_equal(f.size, 37);
    assert_int_equal(merkle_frontier_append_subtree(&f, sub, 64), -1);
}

static void test_frontier_overflow(void **state)
{
    merkle_frontier f;
    merkle_hash h = { 0 };

    (void)state;
    merkle_frontier_init(&f);
    f.size = UINT64_MAX;
    f.n = 64;
    assert_int_equal(merkle_frontier_append(&f, h), -1);
    assert_int_equal(merkle_frontier_append_many(&f, &h, 1), -1);
    assert_int_equal(f.size, UINT64_MAX);
}

static void test_frontier_encode(void **state)
{
    unsigned char buf[MERKLE_FRONTIER_MAX_BYTES];
    char err[200];

    (void)state;
    make_leaves(NMAX);
    for (uint64_t n = 0; n <= NMAX; n++) {
        merkle_frontier f, g;
        size_t len;

        merkle_frontier_init(&f);
        merkle_frontier_append_many(&f, leaves, n);
        len = merkle_frontier_encode(&f, buf, sizeof buf);
        assert_int_equal(len, 8 + 32 * __builtin_popcountll(n));
        assert_int_equal(buf[7], (unsigned char)n);
        assert_int_equal(merkle_frontier_decode(&g, buf, len, err, sizeof err), 0);
        assert_int_equal(g.size, n);
        assert_int_equal(g.n, f.n);
        assert_memory_equal(g.h, f.h, f.n * 32);
        /* A decoded frontier goes on growing like the original. */
        merkle_frontier_append(&f, leaves[0]);
        merkle_frontier_append(&g, leaves[0]);
        assert_memory_equal(g.h, f.h, f.n * 32);
        /* Too small a buffer: nothing written. */
        if (n > 0)
            assert_int_equal(merkle_frontier_encode(&f, buf, 8), 0);
    }
    {
        merkle_frontier f;

        merkle_frontier_init(&f);
        merkle_frontier_append_many(&f, leaves, 7);
        assert_int_equal(merkle_frontier_encode(&f, buf, sizeof buf), 8 + 96);
        assert_int_equal(merkle_frontier_decode(&f, buf, 8 + 64, err, sizeof err), -1);
        assert_string_equal(err, "frontier of tree size 7 must be 104 bytes (3 subtree hashes), not 72");
        assert_int_equal(merkle_frontier_decode(&f, buf, 5, err, sizeof err), -1);
        assert_string_equal(err, "frontier is 5 bytes; it needs at least 8 (the tree size)");
        assert_int_equal(f.size, 7);
    }
}

static void test_range_root(void **state)
{
    struct src_state s;
    merkle_source src = make_src(&s, 0);
    char err[200];

    (void)state;
    make_leaves(NMAX);
    for (uint64_t lo = 0; lo <= NMAX; lo += 7) {
        for (uint64_t hi = lo; hi <= NMAX; hi++) {
            merkle_hash want, got;

            src = make_src(&s, 0);
            assert_int_equal(merkle_range_root(&src, lo, hi, got, err, sizeof err), 0);
            ref_mth(lo, hi, want);
            assert_memory_equal(got, want, 32);
            assert_int_equal(s.reads, hi - lo);
        }
    }
}

static void test_inclusion_all(void **state)
{
    char err[300];

    (void)state;
    make_leaves(NMAX);
    for (uint64_t n = 1; n <= NMAX; n++) {
        merkle_hash root;

        ref_mth(0, n, root);
        for (uint64_t m = 0; m < n; m++) {
            merkle_hash want[MERKLE_MAX_PROOF], got[MERKLE_MAX_PROOF], bad;
            size_t nw = 0, ng = 0;
            struct src_state s;
            merkle_source src = make_src(&s, 0);

            ref_path(m, 0, n, want, &nw);
            assert_int_equal(merkle_inclusion_proof(&src, m, n, got, &ng, err, sizeof err), 0);
            assert_int_equal(ng, nw);
            assert_int_equal(merkle_inclusion_len(m, n), nw);
            assert_memory_equal(got, want, nw * 32);
            /* One pass, the proven leaf itself not needed. */
            assert_true(s.reads <= n - 1);

            assert_int_equal(merkle_verify_inclusion(m, n, leaves[m], got, ng, root, err,
                                                     sizeof err), 0);
            /* Another leaf, another index: refused. (Another size may
             * reproduce the root -- leaf 0 of 5 and of 6 combine alike --
             * which is why a checkpoint signs size and root together.) */
            assert_int_equal(merkle_verify_inclusion(m, n, leaves[(m + 1) % NMAX], got, ng, root,
                                                     err, sizeof err), -1);
            if (n > 1)
                assert_int_equal(merkle_verify_inclusion((m + 1) % n, n, leaves[m], got, ng,
                                                         root, err, sizeof err), -1);
            /* Every flipped bit position class: each element altered. */
            for (size_t i = 0; i < ng; i++) {
                memcpy(bad, got[i], 32);
                got[i][i % 32] ^= 0x01;
                assert_int_equal(merkle_verify_inclusion(m, n, leaves[m], got, ng, root, err,
                                                         sizeof err), -1);
                memcpy(got[i], bad, 32);
            }
            /* Truncated and extended paths. */
            if (ng > 0)
                assert_int_equal(merkle_verify_inclusion(m, n, leaves[m], got, ng - 1, root,
                                                         err, sizeof err), -1);
            memcpy(got[ng], root, 32);
            assert_int_equal(merkle_verify_inclusion(m, n, leaves[m], got, ng + 1, root, err,
                                                     sizeof err), -1);
        }
    }
}

static void test_inclusion_errors(void **state)
{
    merkle_hash path[MERKLE_MAX_PROOF], root;
    size_t np = 0;
    char err[300];
    struct src_state s;
    merkle_source src = make_src(&s, 0);

    (void)state;
    make_leaves(NMAX);
    ref_mth(0, 10, root);
    assert_int_equal(merkle_inclusion_proof(&src, 10, 10, path, &np, err, sizeof err), -1);
    assert_string_equal(err, "leaf index 10 is not below the tree size 10");
    assert_int_equal(merkle_inclusion_proof(&src, 5, 10, path, &np, err, sizeof err), 0);
    assert_int_equal(merkle_verify_inclusion(5, 10, leaves[5], path, np - 1, root, err,
                                             sizeof err), -1);
    assert_string_equal(err, "the path has 3 hashes; leaf 5 of a tree of size 10 needs 4");
    path[1][0] ^= 0xFF;
    assert_int_equal(merkle_verify_inclusion(5, 10, leaves[5], path, np, root, err, sizeof err),
                     -1);
    assert_true(strncmp(err, "the path leads to root ", 23) == 0);
    assert_non_null(strstr(err, ", not the checkpoint's root "));

    /* The source's error comes through. */
    src = make_src(&s, 0);
    s.fail_at = 3;
    assert_int_equal(merkle_inclusion_proof(&src, 5, 10, path, &np, err, sizeof err), -1);
    assert_string_equal(err, "cursor lost at leaf 3");
}

static void test_consistency_all(void **state)
{
    char err[300];

    (void)state;
    make_leaves(NMAX);
    for (uint64_t n = 1; n <= NMAX; n++) {
        merkle_hash nroot;

        ref_mth(0, n, nroot);
        for (uint64_t m = 1; m <= n; m++) {
            merkle_hash want[MERKLE_MAX_PROOF], got[MERKLE_MAX_PROOF], oroot, keep;
            size_t nw = 0, ng = 0;
            struct src_state s;
            merkle_source src = make_src(&s, 0);

            ref_mth(0, m, oroot);
            ref_subproof(m, 0, n, 1, want, &nw);
            assert_int_equal(merkle_consistency_proof(&src, m, n, got, &ng, err, sizeof err), 0);
            assert_int_equal(ng, nw);
            assert_int_equal(merkle_consistency_len(m, n), nw);
            assert_memory_equal(got, want, nw * 32);
            assert_true(s.reads <= n);

            assert_int_equal(merkle_verify_consistency(m, n, oroot, nroot, got, ng, err,
                                                       sizeof err), 0);
            if (m < n) {
                /* Swapped roots, a wrong old size, altered elements. */
                assert_int_equal(merkle_verify_consistency(m, n, nroot, oroot, got, ng, err,
                                                           sizeof err), -1);
                for (size_t i = 0; i < ng; i++) {
                    memcpy(keep, got[i], 32);
                    got[i][31 - i % 32] ^= 0x80;
                    assert_int_equal(merkle_verify_consistency(m, n, oroot, nroot, got, ng, err,
                                                               sizeof err), -1);
                    memcpy(got[i], keep, 32);
                }
                if (ng > 0)
                    assert_int_equal(merkle_verify_consistency(m, n, oroot, nroot, got, ng - 1,
                                                               err, sizeof err), -1);
                /* A rewritten history: leaf 0 changed in the new tree. */
                {
                    merkle_hash forged;
                    memcpy(keep, leaves[0], 32);
                    leaves[0][0] ^= 1;
                    ref_mth(0, n, forged);
                    memcpy(leaves[0], keep, 32);
                    assert_int_equal(merkle_verify_consistency(m, n, oroot, forged, got, ng, err,
                                                               sizeof err), -1);
                }
            }
        }
    }
}

static void test_consistency_errors(void **state)
{
    merkle_hash path[MERKLE_MAX_PROOF], a, b;
    size_t np = 0;
    char err[300];
    struct src_state s;
    merkle_source src = make_src(&s, 0);

    (void)state;
    make_leaves(NMAX);
    ref_mth(0, 3, a);
    ref_mth(0, 7, b);
    assert_int_equal(merkle_consistency_proof(&src, 0, 7, path, &np, err, sizeof err), -1);
    assert_string_equal(err, "a consistency proof needs 0 < old size <= new size (old 0, new 7)");
    assert_int_equal(merkle_consistency_proof(&src, 8, 7, path, &np, err, sizeof err), -1);
    assert_int_equal(merkle_verify_consistency(8, 7, a, b, path, 0, err, sizeof err), -1);
    assert_string_equal(err, "the old tree size 8 is larger than the new tree size 7");
    /* Empty tree: consistent with anything, with an empty path. */
    assert_int_equal(merkle_verify_consistency(0, 7, a, b, path, 0, err, sizeof err), 0);
    /* Same size, different roots: a fork. */
    assert_int_equal(merkle_verify_consistency(7, 7, a, b, path, 0, err, sizeof err), -1);
    assert_true(strncmp(err, "two trees of size 7 have different roots: ", 42) == 0);
    src = make_src(&s, 0);
    assert_int_equal(merkle_consistency_proof(&src, 3, 7, path, &np, err, sizeof err), 0);
    assert_int_equal(np, 4);
    assert_int_equal(merkle_verify_consistency(3, 7, a, b, path, 3, err, sizeof err), -1);
    assert_string_equal(err, "the path has 3 hashes; trees of sizes 3 and 7 need 4");
    path[0][5] ^= 4;
    assert_int_equal(merkle_verify_consistency(3, 7, a, b, path, np, err, sizeof err), -1);
    assert_true(strncmp(err, "the path leads to old root ", 27) == 0);
}

/* Large tree: the node source shortcut gives the same proofs and spares
 * reads; a source that knows nothing is asked at most once per 512 leaves. */
static void test_node_source(void **state)
{
    const uint64_t n = 5000;
    char err[300];

    (void)state;
    make_leaves(n);
    for (uint64_t m = 0; m < n; m += 611) {
        merkle_hash want[MERKLE_MAX_PROOF], got[MERKLE_MAX_PROOF], root;
        size_t nw = 0, ng = 0;
        struct src_state s;
        merkle_source src;

        ref_path(m, 0, n, want, &nw);
        src = make_src(&s, 1);
        s.node_known = 1;
        assert_int_equal(merkle_inclusion_proof(&src, m, n, got, &ng, err, sizeof err), 0);
        assert_int_equal(ng, nw);
        assert_memory_equal(got, want, nw * 32);
        assert_true(s.node_hits > 0);
        assert_true(s.reads < n / 2);

        src = make_src(&s, 1);
        s.node_known = 0;
        assert_int_equal(merkle_inclusion_proof(&src, m, n, got, &ng, err, sizeof err), 0);
        assert_memory_equal(got, want, nw * 32);
        assert_true(s.node_calls <= n / 512 + 1);
        ref_mth(0, n, root);
        assert_int_equal(merkle_verify_inclusion(m, n, leaves[m], got, ng, root, err,
                                                 sizeof err), 0);
    }
    for (uint64_t m = 1; m <= n; m += 1237) {
        merkle_hash want[MERKLE_MAX_PROOF], got[MERKLE_MAX_PROOF];
        size_t nw = 0, ng = 0;
        struct src_state s;
        merkle_source src = make_src(&s, 1);

        s.node_known = 1;
        ref_subproof(m, 0, n, 1, want, &nw);
        assert_int_equal(merkle_consistency_proof(&src, m, n, got, &ng, err, sizeof err), 0);
        assert_int_equal(ng, nw);
        assert_memory_equal(got, want, nw * 32);
    }
    /* merkle_range_root over an unaligned range uses the shortcut only
     * where the range's own subtrees are aligned, and stays right. */
    {
        merkle_hash want, got;
        struct src_state s;
        merkle_source src = make_src(&s, 1);

        s.node_known = 1;
        ref_mth(3, 4099, want);
        assert_int_equal(merkle_range_root(&src, 3, 4099, got, err, sizeof err), 0);
        assert_memory_equal(got, want, 32);
        src = make_src(&s, 1);
        s.node_known = 1;
        ref_mth(1024, 4500, want);
        assert_int_equal(merkle_range_root(&src, 1024, 4500, got, err, sizeof err), 0);
        assert_memory_equal(got, want, 32);
        assert_true(s.node_hits > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_vectors),
        cmocka_unit_test(test_hashing),
        cmocka_unit_test(test_frontier_roots),
        cmocka_unit_test(test_frontier_subtree),
        cmocka_unit_test(test_frontier_overflow),
        cmocka_unit_test(test_frontier_encode),
        cmocka_unit_test(test_range_root),
        cmocka_unit_test(test_inclusion_all),
        cmocka_unit_test(test_inclusion_errors),
        cmocka_unit_test(test_consistency_all),
        cmocka_unit_test(test_consistency_errors),
        cmocka_unit_test(test_node_source),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
