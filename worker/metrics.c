/* metrics.c -- counters and histograms of the writer threads, and the
 * Prometheus text rendering (see metrics.h for the threading contract).
 *
 * Naming follows the Prometheus conventions: every name starts with
 * auditq_, counters end in _total, times are seconds, histograms have
 * _bucket{le} (cumulative) / _sum / _count. Metrics about this process
 * and metrics about the whole namespace (read from Redis) are kept apart:
 * auditq_processed_total counts this process's writes, while
 * auditq_cluster_processed_total is {ns}:stats, the sum over every worker
 * that ever ran -- summing the first over instances gives the second minus
 * what exited workers did.
 */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const double metrics_batch_bounds[METRICS_BATCH_BUCKETS] = {
    1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000,
};
const double metrics_write_bounds[METRICS_WRITE_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};

static const char *const state_names[MST_COUNT] = {
    "starting", "idle", "fetching", "writing", "settling", "backoff", "stopped", "parked",
};

static const char *const prio_names[AQ_PRIORITIES] = { "critical", "high", "normal", "low" };

#define RLX memory_order_relaxed

const char *metrics_state_name(int state)
{
    return state >= 0 && state < MST_COUNT ? state_names[state] : NULL;
}

/* ---- writer-thread side --------------------------------------------------- */

void metrics_set_state(metrics_thread *m, metrics_state s)
{
    atomic_store_explicit(&m->state, (int)s, RLX);
}

void metrics_observe_batch(metrics_thread *m, size_t jobs)
{
    size_t i = 0;
    while (i < METRICS_BATCH_BUCKETS && (double)jobs > metrics_batch_bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->batch_bucket[i], 1, RLX);
    atomic_fetch_add_explicit(&m->batch_sum, (uint_fast64_t)jobs, RLX);
}

void metrics_observe_write(metrics_thread *m, int64_t us)
{
    size_t i = 0;
    if (us < 0)
        us = 0;
    while (i < METRICS_WRITE_BUCKETS && (double)us / 1e6 > metrics_write_bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->write_bucket[i], 1, RLX);
    atomic_fetch_add_explicit(&m->write_sum_us, (uint_fast64_t)us, RLX);
}

void metrics_sum(const metrics_thread *th, int n, metrics_totals *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        const metrics_thread *m = &th[i];
        out->processed += atomic_load_explicit(&m->processed, RLX);
        out->failed += atomic_load_explicit(&m->failed, RLX);
        out->retried += atomic_load_explicit(&m->retried, RLX);
        out->dead_lettered += atomic_load_explicit(&m->dead_lettered, RLX);
        out->batches += atomic_load_explicit(&m->batches, RLX);
        out->write_errors += atomic_load_explicit(&m->write_errors, RLX);
        out->pg_transactions += atomic_load_explicit(&m->pg_transactions, RLX);
        out->pg_bisections += atomic_load_explicit(&m->pg_bisections, RLX);
        out->pg_round_trips += atomic_load_explicit(&m->pg_round_trips, RLX);
        out->released += atomic_load_explicit(&m->released, RLX);
        out->inflight += atomic_load_explicit(&m->inflight, RLX);
        out->pg_up_threads += atomic_load_explicit(&m->pg_up, RLX) != 0;
        out->redis_up_threads += atomic_load_explicit(&m->redis_up, RLX) != 0;
    }
}

long long metrics_oldest_ms(const metrics_queue_sample *s)
{
    long long m = -1;
    for (int p = 0; p < AQ_PRIORITIES; p++)
        if (s->oldest_age_ms[p] > m)
            m = s->oldest_age_ms[p];
    return m;
}

