/* fakeclock.c -- LD_PRELOAD shim for tests: the wall clock stands still.
 *
 *   cc -shared -fPIC -o fakeclock.so tests/lib/fakeclock.c -ldl
 *   AQ_FAKE_REALTIME_US=1796385600000000 LD_PRELOAD=./fakeclock.so auditq-worker ...
 *
 * CLOCK_REALTIME (clock_gettime, gettimeofday, time) then always reads
 * AQ_FAKE_REALTIME_US, so a test knows the worker's "now" to the
 * microsecond and can put an event exactly 1 ms inside or outside a bound
 * (tests/integration/it_74_clock_skew.sh). CLOCK_MONOTONIC is untouched, so
 * timeouts and backoffs still run. pthread_cond_timedwait takes absolute
 * CLOCK_REALTIME deadlines, which the caller computed from the frozen
 * clock: they are moved onto the real one (same distance from now), or
 * every timed sleep would return at once or never. Test-only: it is never
 * linked into anything, only preloaded by the test that builds it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int64_t frozen_us = -1;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);

__attribute__((constructor)) static void fakeclock_init(void)
{
    const char *v = getenv("AQ_FAKE_REALTIME_US");

    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    real_timedwait = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))
        dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    if (v != NULL && *v != '\0')
        frozen_us = strtoll(v, NULL, 10);
}

static int is_realtime(clockid_t clk)
{
    return clk == CLOCK_REALTIME || clk == CLOCK_REALTIME_COARSE;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
    if (frozen_us >= 0 && is_realtime(clk)) {
        ts->tv_sec = (time_t)(frozen_us / 1000000);
        ts->tv_nsec = (long)(frozen_us % 1000000) * 1000;
        return 0;
    }
    return real_clock_gettime(clk, ts);
}

int gettimeofday(struct timeval *tv, void *tz)
{
    struct timespec ts;

    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (t != NULL)
        *t = ts.tv_sec;
    return ts.tv_sec;
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mu, const struct timespec *abstime)
{
    struct timespec now, dl;
    int64_t rel_ns;

    if (frozen_us < 0)
        return real_timedwait(cond, mu, abstime);
    rel_ns = ((int64_t)abstime->tv_sec * 1000000 + abstime->tv_nsec / 1000 - frozen_us) * 1000;
    if (rel_ns < 0)
        rel_ns = 0;
    real_clock_gettime(CLOCK_REALTIME, &now);
    dl.tv_sec = now.tv_sec + (time_t)(rel_ns / 1000000000);
    dl.tv_nsec = now.tv_nsec + (long)(rel_ns % 1000000000);
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    return real_timedwait(cond, mu, &dl);
}
