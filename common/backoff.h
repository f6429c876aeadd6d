/* backoff.h -- capped exponential backoff with jitter. */
#ifndef AQ_BACKOFF_H
#define AQ_BACKOFF_H
#include <stdint.h>

/* Delay before retry number `attempt` (1 = first retry): the exponential
 * step base_ms * 2^(attempt-1), capped at cap_ms, then "equal jitter": a
 * uniform value in [step/2, step]. Never returns less than 1 or more than
 * cap_ms. *rng is caller-owned xorshift state (any non-zero seed). */
int64_t backoff_delay_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, uint64_t *rng);
/* xorshift64* step; returns the next pseudo-random number. */
uint64_t backoff_rand(uint64_t *rng);
#endif
