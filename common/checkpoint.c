/* checkpoint.c -- C2SP signed-note checkpoints with Ed25519 (libsodium),
 * and the key files. Contracts in checkpoint.h; the formats in
 * docs/INTEGRITY.md ("Checkpoints", "Key files").
 *
 * Parsing is strict where a lax parser would let two different texts pass
 * as one checkpoint: the size must be canonical decimal, the root
 * canonical padded base64 of exactly 32 bytes, every line printable UTF-8.
 * Extension lines other than "events" and "time" are kept under the
 * signature and otherwise ignored (C2SP lets a log add them).
 */
#include "checkpoint.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "text.h"

#define EM_DASH "\xe2\x80\x94"
#define ALG_ED25519 0x01
#define SIG_BYTES (4 + crypto_sign_BYTES)
#define KEY_FILE_MAX 4096

int ckpt_crypto_init(char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        text_errf(err, errlen, "libsodium failed to initialise (sodium_init)");
        return CKPT_ERR;
    }
    return CKPT_OK;
}

const char *ckpt_strerror(int code)
{
    switch (code) {
    case CKPT_OK: return "ok";
    case CKPT_ERR: return "error";
    case CKPT_MALFORMED: return "malformed";
    case CKPT_UNKNOWN_KEY: return "unknown key";
    case CKPT_KEY_MISMATCH: return "key mismatch";
    case CKPT_BAD_SIGNATURE: return "bad signature";
    case CKPT_ORIGIN_MISMATCH: return "origin mismatch";
    default: return "unknown error";
    }
}

/* ---- names and keys ------------------------------------------------------ */

