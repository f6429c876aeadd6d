/* uuid7.h -- UUIDv7 (RFC 9562) generation, formatting and parsing. */
#ifndef AQ_UUID7_H
#define AQ_UUID7_H
#include <stddef.h>
#include <stdint.h>

/* Fills out with a new UUIDv7 for the current time. Thread-safe, no locks:
 * per-thread state seeded from getrandom(). Within one thread, ids are
 * strictly increasing (12-bit counter in rand_a, RFC 9562 method 1; when it
 * overflows, the timestamp is advanced by 1 ms). */
void uuid7_new(uint8_t out[16]);
/* Same for a given unix time in milliseconds (tests, backfills). */
void uuid7_new_at(uint8_t out[16], uint64_t unix_ms);
/* Writes the canonical lowercase 8-4-4-4-12 form plus NUL (37 bytes). */
void uuid_format(const uint8_t in[16], char out[37]);
/* Parses the canonical 36-char form (either case). Returns 0 or -1. */
int uuid_parse(const char *s, size_t len, uint8_t out[16]);
/* Unix milliseconds embedded in a UUIDv7. */
uint64_t uuid7_unix_ms(const uint8_t in[16]);
#endif
