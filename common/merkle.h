/* merkle.h -- the append-only Merkle tree of RFC 9162 (Certificate
 * Transparency v2) over auditq's entries: hashing, the compact range
 * ("frontier") the sequencer keeps, streaming proof generation and proof
 * verification. docs/INTEGRITY.md ("Hashing") is the format's reference.
 *
 *   leaf hash   SHA-256(0x00 || entry)
 *   node hash   SHA-256(0x01 || left || right)
 *   MTH({})     SHA-256("")
 *   MTH(D[n])   for n > 1: k = the largest power of two < n,
 *               node(MTH(D[0:k]), MTH(D[k:n]))
 *
 * Pure computation: no I/O, never prints; the only allocation is the one
 * chunk buffer (MERKLE_CHUNK hashes, 128 KiB) merkle_range_root and the
 * proof generators hold during a call. Every hash is MERKLE_HASH_LEN raw bytes. Indexes and sizes
 * are uint64_t; a tree has at most 2^64 - 1 leaves.
 *
 * Memory: the frontier is a fixed 2 KiB value; proof generation and
 * merkle_range_root keep O(log n) hashes plus one chunk of
 * MERKLE_CHUNK leaf hashes, whatever the tree size, because the leaves come
 * from a callback (the caller reads them from PostgreSQL with a cursor).
 */
#ifndef AQ_MERKLE_H
#define AQ_MERKLE_H
#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN 32
/* The most subtree hashes a frontier holds: one per set bit of the size. */
#define MERKLE_MAX_HEIGHT 64
/* Bytes of an encoded frontier at most: 8-byte size + 64 hashes. */
#define MERKLE_FRONTIER_MAX_BYTES (8 + MERKLE_MAX_HEIGHT * MERKLE_HASH_LEN)
/* Room a caller gives for an inclusion or consistency proof path: an
 * inclusion path has at most 64 hashes, a consistency proof at most 65
 * (RFC 9162 SUBPROOF recurses at most 64 times, plus one final hash). */
#define MERKLE_MAX_PROOF 128
/* Leaf hashes asked of a merkle_leaf_fn per call at most. */
#define MERKLE_CHUNK 4096

typedef unsigned char merkle_hash[MERKLE_HASH_LEN];

/* ---- hashing ------------------------------------------------------------- */

/* out = SHA-256(0x00 || entry[0..len)). */
void merkle_leaf_hash(const void *entry, size_t len, merkle_hash out);
/* out = SHA-256(0x01 || left || right). out may alias left or right. */
void merkle_node_hash(const merkle_hash left, const merkle_hash right, merkle_hash out);
/* out = SHA-256(""), the root of the empty tree. */
void merkle_empty_root(merkle_hash out);

/* ---- the frontier (compact range [0, size)) ------------------------------ */

/* The state the sequencer stores with each checkpoint: the roots of the
 * perfect subtrees the tree of `size` leaves decomposes into, left to right
 * (largest first): one per set bit of size, from the highest bit down.
 * Appending a leaf merges equal-height subtrees, so the root of the tree
 * and the next state follow from these alone. A plain value: copy it with
 * `=`, no destroy. Fields are read-only outside merkle.c. */
typedef struct merkle_frontier {
    uint64_t size;                           /* leaves appended so far */
    unsigned n;                              /* hashes in h = popcount(size) */
    merkle_hash h[MERKLE_MAX_HEIGHT];        /* h[0] = leftmost (tallest) subtree */
} merkle_frontier;

/* The empty tree. */
void merkle_frontier_init(merkle_frontier *f);
/* Appends one leaf (its leaf hash). Returns 0, or -1 if the tree already
 * has 2^64 - 1 leaves (f unchanged). */
int merkle_frontier_append(merkle_frontier *f, const merkle_hash leaf);
/* Appends n leaf hashes in order: the same result as n appends, without
 * the per-call overhead (the sequencer appends a batch at a time). Returns
 * 0, or -1 (f unchanged) if size + n would overflow. */
int merkle_frontier_append_many(merkle_frontier *f, const merkle_hash *leaves, size_t n);
/* Appends a whole perfect subtree of 2^height leaves given by its root,
 * e.g. an archived range whose leaves are gone but whose subtree hash is
 * kept. The tree must be aligned for it: size must be a multiple of
 * 2^height (else -1, f unchanged; also -1 on overflow or height > 63). */
int merkle_frontier_append_subtree(merkle_frontier *f, const merkle_hash root, unsigned height);
/* The tree's root hash MTH(D[0:size]) (SHA-256("") when size is 0). */
void merkle_frontier_root(const merkle_frontier *f, merkle_hash out);

/* Encoding (for the checkpoint row in PostgreSQL): the size as 8 bytes big
 * endian, then the n hashes in order; 8 + 32 * popcount(size) bytes, at
 * most MERKLE_FRONTIER_MAX_BYTES. Writes into out (cap bytes) and returns
 * the length, or 0 if cap is too small (nothing written). */
size_t merkle_frontier_encode(const merkle_frontier *f, unsigned char *out, size_t cap);
/* Decodes what merkle_frontier_encode wrote. Returns 0, or -1 with the
 * reason in err (too short, length does not match the size's bit count),
 * f then unchanged. */