/* Unicode White_Space characters above ASCII (C2SP: no Unicode spaces). */
static int is_unicode_space(uint32_t cp)
{
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Checks s[0..len) is printable UTF-8: no controls (C0, DEL, C1), no
 * ill-formed sequences; with no_space, also no spaces and no '+'. Returns
 * the offset of the first offending byte, or len when all is well. */
static size_t bad_text_at(const char *s, size_t len, int no_space)
{
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n = text_utf8_next(s + i, len - i, &cp);

        if (n == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
            return i;
        if (no_space && (cp == ' ' || cp == '+' || is_unicode_space(cp)))
            return i;
        i += n;
    }
    return len;
}

static int name_valid_n(const char *name, size_t len, const char *what, char *err, size_t errlen)
{
    size_t bad;

    if (len == 0) {
        text_errf(err, errlen, "%s is empty", what);
        return 0;
    }
    if (len > CKPT_NAME_MAX) {
        text_errf(err, errlen, "%s is %zu bytes; at most %d are allowed", what, len, CKPT_NAME_MAX);
        return 0;
    }
    bad = bad_text_at(name, len, 1);
    if (bad < len) {
        char shown[64];
        uint32_t cp;
        size_t n = text_utf8_next(name + bad, len - bad, &cp);

        /* Just the offending character (or byte). */
        text_escape(shown, sizeof shown, name + bad, n ? n : 1, 4);
        text_errf(err, errlen,
                "%s has '%s' at byte %zu; it must be printable UTF-8 without spaces or '+'",
                what, shown, bad);
        return 0;
    }
    return 1;
}

int ckpt_name_valid(const char *name, char *err, size_t errlen)
{
    return name_valid_n(name, strlen(name), "the key name", err, errlen);
}

uint32_t ckpt_key_hash(const char *name, const unsigned char pub[32])
{
    crypto_hash_sha256_state st;
    unsigned char sep[2] = { '\n', ALG_ED25519 }, h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)name, strlen(name));
    crypto_hash_sha256_update(&st, sep, sizeof sep);
    crypto_hash_sha256_update(&st, pub, 32);
    crypto_hash_sha256_final(&st, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

void ckpt_key_wipe(ckpt_key *k)
{
    if (k != NULL)
        sodium_memzero(k, sizeof *k);
}

int ckpt_key_from_seed(const char *name, const unsigned char seed[32], ckpt_key *k,
                       char *err, size_t errlen)
{
    if (!ckpt_name_valid(name, err, errlen))
        return CKPT_ERR;
    memset(k, 0, sizeof *k);
    if (crypto_sign_seed_keypair(k->pub, k->sk, seed) != 0) {
        text_errf(err, errlen, "libsodium could not derive an Ed25519 key pair");
        ckpt_key_wipe(k);
        return CKPT_ERR;
    }
    snprintf(k->name, sizeof k->name, "%s", name);
    k->hash = ckpt_key_hash(name, k->pub);
    k->has_secret = 1;
    return CKPT_OK;
}

int ckpt_keygen(const char *name, ckpt_key *k, char *err, size_t errlen)
{
    unsigned char seed[32];
    int rc;

    randombytes_buf(seed, sizeof seed);
    rc = ckpt_key_from_seed(name, seed, k, err, errlen);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

/* base64 (standard, padded) of 0x01 || key[0..32). */
static void key_b64(const unsigned char key[32], char out[64])
{
    unsigned char buf[33];

    buf[0] = ALG_ED25519;
    memcpy(buf + 1, key, 32);
    sodium_bin2base64(out, 64, buf, sizeof buf, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(buf, sizeof buf);
}

size_t ckpt_key_format_public(const ckpt_key *k, char *out, size_t cap)
{
    char b[64];
    int n;

    key_b64(k->pub, b);
    n = snprintf(out, cap, "%s+%08x+%s", k->name, (unsigned)k->hash, b);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

int ckpt_b64_decode(const char *s, size_t len, unsigned char *out, size_t want)
{
    unsigned char buf[128];
    char again[192];
    size_t got = 0;
    const char *end = NULL;

    if (want > sizeof buf || len == 0 || len >= sizeof again)
        return -1;
    if (sodium_base642bin(buf, sizeof buf, s, len, NULL, &got, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + len || got != want)
        return -1;
    /* Non-canonical encodings (set padding bits) decode too; refuse them
     * so one key or hash has one text. */
    sodium_bin2base64(again, sizeof again, buf, got, sodium_base64_VARIANT_ORIGINAL);
    if (strlen(again) != len || memcmp(again, s, len) != 0)
        return -1;
    memcpy(out, buf, want);
    sodium_memzero(buf, sizeof buf);
    return 0;
}

size_t ckpt_b64_encode(const unsigned char *p, size_t n, char *out, size_t cap)
{
    if (cap < sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL)) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    return strlen(out);
}

static int parse_hex32(const char *s, size_t len, uint32_t *v)
{
    uint32_t x = 0;

    if (len != 8)
        return -1;
    for (size_t i = 0; i < 8; i++) {
        char c = s[i];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (uint32_t)(c - 'a' + 10);
        else
            return -1;
    }
    *v = x;
    return 0;
}

/* Splits "<name>+<hash>+<base64>" (text without its newline) into k->name,
 * the hash and the 32 key bytes after the 0x01 type byte. */
static int parse_key_parts(const char *text, size_t len, const char *what, ckpt_key *k,
                           uint32_t *hash, unsigned char key[32], char *err, size_t errlen)
{
    const char *p1 = memchr(text, '+', len), *p2;
    unsigned char raw[33];
    char why[200];

    if (p1 == NULL || (p2 = memchr(p1 + 1, '+', len - (size_t)(p1 + 1 - text))) == NULL) {
        text_errf(err, errlen, "%s is not <name>+<key hash>+<key>", what);
        return CKPT_MALFORMED;
    }
    if (!name_valid_n(text, (size_t)(p1 - text), "its key name", why, sizeof why)) {
        text_errf(err, errlen, "%s: %s", what, why);
        return CKPT_MALFORMED;
    }
    if (parse_hex32(p1 + 1, (size_t)(p2 - p1 - 1), hash) != 0) {
        text_errf(err, errlen, "%s: the key hash '%.*s' is not 8 lowercase hex digits", what,
                (int)((p2 - p1 - 1) > 16 ? 16 : (p2 - p1 - 1)), p1 + 1);
        return CKPT_MALFORMED;
    }
    if (ckpt_b64_decode(p2 + 1, len - (size_t)(p2 + 1 - text), raw, sizeof raw) != 0) {
        text_errf(err, errlen, "%s: the key is not base64 of 33 bytes (type byte and 32-byte key)",
                what);
        return CKPT_MALFORMED;
    }
    if (raw[0] != ALG_ED25519) {
        text_errf(err, errlen, "%s: key type %u is not Ed25519 (1)", what, raw[0]);
        sodium_memzero(raw, sizeof raw);
        return CKPT_MALFORMED;
    }
    memcpy(key, raw + 1, 32);
    sodium_memzero(raw, sizeof raw);
    memcpy(k->name, text, (size_t)(p1 - text));
    k->name[p1 - text] = '\0';
    return CKPT_OK;
}

static size_t trim_newline(const char *text, size_t len)
{
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > 0 && text[len - 1] == '\r')
        len--;
    return len;
}

int ckpt_key_parse_public(const char *text, size_t len, ckpt_key *k, char *err, size_t errlen)
{
    uint32_t hash;
    int rc;

    memset(k, 0, sizeof *k);
    len = trim_newline(text, len);
    if (len >= 12 && memcmp(text, "PRIVATE+KEY+", 12) == 0) {
        text_errf(err, errlen, "this is a private (signing) key; give the verifier key (PATH.pub)");
        return CKPT_MALFORMED;
    }
    if (memchr(text, '\n', len) != NULL) {
        text_errf(err, errlen, "the verifier key must be one line");
        return CKPT_MALFORMED;
    }
    rc = parse_key_parts(text, len, "the verifier key", k, &hash, k->pub, err, errlen);
    if (rc != CKPT_OK)
        return rc;
    k->hash = ckpt_key_hash(k->name, k->pub);
    if (k->hash != hash) {
        text_errf(err, errlen,
                "the verifier key's hash %08x does not match its name and key (%08x): the text "
                "was altered",
                (unsigned)hash, (unsigned)k->hash);
        memset(k, 0, sizeof *k);
        return CKPT_MALFORMED;
    }
    return CKPT_OK;
}

/* Reads a whole small file (at most KEY_FILE_MAX bytes) into buf. With
 * secret, the file must be a regular file no one but the owner may read
 * or write. Returns the length, or -1 with the reason in err. */
static ssize_t read_key_file(const char *path, char *buf, size_t cap, int secret, char *err,
                             size_t errlen)
{
    struct stat st;
    ssize_t n, total = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        text_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        text_errf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (secret && (st.st_mode & 077) != 0) {
        text_errf(err, errlen,
                "%s has mode %04o: group or others may access the signing key; run chmod 600 %s "
                "(and replace the key if others could read it)",
                path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -1;
    }
    for (;;) {
        n = read(fd, buf + total, cap - (size_t)total);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            text_errf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        total += n;
        if ((size_t)total == cap) {
            text_errf(err, errlen, "%s is larger than a key file (%zu bytes at most)", path,
                    cap - 1);
            close(fd);
            return -1;
        }
    }
    close(fd);
    return total;
}

int ckpt_key_load_private(const char *path, ckpt_key *k, char *err, size_t errlen)
{
    char buf[KEY_FILE_MAX + 1], why[300];
    unsigned char seed[32];
    ckpt_key parsed;
    uint32_t hash;
    ssize_t n;
    size_t len;
    int rc = CKPT_MALFORMED;

    memset(k, 0, sizeof *k);
    memset(&parsed, 0, sizeof parsed);
    n = read_key_file(path, buf, sizeof buf, 1, err, errlen);
    if (n < 0)
        return CKPT_ERR;
    len = trim_newline(buf, (size_t)n);
    if (len < 12 || memcmp(buf, "PRIVATE+KEY+", 12) != 0) {
        text_errf(err, errlen,
                "%s is not a private key (PRIVATE+KEY+<name>+<hash>+<key>); create one with "
                "auditqctl keygen %s",
                path, path);
        goto out;
    }
    if (memchr(buf, '\n', len) != NULL) {
        text_errf(err, errlen, "%s: the private key must be one line", path);
        goto out;
    }
    if (parse_key_parts(buf + 12, len - 12, "the private key", &parsed, &hash, seed, why,
                        sizeof why) != CKPT_OK) {
        text_errf(err, errlen, "%s: %s", path, why);
        goto out;
    }
    if (ckpt_key_from_seed(parsed.name, seed, k, why, sizeof why) != CKPT_OK) {
        text_errf(err, errlen, "%s: %s", path, why);
        rc = CKPT_ERR;
        goto out;
    }
    if (k->hash != hash) {
        text_errf(err, errlen, "%s: the key hash %08x does not match its name and key (%08x)",
                path, (unsigned)hash, (unsigned)k->hash);
        ckpt_key_wipe(k);
        goto out;
    }
    rc = CKPT_OK;
out:
    sodium_memzero(buf, sizeof buf);
    sodium_memzero(seed, sizeof seed);
    ckpt_key_wipe(&parsed);
    return rc;
}

int ckpt_key_load_public(const char *path, ckpt_key *k, char *err, size_t errlen)
{
    char buf[KEY_FILE_MAX + 1], why[300];
    ssize_t n;
    int rc;

    memset(k, 0, sizeof *k);
    n = read_key_file(path, buf, sizeof buf, 0, err, errlen);
    if (n < 0)
        return CKPT_ERR;
    if (n >= 12 && memcmp(buf, "PRIVATE+KEY+", 12) == 0) {
        sodium_memzero(buf, sizeof buf);
        text_errf(err, errlen,
                "%s holds a private (signing) key; give the verifier key %s.pub instead", path,
                path);
        return CKPT_MALFORMED;
    }
    rc = ckpt_key_parse_public(buf, (size_t)n, k, why, sizeof why);
    if (rc != CKPT_OK)
        text_errf(err, errlen, "%s: %s", path, why);
    return rc;
}

/* Writes data to path durably: path.tmp.<pid> (mode), fsync, then rename
 * (replace) or link (refuse an existing path: EEXIST), fsync of the
 * directory. No partial key file is ever visible under path. */
static int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode,
                             int replace, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    int fd, rc = CKPT_ERR;
    size_t off = 0;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        text_errf(err, errlen, "path %s is too long", path);
        return CKPT_ERR;
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        text_errf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return CKPT_ERR;
    }
    /* Exact mode whatever the umask. */
    if (fchmod(fd, mode) != 0) {
        text_errf(err, errlen, "chmod of %s: %s", tmp, strerror(errno));
        goto fail;
    }
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            text_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
            goto fail;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0) {
        text_errf(err, errlen, "fsync of %s: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (replace) {
        if (rename(tmp, path) != 0) {
            text_errf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
            goto fail;
        }
    } else {
        if (link(tmp, path) != 0) {
            if (errno == EEXIST)
                text_errf(err, errlen,
                        "%s exists; keygen never overwrites a key (use --force to replace it: "
                        "checkpoints it signed then verify only with its old .pub)",
                        path);
            else
                text_errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            goto fail;
        }
        unlink(tmp);
    }
    if (fileio_fsync_parent(path, err, errlen) != 0)
        return CKPT_ERR;
    return CKPT_OK;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int ckpt_key_write(const ckpt_key *k, const char *path, int force, char *err, size_t errlen)
{
    char priv[CKPT_NAME_MAX + 128], pub[CKPT_PUBKEY_TEXT_MAX + 1], pubpath[PATH_MAX], b[64];
    size_t n;
    int rc;

    if (!k->has_secret) {
        text_errf(err, errlen, "the key has no secret to write");
        return CKPT_ERR;
    }
    if ((size_t)snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= sizeof pubpath) {
        text_errf(err, errlen, "path %s is too long", path);
        return CKPT_ERR;
    }
    key_b64(k->sk, b); /* libsodium's secret key starts with the seed */
    snprintf(priv, sizeof priv, "PRIVATE+KEY+%s+%08x+%s\n", k->name, (unsigned)k->hash, b);
    sodium_memzero(b, sizeof b);
    rc = write_file_atomic(path, priv, strlen(priv), 0600, force, err, errlen);
    sodium_memzero(priv, sizeof priv);
    if (rc != CKPT_OK)
        return rc;
    n = ckpt_key_format_public(k, pub, sizeof pub - 1);
    pub[n++] = '\n';
    return write_file_atomic(pubpath, pub, n, 0644, 1, err, errlen);
}

/* ---- checkpoints --------------------------------------------------------- */

static size_t format_body(const ckpt *c, char *out, size_t cap)
{
    char root[64];
    int n;

    sodium_bin2base64(root, sizeof root, c->root, MERKLE_HASH_LEN,
                      sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(out, cap, "%s\n%llu\n%s\n", c->origin, (unsigned long long)c->size, root);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    if (c->has_events) {
        int m = snprintf(out + n, cap - (size_t)n, "events %llu\n", (unsigned long long)c->events);
        if (m < 0 || (size_t)m >= cap - (size_t)n)
            return 0;
        n += m;
    }
    if (c->has_time) {
        int m = snprintf(out + n, cap - (size_t)n, "time %lld\n", (long long)c->time);
        if (m < 0 || (size_t)m >= cap - (size_t)n)
            return 0;
        n += m;
    }
    return (size_t)n;
}

int ckpt_sign(const ckpt *c, const ckpt_key *k, char *out, size_t cap, size_t *len,
              char *err, size_t errlen)
{
    unsigned char sig[SIG_BYTES];
    char sigb64[sodium_base64_ENCODED_LEN(SIG_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    size_t body;
    int n;

    if (!name_valid_n(c->origin, strlen(c->origin), "the origin", err, errlen))
        return CKPT_ERR;
    if (!k->has_secret) {
        text_errf(err, errlen, "key '%s' is a verifier key; signing needs the private key",
                k->name);
        return CKPT_ERR;
    }
    body = format_body(c, out, cap);
    if (body == 0) {
        text_errf(err, errlen, "checkpoint buffer too small (%zu bytes)", cap);
        return CKPT_ERR;
    }
    sig[0] = (unsigned char)(k->hash >> 24);
    sig[1] = (unsigned char)(k->hash >> 16);
    sig[2] = (unsigned char)(k->hash >> 8);
    sig[3] = (unsigned char)k->hash;
    if (crypto_sign_detached(sig + 4, NULL, (const unsigned char *)out, body, k->sk) != 0) {
        text_errf(err, errlen, "Ed25519 signing failed");
        return CKPT_ERR;
    }
    sodium_bin2base64(sigb64, sizeof sigb64, sig, sizeof sig, sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(out + body, cap - body, "\n" EM_DASH " %s %s\n", k->name, sigb64);
    if (n < 0 || (size_t)n >= cap - body) {
        text_errf(err, errlen, "checkpoint buffer too small (%zu bytes)", cap);
        return CKPT_ERR;
    }
    *len = body + (size_t)n;
    return CKPT_OK;
}

/* Canonical decimal: "0" or no leading zero, fits uint64. */
static int parse_u64(const char *s, size_t len, uint64_t *v)
{
    uint64_t x = 0;

    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return -1;
        d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static int parse_i64(const char *s, size_t len, int64_t *v)
{
    uint64_t u;
    int neg = len > 0 && s[0] == '-';

    if (parse_u64(s + neg, len - (size_t)neg, &u) != 0 || (neg && u == 0))
        return -1;
    if (u > (uint64_t)INT64_MAX + (uint64_t)neg)
        return -1;
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* A parsed note: the body (signed bytes) and the signature lines. */
typedef struct note_sig {
    char name[CKPT_NAME_MAX + 1];
    uint32_t hash;
    unsigned char sig[crypto_sign_BYTES];
    int ed25519;    /* 4 + 64 bytes: could be ours */
} note_sig;

typedef struct note {
    size_t body_len;
    size_t nsigs;
    note_sig sigs[CKPT_MAX_SIGS];
} note;

static int shown_line(const char *p, size_t len, char *out, size_t cap)
{
    return (int)text_escape(out, cap, p, len, 60);
}

static int parse_note(const char *text, size_t len, ckpt *c, note *nt, char *err, size_t errlen)
{
    const char *sep = NULL, *p, *end;
    size_t bad;
    unsigned line = 0;
    char shown[256];

    memset(c, 0, sizeof *c);
    memset(nt, 0, sizeof *nt);
    if (len == 0) {
        text_errf(err, errlen, "the checkpoint is empty");
        return CKPT_MALFORMED;
    }
    if (len > CKPT_NOTE_MAX) {
        text_errf(err, errlen, "the checkpoint is %zu bytes; a checkpoint has at most %d", len,
                CKPT_NOTE_MAX);
        return CKPT_MALFORMED;
    }
    /* Printable UTF-8 and newlines only (C2SP signed-note). */
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t ll = (nl ? (size_t)(nl - text) : len) - i;

        line++;
        bad = bad_text_at(text + i, ll, 0);
        if (bad < ll) {
            shown_line(text + i + bad, ll - bad, shown, sizeof shown);
            text_errf(err, errlen, "line %u: a control character or invalid UTF-8 at '%s'", line,
                    shown);
            return CKPT_MALFORMED;
        }
        i += ll + 1;
    }
    if (text[len - 1] != '\n') {
        text_errf(err, errlen, "line %u: the checkpoint does not end with a newline (cut short?)",
                line);
        return CKPT_MALFORMED;
    }
    /* The signatures follow the last blank line. */
    for (size_t i = len - 1; i-- > 0;) {
        if (text[i] == '\n' && text[i + 1] == '\n') {
            sep = text + i;
            break;
        }
    }
    if (sep == NULL) {
        text_errf(err, errlen, "no blank line before the signatures (the note is cut short or "
                             "has no signature)");
        return CKPT_MALFORMED;
    }
    nt->body_len = (size_t)(sep - text) + 1;

    /* Body lines. */
    p = text;
    end = text + nt->body_len;
    line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)(nl - p);

        line++;
        if (ll == 0) {
            text_errf(err, errlen, "line %u: empty line in the checkpoint body", line);
            return CKPT_MALFORMED;
        }
        if (line == 1) {
            char why[200];
            if (!name_valid_n(p, ll, "the origin", why, sizeof why)) {
                text_errf(err, errlen, "line 1: %s", why);
                return CKPT_MALFORMED;
            }
            memcpy(c->origin, p, ll);
            c->origin[ll] = '\0';
        } else if (line == 2) {
            if (parse_u64(p, ll, &c->size) != 0) {
                shown_line(p, ll, shown, sizeof shown);
                text_errf(err, errlen,
                        "line 2: tree size '%s' is not a decimal number (no sign, no leading zero)",
                        shown);
                return CKPT_MALFORMED;
            }
        } else if (line == 3) {
            if (ckpt_b64_decode(p, ll, c->root, MERKLE_HASH_LEN) != 0) {
                shown_line(p, ll, shown, sizeof shown);
                text_errf(err, errlen,
                        "line 3: root hash '%s' is not base64 (standard, padded) of 32 bytes",
                        shown);
                return CKPT_MALFORMED;
            }
        } else if (ll > 7 && memcmp(p, "events ", 7) == 0) {
            if (c->has_events || parse_u64(p + 7, ll - 7, &c->events) != 0) {
                shown_line(p, ll, shown, sizeof shown);
                text_errf(err, errlen, "line %u: '%s': %s", line, shown,
                        c->has_events ? "a second events line" : "the count is not a decimal number");
                return CKPT_MALFORMED;
            }
            c->has_events = 1;
        } else if (ll > 5 && memcmp(p, "time ", 5) == 0) {
            if (c->has_time || parse_i64(p + 5, ll - 5, &c->time) != 0) {
                shown_line(p, ll, shown, sizeof shown);
                text_errf(err, errlen, "line %u: '%s': %s", line, shown,
                        c->has_time ? "a second time line" : "the time is not a decimal number");
                return CKPT_MALFORMED;
            }
            c->has_time = 1;
        }
        p = nl + 1;
    }
    if (line < 3) {
        text_errf(err, errlen,
                "the checkpoint body has %u line(s); it needs origin, tree size and root hash",
                line);
        return CKPT_MALFORMED;
    }

    /* Signature lines: "— <name> <base64>". */
    p = sep + 2;
    end = text + len;
    line++; /* the blank line */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)(nl - p);
        const char *name, *sp;
        unsigned char raw[128];
        size_t got = 0;
        const char *b64end = NULL;
        note_sig *s;

        line++;
        if (ll < 4 || memcmp(p, EM_DASH " ", 4) != 0) {
            shown_line(p, ll, shown, sizeof shown);
            text_errf(err, errlen, "line %u: '%s' is not a signature line ('" EM_DASH " <key name> <signature>')",
                    line, shown);
            return CKPT_MALFORMED;
        }
        name = p + 4;
        sp = memchr(name, ' ', ll - 4);
        if (sp == NULL || sp == name || !name_valid_n(name, (size_t)(sp - name), "key name",
                                                      NULL, 0) ||
            sodium_base642bin(raw, sizeof raw, sp + 1, (size_t)(nl - sp - 1), NULL, &got, &b64end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            b64end != nl || got < 5) {
            shown_line(p, ll, shown, sizeof shown);
            text_errf(err, errlen,
                    "line %u: signature line '%s' is not '" EM_DASH " <key name> <base64 of key hash and signature>'",
                    line, shown);
            return CKPT_MALFORMED;
        }
        if (nt->nsigs == CKPT_MAX_SIGS) {
            text_errf(err, errlen, "line %u: more than %d signatures", line, CKPT_MAX_SIGS);
            return CKPT_MALFORMED;
        }
        s = &nt->sigs[nt->nsigs++];
        memcpy(s->name, name, (size_t)(sp - name));
        s->name[sp - name] = '\0';
        s->hash = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
        s->ed25519 = got == SIG_BYTES;
        if (s->ed25519)
            memcpy(s->sig, raw + 4, crypto_sign_BYTES);
        p = nl + 1;
    }
    if (nt->nsigs == 0) {
        text_errf(err, errlen, "the checkpoint has no signature line after the blank line");
        return CKPT_MALFORMED;
    }
    return CKPT_OK;
}

int ckpt_parse(const char *text, size_t len, ckpt *c, char *err, size_t errlen)
{
    note nt;

    return parse_note(text, len, c, &nt, err, errlen);
}

int ckpt_open(const char *text, size_t len, const ckpt_key *keys, size_t nkeys,
              const char *origin, ckpt *c, char *err, size_t errlen)
{
    note nt;
    int rc = parse_note(text, len, c, &nt, err, errlen);
    const note_sig *mismatch = NULL, *bad = NULL;
    const ckpt_key *mismatch_key = NULL, *bad_key = NULL;

    if (rc != CKPT_OK)
        return rc;
    for (size_t i = 0; i < nkeys; i++) {
        for (size_t j = 0; j < nt.nsigs; j++) {
            const note_sig *s = &nt.sigs[j];

            if (strcmp(s->name, keys[i].name) != 0)
                continue;
            if (s->hash != keys[i].hash) {
                mismatch = s;
                mismatch_key = &keys[i];
                continue;
            }
            if (!s->ed25519 ||
                crypto_sign_verify_detached(s->sig, (const unsigned char *)text, nt.body_len,
                                            keys[i].pub) != 0) {
                bad = s;
                bad_key = &keys[i];
                continue;
            }
            snprintf(c->key_name, sizeof c->key_name, "%s", keys[i].name);
            c->key_hash = keys[i].hash;
            if (origin != NULL && strcmp(origin, c->origin) != 0) {
                text_errf(err, errlen,
                        "the checkpoint's origin is '%s', not '%s': it belongs to another log "
                        "(namespace)",
                        c->origin, origin);
                return CKPT_ORIGIN_MISMATCH;
            }
            return CKPT_OK;
        }
    }
    if (bad != NULL) {
        text_errf(err, errlen,
                "the signature by key '%s' (%08x) does not verify: the checkpoint text or its "
                "signature was altered after signing",
                bad_key->name, (unsigned)bad->hash);
        return CKPT_BAD_SIGNATURE;
    }
    if (mismatch != NULL) {
        text_errf(err, errlen,
                "the checkpoint is signed by a key named '%s' with key hash %08x, but the "
                "verifier key '%s' has hash %08x: another key of that name (an older or newer "
                "key?); give that key's .pub",
                mismatch->name, (unsigned)mismatch->hash, mismatch_key->name,
                (unsigned)mismatch_key->hash);
        return CKPT_KEY_MISMATCH;
    }
    {
        char signers[256] = "", wanted[256] = "";
        size_t off = 0;

        for (size_t j = 0; j < nt.nsigs && off < sizeof signers; j++) {
            int n = snprintf(signers + off, sizeof signers - off, "%s'%s' (%08x)",
                             j ? ", " : "", nt.sigs[j].name, (unsigned)nt.sigs[j].hash);
            if (n < 0)
                break;
            off += (size_t)n;
        }
        off = 0;
        for (size_t i = 0; i < nkeys && off < sizeof wanted; i++) {
            int n = snprintf(wanted + off, sizeof wanted - off, "%s'%s' (%08x)", i ? ", " : "",
                             keys[i].name, (unsigned)keys[i].hash);
            if (n < 0)
                break;
            off += (size_t)n;
        }
        text_errf(err, errlen,
                "the checkpoint is signed by %s, not by the verifier key %s; give the .pub of "
                "the key that signed it",
                signers, nkeys ? wanted : "(none given)");
    }
    return CKPT_UNKNOWN_KEY;
}