long long metrics_queued(const metrics_queue_sample *s)
{
    long long t = 0;
    for (int p = 0; p < AQ_PRIORITIES; p++)
        t += s->depth[p];
    return t;
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct out {
    aq_buf *b;
    int oom;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    if (o->oom)
        return;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* Every line is a name, short labels and a number: 1 KiB always fits
     * (label values are escaped into bounded buffers first). */
    if (n < 0 || (size_t)n >= sizeof line || aq_buf_append(o->b, line, (size_t)n) != 0)
        o->oom = 1;
}

/* HELP and TYPE lines of one metric family. */
static void family(out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the format wants it: \ " and newline escaped. Cut to
 * fit (ids are bounded well below this). */
static const char *label_esc(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            buf[n++] = '\\';
            buf[n++] = *s;
        } else if (*s == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

static double us_to_s(int64_t us)
{
    return (double)us / 1e6;
}

/* One histogram family from per-thread, per-bucket atomic counts.
 * sum_scale turns the stored integer sum into the base unit, printed with
 * sum_decimals decimals. */
static void histogram(out *o, const char *name, const char *help, const double *bounds,
                      size_t nb, const metrics_thread *th, int nth, size_t bucket_off,
                      size_t sum_off, double sum_scale, int sum_decimals)
{
    uint64_t cum = 0, sum = 0;

    family(o, name, "histogram", help);
    for (size_t i = 0; i <= nb; i++) {
        for (int t = 0; t < nth; t++) {
            const atomic_uint_fast64_t *b =
                (const atomic_uint_fast64_t *)(const void *)((const char *)&th[t] + bucket_off);
            cum += atomic_load_explicit(&b[i], RLX);
        }
        if (i < nb)
            put(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], cum);
        else
            put(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    for (int t = 0; t < nth; t++) {
        const atomic_uint_fast64_t *s =
            (const atomic_uint_fast64_t *)(const void *)((const char *)&th[t] + sum_off);
        sum += atomic_load_explicit(s, RLX);
    }
    put(o, "%s_sum %.*f\n%s_count %" PRIu64 "\n", name, sum_decimals, (double)sum * sum_scale,
        name, cum);
}

static void counter1(out *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "counter", help);
    put(o, "%s %" PRIu64 "\n", name, v);
}

static void gauge1(out *o, const char *name, const char *help, long long v)
{
    family(o, name, "gauge", help);
    put(o, "%s %lld\n", name, v);
}

static void render_process(out *o, const metrics_view *v, const metrics_totals *t)
{
    char id[400], ver[64], ns[160];

    family(o, "auditq_worker_info", "gauge",
           "Identity of this worker process; the value is always 1.");
    put(o, "auditq_worker_info{version=\"%s\",worker_id=\"%s\",namespace=\"%s\"} 1\n",
        label_esc(ver, sizeof ver, v->version), label_esc(id, sizeof id, v->worker_id),
        label_esc(ns, sizeof ns, v->namespace_));
    gauge1(o, "auditq_worker_threads", "Writer threads of this worker process.", v->nthreads);
    family(o, "auditq_worker_start_time_seconds", "gauge",
           "Start time of this worker process, seconds since the Unix epoch.");
    put(o, "auditq_worker_start_time_seconds %.3f\n", us_to_s(v->start_us));
    gauge1(o, "auditq_ready",
           "1 if this worker is ready (Redis sampled recently and a PostgreSQL connection is "
           "live), as GET /readyz answers.", v->ready);

    counter1(o, "auditq_processed_total",
             "Jobs this process wrote to PostgreSQL and acknowledged (re-deliveries of stored "
             "events included).", t->processed);
    counter1(o, "auditq_failed_total",
             "Jobs this process could not store: scheduled for retry or dead-lettered.", t->failed);
    counter1(o, "auditq_retried_total",
             "Jobs this process scheduled for a delayed retry after PostgreSQL rejected them.",
             t->retried);
    counter1(o, "auditq_dead_lettered_total",
             "Jobs this process moved to the dead-letter list.", t->dead_lettered);
    counter1(o, "auditq_recovered_total",
             "Jobs this process returned to their queue from workers that died.", v->recovered);
    counter1(o, "auditq_batches_total", "Batches this process wrote and acknowledged.", t->batches);
    counter1(o, "auditq_pg_write_errors_total",
             "Batch writes to PostgreSQL that failed and were retried (server away, timeouts).",
             t->write_errors);
    counter1(o, "auditq_pg_transactions_total",
             "PostgreSQL transactions this process tried for batch writes: one per batch "
             "(rows PostgreSQL refuses are isolated inside it), more only with write_method=insert "
             "(O(log n) per bad row).",
             t->pg_transactions);
    counter1(o, "auditq_pg_bisections_total",
             "Steps spent isolating rows PostgreSQL refused: savepoint probes of a range inside "
             "the batch's transaction, or splits of a failing range into two transactions.",
             t->pg_bisections);
    counter1(o, "auditq_pg_round_trips_total",
             "Requests this process sent PostgreSQL for batch writes and waited on: 3 per clean "
             "batch with write_method=copy, plus one per probe (at most ceil(log2 n)+1 per bad row).",
             t->pg_round_trips);
    counter1(o, "auditq_released_total",
             "Jobs this process's writer threads gave back to the front of their queue unwritten, "
             "because their PostgreSQL could not take writes for pg_release_after_ms (or at "
             "shutdown): a healthy worker writes them.", t->released);
    family(o, "auditq_config_reloads_total", "counter",
           "SIGHUP config reloads, by outcome (error: the old configuration was kept).");
    put(o, "auditq_config_reloads_total{result=\"ok\"} %" PRIu64 "\n", v->reloads_ok);
    put(o, "auditq_config_reloads_total{result=\"error\"} %" PRIu64 "\n", v->reloads_failed);
    gauge1(o, "auditq_worker_inflight_jobs", "Jobs this process holds in flight right now.",
           (long long)t->inflight);

    histogram(o, "auditq_batch_size", "Jobs per batch fetched by this process.",
              metrics_batch_bounds, METRICS_BATCH_BUCKETS, v->threads, v->nthreads,
              offsetof(metrics_thread, batch_bucket), offsetof(metrics_thread, batch_sum), 1.0, 0);
    histogram(o, "auditq_pg_write_duration_seconds",
              "Time to write and commit one batch in PostgreSQL (successful writes).",
              metrics_write_bounds, METRICS_WRITE_BUCKETS, v->threads, v->nthreads,
              offsetof(metrics_thread, write_bucket), offsetof(metrics_thread, write_sum_us), 1e-6, 6);
}

static void render_threads(out *o, const metrics_view *v)
{
    family(o, "auditq_thread_state", "gauge",
           "What each writer thread is doing: 1 for its current state, 0 for the others.");
    for (int i = 0; i < v->nthreads; i++) {
        int st = atomic_load_explicit(&v->threads[i].state, RLX);
        for (int s = 0; s < MST_COUNT; s++)
            put(o, "auditq_thread_state{thread=\"%d\",state=\"%s\"} %d\n", i, state_names[s], s == st);
    }
    family(o, "auditq_thread_pg_connected", "gauge",
           "1 if the writer thread's PostgreSQL connection was live at its last use or check.");
    for (int i = 0; i < v->nthreads; i++)
        put(o, "auditq_thread_pg_connected{thread=\"%d\"} %d\n", i,
            atomic_load_explicit(&v->threads[i].pg_up, RLX) != 0);
    family(o, "auditq_thread_redis_connected", "gauge",
           "1 if the writer thread's Redis connection was live at its last use.");
    for (int i = 0; i < v->nthreads; i++)
        put(o, "auditq_thread_redis_connected{thread=\"%d\"} %d\n", i,
            atomic_load_explicit(&v->threads[i].redis_up, RLX) != 0);
    family(o, "auditq_thread_last_batch_timestamp_seconds", "gauge",
           "When the writer thread last acknowledged a batch, seconds since the Unix epoch; "
           "0 = never.");
    for (int i = 0; i < v->nthreads; i++)
        put(o, "auditq_thread_last_batch_timestamp_seconds{thread=\"%d\"} %.3f\n", i,
            us_to_s(atomic_load_explicit(&v->threads[i].last_batch_us, RLX)));
}

static void render_sample(out *o, const metrics_view *v)
{
    const metrics_queue_sample *s = v->sample;

    gauge1(o, "auditq_queue_sample_ok",
           "1 if the last read of the queue numbers from Redis succeeded (it runs every second).",
           v->sample_ok);
    if (s == NULL)
        return; /* never read: no numbers rather than made-up zeros */
    family(o, "auditq_queue_sample_age_seconds", "gauge",
           "Age of the queue numbers below (time since the last successful read from Redis).");
    put(o, "auditq_queue_sample_age_seconds %.3f\n",
        v->now_us > v->sample_us ? us_to_s(v->now_us - v->sample_us) : 0.0);

    family(o, "auditq_queue_depth", "gauge", "Jobs waiting in each priority queue (all workers).");
    for (int p = 0; p < AQ_PRIORITIES; p++)
        put(o, "auditq_queue_depth{priority=\"%s\"} %lld\n", prio_names[p], s->depth[p]);
    family(o, "auditq_queue_oldest_age_seconds", "gauge",
           "Age of the oldest job waiting in each queue (Redis time minus the event's "
           "occurred_at); 0 when the queue is empty.");
    for (int p = 0; p < AQ_PRIORITIES; p++)
        put(o, "auditq_queue_oldest_age_seconds{priority=\"%s\"} %.3f\n", prio_names[p],
            s->oldest_age_ms[p] > 0 ? (double)s->oldest_age_ms[p] / 1000.0 : 0.0);
    gauge1(o, "auditq_inflight_jobs",
           "Jobs in flight in all registered workers (fetched, not yet acknowledged).", s->inflight);
    gauge1(o, "auditq_retry_jobs", "Jobs waiting for a delayed retry (all workers).", s->retry);
    gauge1(o, "auditq_dead_jobs", "Records in the dead-letter list.", s->dead);
    gauge1(o, "auditq_workers_live",
           "Workers whose heartbeat is younger than heartbeat_timeout_ms.", s->workers_live);
    gauge1(o, "auditq_workers_registered",
           "Workers registered in Redis, live or awaiting recovery.", s->workers_registered);

    counter1(o, "auditq_cluster_processed_total",
             "Jobs written by all workers of the namespace ({ns}:stats processed).",
             (uint64_t)s->processed);
    counter1(o, "auditq_cluster_failed_total",
             "Jobs retried or dead-lettered by all workers ({ns}:stats failed).", (uint64_t)s->failed);
    counter1(o, "auditq_cluster_retried_total",
             "Delayed retries scheduled by all workers ({ns}:stats retried).", (uint64_t)s->retried);
    counter1(o, "auditq_cluster_recovered_total",
             "Jobs returned to a queue from dead workers ({ns}:stats recovered).",
             (uint64_t)s->recovered);
    counter1(o, "auditq_cluster_dead_lettered_total",
             "Jobs dead-lettered by all workers ({ns}:stats dead_lettered).",
             (uint64_t)s->dead_lettered);
    counter1(o, "auditq_cluster_dead_trimmed_total",
             "Dead-letter records dropped by dead_letter_max ({ns}:stats dead_trimmed).",
             (uint64_t)s->dead_trimmed);
}

static void render_wrong(out *o, const metrics_view *v)
{
    char key[600];

    family(o, "auditq_redis_key_wrong_type", "gauge",
           "1 while a Redis key auditq uses holds another type than it needs (type: what it holds, "
           "expected: what auditq needs; the worker log and /readyz give the fix), 0 once fixed. "
           "Only what uses the key waits.");
    for (size_t i = 0; i < v->nwrong; i++)
        put(o, "auditq_redis_key_wrong_type{key=\"%s\",type=\"%s\",expected=\"%s\"} %d\n",
            label_esc(key, sizeof key, v->wrong[i].key),
            v->wrong[i].type[0] ? v->wrong[i].type : "unknown", v->wrong[i].expected,
            v->wrong[i].current != 0);
}

int metrics_render(const metrics_view *v, aq_buf *b)
{
    out o = { b, 0 };
    metrics_totals t;

    metrics_sum(v->threads, v->nthreads, &t);
    render_process(&o, v, &t);
    render_threads(&o, v);
    render_sample(&o, v);
    render_wrong(&o, v);
    return o.oom ? -1 : 0;
}
