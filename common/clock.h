/* clock.h -- time helpers. */
#ifndef AQ_CLOCK_H
#define AQ_CLOCK_H
#include <errno.h>
#include <stdint.h>
#include <time.h>

/* Wall clock, microseconds since the Unix epoch. */
static inline int64_t clock_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
/* Monotonic clock in microseconds (durations, deadlines). */
static inline int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
/* Absolute CLOCK_REALTIME timespec `ms` from now (pthread_cond_timedwait). */
static inline struct timespec clock_abs_after_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    return ts;
}
/* Sleeps ms milliseconds (resumed after a signal). */
static inline void clock_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
#endif
