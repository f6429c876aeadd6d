/* ctl_verify.h -- offline proofs: the JSON proof files `auditqctl verify
 * --event` writes and `auditqctl verify --proof FILE` checks with no
 * database (tools/ctl_verify_proof.c). docs/INTEGRITY.md ("Proof files")
 * is the reference for the formats:
 *
 *   {"format":"auditq-inclusion-proof/1","event_id":"...","leaf_index":N,
 *    "tree_size":N,"entry":"<base64>","leaf_hash":"<base64>",
 *    "path":["<base64>",...],"checkpoint":"<signed note>","key":"<verifier key>"}
 *   {"format":"auditq-consistency-proof/1","old_checkpoint":"<note>",
 *    "new_checkpoint":"<note>","path":["<base64>",...],"key":"<verifier key>"}
 *
 * One writer and one reader of the format live in ctl_verify_proof.c, so
 * `verify --event` (the database side) and `verify --proof` cannot drift.
 */
#ifndef AQ_CTL_VERIFY_H
#define AQ_CTL_VERIFY_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "checkpoint.h"
#include "config.h"
#include "merkle.h"

/* `auditqctl keygen PATH [--name NAME] [--force]` (tools/ctl_keygen.c):
 * the signing key the proofs' checkpoints are signed with. */
int ctl_keygen(const aq_config *cfg, int argc, char **argv);
extern const char ctl_keygen_synopsis[];
extern const char ctl_keygen_help[];

#define CTL_PROOF_INCLUSION_FORMAT "auditq-inclusion-proof/1"
#define CTL_PROOF_CONSISTENCY_FORMAT "auditq-consistency-proof/1"
/* A proof file we read is at most this big. */
#define CTL_PROOF_MAX_BYTES (64u << 20)

/* `auditqctl verify --proof FILE [--key FILE]... [--json]`: checks the
 * inclusion or consistency proof in file (its "format" says which).
 * keyfile: a verifier key file (PATH.pub) the embedded key must equal, or
 * NULL to trust the embedded key (said so in the output). Prints what it
 * checked to stdout (json: one JSON object) and, on failure, exactly which
 * check failed (also on stderr). Returns CTL_OK (0) only when every check
 * passes; CTL_FAILED when the proof does not verify, including a file that
 * is not a well-formed proof; CTL_USAGE when file or a keyfile cannot be
 * read, or a keyfile is not a verifier key. file "-" is stdin. */
int ctl_verify_proof(const char *file, const char *keyfile, int json);
/* The same with several accepted keys (a rotation: old proofs verify with
 * the old key): the embedded key must equal one of keyfiles[0 .. nkeys);
 * nkeys == 0 trusts the embedded key. */
int ctl_verify_proof_keys(const char *file, const char *const *keyfiles, size_t nkeys, int json);

/* Writes an inclusion proof file's JSON (one line and a newline) to out.
 * entry: the canonical entry bytes; path: the RFC 9162 path; note: the
 * signed checkpoint the path leads to (tree_size = its size); key: k's
 * verifier key text is embedded. Returns 0, or -1 if out failed. */
int ctl_proof_write_inclusion(FILE *out, const char *event_id, uint64_t leaf_index,
                              uint64_t tree_size, const unsigned char *entry, size_t entry_len,
                              const merkle_hash *path, size_t path_len, const char *note,
                              const ckpt_key *k);
/* Writes a consistency proof file's JSON between two signed notes. */
int ctl_proof_write_consistency(FILE *out, const char *old_note, const char *new_note,
                                const merkle_hash *path, size_t path_len, const ckpt_key *k);
#endif
