/* worker.c -- the helpers every thread of the worker uses to wait and to
 * explain a Redis refusal (worker.h). */
#include "worker.h"

#include <errno.h>
#include <time.h>

#include "clock.h"

int64_t worker_deadline_left_ms(worker *w)
{
    return (atomic_load(&w->stop_deadline_us) - clock_mono_us()) / 1000;
}

void worker_sleep(worker *w, int64_t ms, int ignore_stop)
{
    if (ms <= 0)
        return;
    struct timespec dl = clock_abs_after_ms(ms);
    pthread_mutex_lock(&w->mu);
    while (ignore_stop || !atomic_load(&w->stopping))
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&w->mu);
}

int worker_out_of_time(worker *w)
{
    return atomic_load(&w->stopping) && worker_deadline_left_ms(w) <= 0;
}

void worker_retry_sleep(worker *w, int64_t ms)
{
    if (atomic_load(&w->stopping)) {
        int64_t left = worker_deadline_left_ms(w);
        if (ms > left)
            ms = left;
    }
    worker_sleep(w, ms, 1);
}

const char *worker_redis_why(const worker *w, const char *what, const char *err, char *buf, size_t n)
{
    return redis_explain_refusal(&w->rt, "worker", what, NULL, err, buf, n) != REDIS_REFUSED_NONE ? buf : err;
}

const char *worker_shard_kv(const worker *w, int sh, char *buf, size_t n)
{
    if (w->shards.n <= 1)
        return "";
    snprintf(buf, n, " shard=%d", sh);
    return buf;
}
