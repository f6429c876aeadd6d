/* checkpoint.h -- signed checkpoints of the Merkle tree and their keys, in
 * the C2SP formats (signed-note, tlog-checkpoint) with Ed25519 (libsodium).
 * docs/INTEGRITY.md ("Checkpoints", "Keys") is the reference.
 *
 * A checkpoint note:
 *
 *   <origin>\n                       e.g. "auditq"
 *   <tree size, decimal>\n
 *   <root hash, base64 std padded>\n
 *   events <n>\n                     extension lines (optional, ours)
 *   time <unix seconds>\n
 *   \n
 *   — <key name> <base64(key hash[4] || Ed25519 signature[64])>\n
 *
 * The signature covers the body (every byte up to and including the
 * newline before the blank line). Key hash = the first 4 bytes (big
 * endian) of SHA-256(key name || 0x0A || 0x01 || 32-byte public key).
 *
 * Key texts (one line each, in files):
 *   verifier (PATH.pub):  <name>+<8 hex key hash>+<base64(0x01 || public key)>
 *   signer   (PATH):      PRIVATE+KEY+<name>+<8 hex key hash>+<base64(0x01 || seed)>
 *
 * Functions return 0 (CKPT_OK) or a negative CKPT_* code with the reason,
 * naming the cause and the fix, in err (errlen bytes, always terminated).
 * Nothing here prints or aborts. ckpt_crypto_init() must have succeeded
 * once before any other function (it is idempotent and thread-safe).
 */
#ifndef AQ_CHECKPOINT_H
#define AQ_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>

#include "merkle.h"

enum {
    CKPT_OK = 0,
    CKPT_ERR = -1,            /* I/O, bad argument, crypto library failure */
    CKPT_MALFORMED = -2,      /* note or key text is not well-formed; err names the line */
    CKPT_UNKNOWN_KEY = -3,    /* no signature by any of the given keys' names */
    CKPT_KEY_MISMATCH = -4,   /* a signature by a given key's name but another key hash:
                                 a different (e.g. rotated) key of the same name */
    CKPT_BAD_SIGNATURE = -5,  /* the key matches, the signature does not verify */
    CKPT_ORIGIN_MISMATCH = -6 /* verified, but for another origin than expected */
};

#define CKPT_NAME_MAX 128            /* key name and origin, bytes */
#define CKPT_NOTE_MAX 4096           /* a note we parse, bytes at most */
#define CKPT_MAX_SIGS 16             /* signature lines we look at at most */
#define CKPT_PUBKEY_TEXT_MAX 256     /* a verifier key text with its NUL */

/* Loads libsodium (sodium_init). Returns 0 or CKPT_ERR. */
int ckpt_crypto_init(char *err, size_t errlen);

/* ---- keys ---------------------------------------------------------------- */

/* One Ed25519 key: a public (verifier) key, or a signer key that also holds
 * the secret. A plain value; ckpt_key_wipe zeroes the secret when done. */
typedef struct ckpt_key {
    char name[CKPT_NAME_MAX + 1];
    uint32_t hash;                    /* key hash, as in the texts */
    unsigned char pub[32];
    unsigned char sk[64];             /* libsodium secret key (seed || pub) */
    int has_secret;
} ckpt_key;

/* A key name is valid when it is 1..CKPT_NAME_MAX bytes of printable
 * non-space ASCII or UTF-8 without '+' (C2SP note: no Unicode spaces, no
 * plus). Returns 1 or 0 (with why in err). */
int ckpt_name_valid(const char *name, char *err, size_t errlen);
/* A new random key (libsodium randombytes seed) named name. */
int ckpt_keygen(const char *name, ckpt_key *k, char *err, size_t errlen);
/* The key of a given 32-byte seed (for tests and known-answer vectors). */
int ckpt_key_from_seed(const char *name, const unsigned char seed[32], ckpt_key *k,
                       char *err, size_t errlen);
/* Key hash of (name, public key). */
uint32_t ckpt_key_hash(const char *name, const unsigned char pub[32]);
/* Zeroes k (the secret included). NULL-safe. */
void ckpt_key_wipe(ckpt_key *k);

