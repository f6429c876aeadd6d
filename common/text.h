/* text.h -- byte-level checks on text fields: UTF-8 and JSON validity.
 * Pure functions, no allocation, safe on hostile input of any length. */
#ifndef AQ_TEXT_H
#define AQ_TEXT_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Returns 1 if s[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF) and holds no NUL byte, else 0 and sets
 * *bad_off (if not NULL) to the offset of the first offending byte. */
int text_utf8_valid(const char *s, size_t len, size_t *bad_off);

/* Writes s[0..len) into out (cap bytes, always NUL-terminated when cap > 0)
 * as printable, valid UTF-8 text for an error message: printable ASCII and
 * well-formed multi-byte sequences are copied, a backslash becomes "\\",
 * every other byte (controls, DEL, NUL, ill-formed UTF-8) becomes "\xNN".
 * At most max_in bytes of s are shown; if s is longer (or out is too small)
 * "..." is appended. Never splits a character. Returns strlen(out). */
size_t text_escape(char *out, size_t cap, const char *s, size_t len, size_t max_in);

/* UTF-8 policy, one for the whole tree: a character is a well-formed
 * sequence as RFC 3629 defines it (no overlongs, no surrogates, nothing
 * above U+10FFFF); each byte of anything else is one unknown character,
 * shown as U+FFFD in JSON (text_json_string), '?' on a terminal
 * (ctl_put_text, the query table) and \xNN in an error message
 * (text_escape). NUL is a character (U+0000) when decoding; only the field
 * check (text_utf8_valid) refuses it.
 *
 * text_utf8_next decodes the character at s[0..len): returns its length
 * (1..4) and sets *cp, or returns 0 (len == 0, or the bytes there are
 * ill-formed or cut short; *cp untouched). */
size_t text_utf8_next(const char *s, size_t len, uint32_t *cp);

/* Where text_json_string writes: appends p[0..n), returns 0 or -1. */
typedef int (*text_sink)(void *ctx, const char *p, size_t n);

/* text_json_string flags. */
#define TEXT_JSON_ESCAPE_DEL 1u /* DEL (0x7f) as \u007f too: output a terminal may show */

/* The one JSON string writer (RFC 8259): writes s[0..len) as a string
 * literal, quotes included, to put(ctx, ...). '"' and '\\' are escaped;
 * \b \f \n \r \t as short escapes, the other C0 controls (NUL included)
 * as \u00xx; well-formed UTF-8 is copied; each byte of an ill-formed
 * sequence becomes \ufffd (policy above), so the output is always valid
 * JSON in valid UTF-8. DEL is copied unless flags has TEXT_JSON_ESCAPE_DEL.
 * Returns 0, or -1 as soon as put fails. */
int text_json_string(text_sink put, void *ctx, const char *s, size_t len, unsigned flags);
/* text_json_string to a stdio stream; -1 on a short write. */
int text_json_fput(FILE *f, const char *s, size_t len, unsigned flags);

/* Maximum nesting of arrays/objects json_validate accepts. */
#define JSON_MAX_DEPTH 64

/* Checks s[0..len) is exactly one JSON value (RFC 8259; surrounding
 * whitespace allowed) whose top level is an object, nesting <= JSON_MAX_DEPTH,
 * strings valid UTF-8 without raw control characters. Returns 0 if valid;
 * else -1 and writes "offset N: what is wrong" into err (errlen bytes, always
 * NUL-terminated when errlen > 0). */
int json_validate_object(const char *s, size_t len, char *err, size_t errlen);

/* The value of one hexadecimal digit (0-9, a-f, A-F), or -1 for any other
 * byte: the one hex reader of UUIDs, URL percent-escapes and JSON \u escapes. */
int text_hexval(char c);

/* Levenshtein distance between a and b (insertions, deletions and
 * substitutions of bytes), for "did you mean" suggestions: the one
 * implementation behind the worker's, the tools' and libauditq's. Returns
 * SIZE_MAX when either string is longer than 64 bytes (no name is, and a
 * longer input is never a useful suggestion). No allocation. */
size_t text_edit_distance(const char *a, const char *b);
/* Formats an error message into err (errlen bytes; NULL or 0: nothing).
 * Truncation is silent: error text is best effort. The one helper every
 * module that reports into a caller's err buffer uses. */
void text_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
