/* clockskew.c -- see clockskew.h. */
#include "clockskew.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

int clockskew_classify(int64_t occurred_us, int64_t now_us, int64_t future_ms, int64_t backfill_ms)
{
    /* Both operands are within +-2^62 for any real timestamp (codec bounds
     * occurred_at to an int64 of microseconds; now is the wall clock), but
     * a hostile occurred_at can be INT64_MIN/MAX: compare without
     * overflowing by checking the sign first. */
    if (future_ms > 0 && occurred_us > now_us &&
        (uint64_t)occurred_us - (uint64_t)now_us > (uint64_t)future_ms * 1000u)
        return CLOCKSKEW_FUTURE;
    if (backfill_ms > 0 && occurred_us < now_us &&
        (uint64_t)now_us - (uint64_t)occurred_us > (uint64_t)backfill_ms * 1000u)
        return CLOCKSKEW_BACKFILL;
    return CLOCKSKEW_NONE;
}

char *clockskew_iso(char *out, size_t outlen, int64_t us)
{
    /* Floor division, so times before 1970 keep a positive fraction. */
    int64_t sec = us / 1000000, frac = us % 1000000;
    struct tm tm;
    time_t t;

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, outlen, "%" PRId64 "us", us);
        return out;
    }
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return out;
}

char *clockskew_reason(char *out, size_t outlen, int cls, int64_t occurred_us, int64_t now_us,
                       int64_t bound_ms)
{
    char occ[64], now[64];
    int future = cls == CLOCKSKEW_FUTURE;
    /* The distance in whole ms, rounded away from the bound so the number
     * shown is never <= the bound for an event that crossed it. */
    uint64_t d = future ? (uint64_t)occurred_us - (uint64_t)now_us
                        : (uint64_t)now_us - (uint64_t)occurred_us;
    uint64_t ms = d / 1000 + (d % 1000 != 0);

    clockskew_iso(occ, sizeof occ, occurred_us);
    clockskew_iso(now, sizeof now, now_us);
    snprintf(out, outlen, "occurred_at %s is %" PRIu64 " ms %s the worker's clock %s, more than "
             "%s=%" PRId64 " (clock_skew_policy=dead_letter)", occ, ms,
             future ? "ahead of" : "behind", now,
             future ? "clock_skew_future_ms" : "backfill_max_age_ms", bound_ms);
    return out;
}
