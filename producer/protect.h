/* protect.h -- field protection: secrets never leave the producer.
 *
 * Owns: struct protect (the parsed protect_fields rules and the HMAC key
 * read from protect_key_file). Built once by auditq_open and read-only
 * afterwards, so threads share it without a lock. Called by: settings.c
 * (to check protect_fields when it is set), auditq.c (open/close), event.c
 * (event_encode rewrites every job through protect_job before a byte of it
 * is pushed, spooled or buffered) and `auditqctl hash` (the same HMAC).
 * Calls: codec (field names, buffers), text (edit distance), OpenSSL's
 * HMAC-SHA256.
 *
 * Rules (docs/SECURITY.md section 8): "PATH:ACTION, ...". PATH is
 * a field's wire name (source_ip, actor_id, ...) or, for changes and
 * metadata, the field followed by '.'-separated JSON object keys, where '*'
 * stands for any one key (changes.*.token). Arrays are transparent: the
 * elements of an array have the array's path. ACTION is one of
 *   hmac    every value becomes "hmac-sha256:<64 hex>", the HMAC-SHA256
 *           under the key of the value's bytes: a string's decoded UTF-8
 *           text, a number's or a boolean's JSON text (42 -> HMAC of "42")
 *   redact  every value becomes the string PROTECT_REDACTED
 *   drop    the member (or the whole field) is removed
 * A rule that matches an object or array applies hmac/redact to every value
 * inside it and keeps its shape (keys, array lengths); null stays null
 * (it holds nothing to hide). The first rule in the list that matches a
 * path wins. event_id, action, actor_type and outcome cannot be protected:
 * the pipeline needs them as sent. */
#ifndef AQ_PRODUCER_PROTECT_H
#define AQ_PRODUCER_PROTECT_H
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define PROTECT_MAX_RULES 64
#define PROTECT_MAX_SEGS 16            /* JSON keys below changes/metadata */
#define PROTECT_SPEC_MAX 4096          /* the protect_fields text */
#define PROTECT_KEY_MIN 32             /* bytes: 256 bits, SHA-256's block half */
#define PROTECT_KEY_MAX 4096
#define PROTECT_HMAC_PREFIX "hmac-sha256:"
#define PROTECT_HMAC_LEN (sizeof PROTECT_HMAC_PREFIX - 1 + 64)
#define PROTECT_REDACTED "[redacted]"

enum { PROTECT_HMAC = 1, PROTECT_REDACT = 2, PROTECT_DROP = 3 };

typedef struct protect protect;

/* Parses a protect_fields text into a new protect without a key (enough to
 * check the rules: protect_parse(spec, NULL, ...) only validates). "" or
 * only blanks gives *out = NULL and 0. Returns 0, or -1 with err naming the
 * rule and the fix. On success the caller frees *out with protect_free. */
int protect_parse(const char *spec, protect **out, char *err, size_t errlen);
/* 1 if some rule of p is an hmac rule (then a key is required). */
int protect_needs_key(const protect *p);
/* The text of p's first hmac rule, for messages ("" if none). */
const char *protect_first_hmac_rule(const protect *p);
/* Reads the key file at path into key[0..*keylen) (PROTECT_KEY_MAX bytes
 * of room): the file's bytes without trailing CR/LF. Refuses a file that is
 * missing, unreadable, not a regular file, accessible to other users, or
 * shorter than PROTECT_KEY_MIN bytes. Returns 0, or -1 with err naming the
 * file and the fix. */
int protect_key_read(const char *path, uint8_t *key, size_t *keylen, char *err, size_t errlen);
/* Gives p the key file's key (protect_key_read). 0 or -1 with err. */
int protect_set_key(protect *p, const char *path, char *err, size_t errlen);
/* NULL-safe; wipes the key. */
void protect_free(protect *p);

/* Writes PROTECT_HMAC_PREFIX + the lower-case hex HMAC-SHA256 of v[0..n)
 * under key into out (PROTECT_HMAC_LEN + 1 bytes, NUL-terminated).
 * Returns 0, or -1 if the HMAC could not be computed. */
int protect_hmac(const uint8_t *key, size_t keylen, const void *v, size_t n, char *out);

/* Applies p's rules to j: the protected fields of j are rewritten into arena
 * (emptied first) and j's pointers moved there; a dropped field becomes
 * absent. j's other fields keep pointing where they did. arena must stay
 * unchanged while j is used. NULL p: nothing to do. Returns 0, or -1 on
 * out of memory or an HMAC failure (err says which). */
int protect_job(const protect *p, aq_job *j, aq_buf *arena, char *err, size_t errlen);
#endif
