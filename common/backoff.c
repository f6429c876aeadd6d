/* backoff.c -- capped exponential backoff with "equal jitter".
 *
 * Equal jitter (half fixed, half random) keeps a floor under every delay, so
 * a reconnect storm never degenerates into a tight loop, while still
 * spreading many workers that failed at the same instant. */
#include "backoff.h"

#include <stddef.h>

/* Any fixed non-zero value works; xorshift's only forbidden state is 0. */
#define BACKOFF_DEFAULT_SEED 0x9E3779B97F4A7C15ULL

uint64_t backoff_rand(uint64_t *rng)
{
    uint64_t x = *rng;

    if (x == 0)
        x = BACKOFF_DEFAULT_SEED;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int64_t backoff_delay_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms,
                         uint64_t *rng)
{
    int64_t step, lo;
    unsigned shift;

    /* Nonsense parameters are clamped rather than rejected: a caller in a
     * retry path has no better delay to fall back to. */
    if (cap_ms < 1)
        cap_ms = 1;
    if (base_ms < 1)
        base_ms = 1;
    if (base_ms > cap_ms)
        base_ms = cap_ms;
    if (attempt == 0)
        attempt = 1;

    /* step = min(base << shift, cap) without ever shifting past 62 bits or
     * overflowing: base << shift > cap  <=>  base > cap >> shift. */
    shift = attempt - 1;
    if (shift >= 62 || base_ms > (cap_ms >> shift))
        step = cap_ms;
    else
        step = base_ms << shift;

    lo = step / 2;
    if (lo < 1)
        lo = 1;
    if (rng == NULL || lo >= step)
        return step; /* no generator (or nothing to choose): the ceiling */
    return lo + (int64_t)(backoff_rand(rng) % (uint64_t)(step - lo + 1));
}