int merkle_frontier_decode(merkle_frontier *f, const void *p, size_t len, char *err, size_t errlen);

/* ---- leaf sources and streaming computation ------------------------------ */

/* Fills out[0..n) with the leaf hashes of leaves first .. first + n - 1.
 * Called with 1 <= n <= MERKLE_CHUNK. Within one call of a function below,
 * the ranges asked for never overlap and come in increasing order of
 * `first`; they may skip leaves (those a merkle_node_fn supplied as part of
 * a subtree, or that a proof does not need), so a cursor implementation
 * must be able to skip forward. out is owned by the caller of the
 * merkle_* function and only valid during the call. Returns 0, or -1 with
 * the reason in err (errlen bytes): the merkle_* function then returns -1
 * with that reason. */
typedef int (*merkle_leaf_fn)(void *ctx, uint64_t first, size_t n, merkle_hash *out,
                              char *err, size_t errlen);

/* Optional shortcut: if the hash of the perfect subtree over leaves
 * [lo, hi) (hi - lo a power of two >= 2, lo a multiple of it) is known --
 * e.g. from a stored frontier of an older checkpoint, whose hashes are
 * exactly such subtrees -- writes it to out and returns 1; returns 0 when
 * not known (the leaves are then read instead), -1 with the reason in err
 * on error. The hash must be right: a wrong one yields a wrong proof,
 * which verification then refuses. */
typedef int (*merkle_node_fn)(void *ctx, uint64_t lo, uint64_t hi, merkle_hash out,
                              char *err, size_t errlen);

typedef struct merkle_source {
    merkle_leaf_fn leaves;   /* required */
    merkle_node_fn nodes;    /* NULL: every hash is computed from leaves */
    void *ctx;               /* passed to both */
} merkle_source;

/* MTH(D[lo:hi]) of the leaves src gives for [lo, hi), lo <= hi (the empty
 * range gives SHA-256("")). Reads each leaf at most once, in order.
 * Returns 0, or -1 with the reason in err. */
int merkle_range_root(const merkle_source *src, uint64_t lo, uint64_t hi, merkle_hash out,
                      char *err, size_t errlen);

/* ---- proofs (RFC 9162 2.1.3 and 2.1.4) ----------------------------------- */

/* The inclusion proof PATH(index, D[0:size]) for leaf `index` < size, in
 * RFC order (from the leaf's sibling up to the root's child), into
 * path[0 .. *path_len), path holding MERKLE_MAX_PROOF hashes. One pass
 * over the leaves [0, size) except where src->nodes supplies subtrees; the
 * leaf `index` itself is not read. Returns 0, or -1 with the reason in err
 * (index >= size, or the source's error). */
int merkle_inclusion_proof(const merkle_source *src, uint64_t index, uint64_t size,
                           merkle_hash *path, size_t *path_len, char *err, size_t errlen);

/* The consistency proof PROOF(old_size, D[0:new_size]) between the trees of
 * old_size and new_size leaves (0 < old_size <= new_size; old_size ==
 * new_size gives the empty proof) in RFC order, into path[0 .. *path_len),
 * path holding MERKLE_MAX_PROOF hashes. One pass over the leaves, as above.
 * Returns 0, or -1 with the reason in err. */
int merkle_consistency_proof(const merkle_source *src, uint64_t old_size, uint64_t new_size,
                             merkle_hash *path, size_t *path_len, char *err, size_t errlen);

/* Verifies an inclusion proof (RFC 9162 2.1.3.2): that `leaf` (a leaf
 * hash) is leaf `index` of the tree of `size` leaves whose root is `root`.
 * Returns 0 when it is; else -1 with the reason in err, one of:
 *   "leaf index N is not below the tree size M"
 *   "the path has N hashes; leaf I of a tree of size M needs K"
 *   "the path leads to root <b64>, not the checkpoint's root <b64>" */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const merkle_hash leaf,
                            const merkle_hash *path, size_t path_len, const merkle_hash root,
                            char *err, size_t errlen);

/* Verifies a consistency proof (RFC 9162 2.1.4.2): that the tree of
 * old_size leaves with root old_root is a prefix of the tree of new_size
 * leaves with root new_root. old_size == 0 is consistent with anything
 * (empty path required); old_size == new_size needs an empty path and equal
 * roots. Returns 0 when consistent; else -1 with the reason in err (sizes
 * out of order, wrong path length, or which of the two roots the path does
 * not reproduce). */
int merkle_verify_consistency(uint64_t old_size, uint64_t new_size, const merkle_hash old_root,
                              const merkle_hash new_root, const merkle_hash *path,
                              size_t path_len, char *err, size_t errlen);

/* Number of hashes in PATH(index, D[0:size]) / PROOF(old, D[0:new]), for
 * checking a proof's length before verifying it (0 for invalid arguments). */
size_t merkle_inclusion_len(uint64_t index, uint64_t size);
size_t merkle_consistency_len(uint64_t old_size, uint64_t new_size);
#endif