/* The verifier key text of k, without newline, into out (cap bytes; at
 * most CKPT_PUBKEY_TEXT_MAX needed). Returns its length, 0 if cap is short. */
size_t ckpt_key_format_public(const ckpt_key *k, char *out, size_t cap);
/* Parses a verifier key text (one line; a trailing newline is allowed) into
 * k (no secret). CKPT_MALFORMED when it is not <name>+<hash>+<key>, not an
 * Ed25519 key (type byte 0x01), or the hash does not match name and key. */
int ckpt_key_parse_public(const char *text, size_t len, ckpt_key *k, char *err, size_t errlen);

/* Writes k's signer key to path (mode 0600; O_EXCL: an existing file is
 * refused unless force) and its verifier key to path.pub (0644, replaced),
 * each fsynced, then the directory. Returns 0, CKPT_ERR. */
int ckpt_key_write(const ckpt_key *k, const char *path, int force, char *err, size_t errlen);
/* Loads a signer key file. Refuses (CKPT_ERR) a file that group or others
 * may read or write -- "chmod 600 PATH" is the fix named -- or that is not
 * a regular file; CKPT_MALFORMED for bad text. */
int ckpt_key_load_private(const char *path, ckpt_key *k, char *err, size_t errlen);
/* Loads a verifier key file (PATH.pub). A private key file given by mistake
 * is refused with a message saying to give PATH.pub. */
int ckpt_key_load_public(const char *path, ckpt_key *k, char *err, size_t errlen);

/* ---- checkpoints --------------------------------------------------------- */

typedef struct ckpt {
    char origin[CKPT_NAME_MAX + 1];
    uint64_t size;                    /* tree size */
    merkle_hash root;
    int has_events;
    uint64_t events;                  /* "events <n>": events the tree covers */
    int has_time;
    int64_t time;                     /* "time <unix seconds>": when signed */
    char key_name[CKPT_NAME_MAX + 1]; /* after ckpt_open: the key that verified */
    uint32_t key_hash;
} ckpt;

/* Formats c's body and signs it with k (which must hold the secret), into
 * out (cap bytes; CKPT_NOTE_MAX is always enough), NUL-terminated; *len =
 * the note's length. The origin must be a valid name (ckpt_name_valid). */
int ckpt_sign(const ckpt *c, const ckpt_key *k, char *out, size_t cap, size_t *len,
              char *err, size_t errlen);

/* Parses a checkpoint note (no signature check): fills c from the body.
 * CKPT_MALFORMED with the line ("line 2: tree size '01x' is not a decimal
 * number", "no blank line before the signatures", ...). */
int ckpt_parse(const char *note, size_t len, ckpt *c, char *err, size_t errlen);

/* Parses note and verifies it: it must carry a valid signature by one of
 * keys[0 .. nkeys) (the first that signed it wins: several keys allow a
 * rotation), and when origin is not NULL the note's origin must equal it.
 * On CKPT_OK c holds the body and the key that verified. Returns, in this
 * order of checks: CKPT_MALFORMED, CKPT_UNKNOWN_KEY, CKPT_KEY_MISMATCH,
 * CKPT_BAD_SIGNATURE, CKPT_ORIGIN_MISMATCH. */
int ckpt_open(const char *note, size_t len, const ckpt_key *keys, size_t nkeys,
              const char *origin, ckpt *c, char *err, size_t errlen);

/* Base64 as every auditq text uses it (standard alphabet, padded): decodes
 * s[0..len) when it is the canonical encoding of exactly want bytes (at
 * most 128) into out; returns 0, else -1. Encoding: out gets the text and
 * its NUL (cap >= 4 * ceil(n / 3) + 1); returns the text's length. */
int ckpt_b64_decode(const char *s, size_t len, unsigned char *out, size_t want);
size_t ckpt_b64_encode(const unsigned char *p, size_t n, char *out, size_t cap);

/* A short name of a CKPT_* code: "ok", "malformed", "unknown key", ... */
const char *ckpt_strerror(int code);
#endif
