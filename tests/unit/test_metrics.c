/* test_metrics.c -- worker/metrics.c: the exact Prometheus text for a
 * known state (two threads, one Redis sample), bucket edges (le is
 * inclusive), label escaping, what is left out before the first Redis
 * sample, and the histogram invariant (+Inf bucket == _count) while writer
 * threads keep observing during a render (run it under TSan too). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(const metrics_view *v)
{
    aq_buf b = { 0 };
    assert_int_equal(metrics_render(v, &b), 0);
    assert_int_equal(aq_buf_append(&b, "", 1), 0);
    return b.data;
}

/* The line "name value" (or "name{labels} value") of text, or fail. */
static void assert_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (strstr(text, want) == NULL)
        fail_msg("missing line '%s' in\n%s", line, text);
}

static void fill_threads(metrics_thread *th)
{
    /* thread 0: two batches (3 and 1000 jobs), one write each */
    atomic_store(&th[0].processed, 1000);
    atomic_store(&th[0].failed, 3);
    atomic_store(&th[0].retried, 2);
    atomic_store(&th[0].dead_lettered, 1);
    atomic_store(&th[0].batches, 2);
    atomic_store(&th[0].state, MST_IDLE);
    atomic_store(&th[0].pg_up, 1);
    atomic_store(&th[0].redis_up, 1);
    atomic_store(&th[0].last_batch_us, 1767225600123000LL);
    metrics_observe_batch(&th[0], 3);
    metrics_observe_batch(&th[0], 1000);
    metrics_observe_write(&th[0], 1000);     /* exactly 0.001 s: le="0.001" */
    metrics_observe_write(&th[0], 2500001);  /* just over 2.5 s: le="5" */
    /* thread 1: one batch of 1, in flight, writing, PostgreSQL down */
    atomic_store(&th[1].inflight, 1);
    atomic_store(&th[1].state, MST_WRITING);
    atomic_store(&th[1].write_errors, 4);
    /* 2 + 1 transactions: thread 0 wrote 2 clean batches (3 round trips
     * each); thread 1 isolated a refused last row in a batch of 4 inside
     * its transaction (2 probes, then a bare COMMIT: 3 + 3 round trips) */
    atomic_store(&th[0].pg_transactions, 2);
    atomic_store(&th[1].pg_transactions, 1);
    atomic_store(&th[1].pg_bisections, 2);
    atomic_store(&th[0].pg_round_trips, 6);
    atomic_store(&th[1].pg_round_trips, 6);
    metrics_observe_batch(&th[1], 1);
    /* thread 1 gave back a batch of 250 it could not write (pg_release_after_ms) */
    atomic_store(&th[1].released, 250);
}

static const char expected_full[] =
    "# HELP auditq_worker_info Identity of this worker process; the value is always 1.\n"
    "# TYPE auditq_worker_info gauge\n"
    "auditq_worker_info{version=\"0.1.0\",worker_id=\"h\\\"o\\\\st:7:abc\",namespace=\"ns\"} 1\n"
    "# HELP auditq_worker_threads Writer threads of this worker process.\n"
    "# TYPE auditq_worker_threads gauge\n"
    "auditq_worker_threads 2\n"
    "# HELP auditq_worker_start_time_seconds Start time of this worker process, seconds since the Unix epoch.\n"
    "# TYPE auditq_worker_start_time_seconds gauge\n"
    "auditq_worker_start_time_seconds 1767225600.000\n"
    "# HELP auditq_ready 1 if this worker is ready (Redis sampled recently and a PostgreSQL connection is live), as GET /readyz answers.\n"
    "# TYPE auditq_ready gauge\n"
    "auditq_ready 1\n"
    "# HELP auditq_processed_total Jobs this process wrote to PostgreSQL and acknowledged (re-deliveries of stored events included).\n"
    "# TYPE auditq_processed_total counter\n"
    "auditq_processed_total 1000\n"
    "# HELP auditq_failed_total Jobs this process could not store: scheduled for retry or dead-lettered.\n"
    "# TYPE auditq_failed_total counter\n"
    "auditq_failed_total 3\n"
    "# HELP auditq_retried_total Jobs this process scheduled for a delayed retry after PostgreSQL rejected them.\n"
    "# TYPE auditq_retried_total counter\n"
    "auditq_retried_total 2\n"
    "# HELP auditq_dead_lettered_total Jobs this process moved to the dead-letter list.\n"
    "# TYPE auditq_dead_lettered_total counter\n"
    "auditq_dead_lettered_total 1\n"
    "# HELP auditq_recovered_total Jobs this process returned to their queue from workers that died.\n"
    "# TYPE auditq_recovered_total counter\n"
    "auditq_recovered_total 7\n"
    "# HELP auditq_batches_total Batches this process wrote and acknowledged.\n"
    "# TYPE auditq_batches_total counter\n"
    "auditq_batches_total 2\n"
    "# HELP auditq_pg_write_errors_total Batch writes to PostgreSQL that failed and were retried (server away, timeouts).\n"
    "# TYPE auditq_pg_write_errors_total counter\n"
    "auditq_pg_write_errors_total 4\n"
    "# HELP auditq_pg_transactions_total PostgreSQL transactions this process tried for batch writes: one per batch (rows PostgreSQL refuses are isolated inside it), more only with write_method=insert (O(log n) per bad row).\n"
    "# TYPE auditq_pg_transactions_total counter\n"
    "auditq_pg_transactions_total 3\n"
    "# HELP auditq_pg_bisections_total Steps spent isolating rows PostgreSQL refused: savepoint probes of a range inside the batch's transaction, or splits of a failing range into two transactions.\n"
    "# TYPE auditq_pg_bisections_total counter\n"
    "auditq_pg_bisections_total 2\n"
    "# HELP auditq_pg_round_trips_total Requests this process sent PostgreSQL for batch writes and waited on: 3 per clean batch with write_method=copy, plus one per probe (at most ceil(log2 n)+1 per bad row).\n"
    "# TYPE auditq_pg_round_trips_total counter\n"
    "auditq_pg_round_trips_total 12\n"
    "# HELP auditq_released_total Jobs this process's writer threads gave back to the front of their queue unwritten, because their PostgreSQL could not take writes for pg_release_after_ms (or at shutdown): a healthy worker writes them.\n"
    "# TYPE auditq_released_total counter\n"
    "auditq_released_total 250\n"
    "# HELP auditq_config_reloads_total SIGHUP config reloads, by outcome (error: the old configuration was kept).\n"
    "# TYPE auditq_config_reloads_total counter\n"
    "auditq_config_reloads_total{result=\"ok\"} 5\n"
    "auditq_config_reloads_total{result=\"error\"} 1\n"
    "# HELP auditq_worker_inflight_jobs Jobs this process holds in flight right now.\n"
    "# TYPE auditq_worker_inflight_jobs gauge\n"
    "auditq_worker_inflight_jobs 1\n"
    "# HELP auditq_batch_size Jobs per batch fetched by this process.\n"
    "# TYPE auditq_batch_size histogram\n"
    "auditq_batch_size_bucket{le=\"1\"} 1\n"
    "auditq_batch_size_bucket{le=\"5\"} 2\n"
    "auditq_batch_size_bucket{le=\"10\"} 2\n"
    "auditq_batch_size_bucket{le=\"50\"} 2\n"
    "auditq_batch_size_bucket{le=\"100\"} 2\n"
    "auditq_batch_size_bucket{le=\"500\"} 2\n"
    "auditq_batch_size_bucket{le=\"1000\"} 3\n"
    "auditq_batch_size_bucket{le=\"5000\"} 3\n"
    "auditq_batch_size_bucket{le=\"10000\"} 3\n"
    "auditq_batch_size_bucket{le=\"50000\"} 3\n"
    "auditq_batch_size_bucket{le=\"100000\"} 3\n"
    "auditq_batch_size_bucket{le=\"+Inf\"} 3\n"
    "auditq_batch_size_sum 1004\n"
    "auditq_batch_size_count 3\n"
    "# HELP auditq_pg_write_duration_seconds Time to write and commit one batch in PostgreSQL (successful writes).\n"
    "# TYPE auditq_pg_write_duration_seconds histogram\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.001\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.0025\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.005\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.01\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.025\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.05\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.1\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.25\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"0.5\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"1\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"2.5\"} 1\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"5\"} 2\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"10\"} 2\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"30\"} 2\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"60\"} 2\n"
    "auditq_pg_write_duration_seconds_bucket{le=\"+Inf\"} 2\n"
    "auditq_pg_write_duration_seconds_sum 2.501001\n"
    "auditq_pg_write_duration_seconds_count 2\n"
    "# HELP auditq_thread_state What each writer thread is doing: 1 for its current state, 0 for the others.\n"
    "# TYPE auditq_thread_state gauge\n"
    "auditq_thread_state{thread=\"0\",state=\"starting\"} 0\n"
    "auditq_thread_state{thread=\"0\",state=\"idle\"} 1\n"
    "auditq_thread_state{thread=\"0\",state=\"fetching\"} 0\n"
    "auditq_thread_state{thread=\"0\",state=\"writing\"} 0\n"
    "auditq_thread_state{thread=\"0\",state=\"settling\"} 0\n"
    "auditq_thread_state{thread=\"0\",state=\"backoff\"} 0\n"
    "auditq_thread_state{thread=\"0\",state=\"stopped\"} 0\n"
    "auditq_thread_state{thread=\"0\",state=\"parked\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"starting\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"idle\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"fetching\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"writing\"} 1\n"
    "auditq_thread_state{thread=\"1\",state=\"settling\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"backoff\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"stopped\"} 0\n"
    "auditq_thread_state{thread=\"1\",state=\"parked\"} 0\n"
    "# HELP auditq_thread_pg_connected 1 if the writer thread's PostgreSQL connection was live at its last use or check.\n"
    "# TYPE auditq_thread_pg_connected gauge\n"
    "auditq_thread_pg_connected{thread=\"0\"} 1\n"
    "auditq_thread_pg_connected{thread=\"1\"} 0\n"
    "# HELP auditq_thread_redis_connected 1 if the writer thread's Redis connection was live at its last use.\n"
    "# TYPE auditq_thread_redis_connected gauge\n"
    "auditq_thread_redis_connected{thread=\"0\"} 1\n"
    "auditq_thread_redis_connected{thread=\"1\"} 0\n"
    "# HELP auditq_thread_last_batch_timestamp_seconds When the writer thread last acknowledged a batch, seconds since the Unix epoch; 0 = never.\n"
    "# TYPE auditq_thread_last_batch_timestamp_seconds gauge\n"
    "auditq_thread_last_batch_timestamp_seconds{thread=\"0\"} 1767225600.123\n"
    "auditq_thread_last_batch_timestamp_seconds{thread=\"1\"} 0.000\n"
    "# HELP auditq_queue_sample_ok 1 if the last read of the queue numbers from Redis succeeded (it runs every second).\n"
    "# TYPE auditq_queue_sample_ok gauge\n"
    "auditq_queue_sample_ok 1\n"
    "# HELP auditq_queue_sample_age_seconds Age of the queue numbers below (time since the last successful read from Redis).\n"
    "# TYPE auditq_queue_sample_age_seconds gauge\n"
    "auditq_queue_sample_age_seconds 0.250\n"
    "# HELP auditq_queue_depth Jobs waiting in each priority queue (all workers).\n"
    "# TYPE auditq_queue_depth gauge\n"
    "auditq_queue_depth{priority=\"critical\"} 0\n"
    "auditq_queue_depth{priority=\"high\"} 12\n"
    "auditq_queue_depth{priority=\"normal\"} 3400\n"
    "auditq_queue_depth{priority=\"low\"} 5\n"
    "# HELP auditq_queue_oldest_age_seconds Age of the oldest job waiting in each queue (Redis time minus the event's occurred_at); 0 when the queue is empty.\n"
    "# TYPE auditq_queue_oldest_age_seconds gauge\n"
    "auditq_queue_oldest_age_seconds{priority=\"critical\"} 0.000\n"
    "auditq_queue_oldest_age_seconds{priority=\"high\"} 1.500\n"
    "auditq_queue_oldest_age_seconds{priority=\"normal\"} 93.001\n"
    "auditq_queue_oldest_age_seconds{priority=\"low\"} 0.000\n"
    "# HELP auditq_inflight_jobs Jobs in flight in all registered workers (fetched, not yet acknowledged).\n"
    "# TYPE auditq_inflight_jobs gauge\n"
    "auditq_inflight_jobs 2000\n"
    "# HELP auditq_retry_jobs Jobs waiting for a delayed retry (all workers).\n"
    "# TYPE auditq_retry_jobs gauge\n"
    "auditq_retry_jobs 6\n"
    "# HELP auditq_dead_jobs Records in the dead-letter list.\n"
    "# TYPE auditq_dead_jobs gauge\n"
    "auditq_dead_jobs 9\n"
    "# HELP auditq_workers_live Workers whose heartbeat is younger than heartbeat_timeout_ms.\n"
    "# TYPE auditq_workers_live gauge\n"
    "auditq_workers_live 2\n"
    "# HELP auditq_workers_registered Workers registered in Redis, live or awaiting recovery.\n"
    "# TYPE auditq_workers_registered gauge\n"
    "auditq_workers_registered 3\n"
    "# HELP auditq_cluster_processed_total Jobs written by all workers of the namespace ({ns}:stats processed).\n"
    "# TYPE auditq_cluster_processed_total counter\n"
    "auditq_cluster_processed_total 123456789\n"
    "# HELP auditq_cluster_failed_total Jobs retried or dead-lettered by all workers ({ns}:stats failed).\n"
    "# TYPE auditq_cluster_failed_total counter\n"
    "auditq_cluster_failed_total 11\n"
    "# HELP auditq_cluster_retried_total Delayed retries scheduled by all workers ({ns}:stats retried).\n"
    "# TYPE auditq_cluster_retried_total counter\n"
    "auditq_cluster_retried_total 8\n"
    "# HELP auditq_cluster_recovered_total Jobs returned to a queue from dead workers ({ns}:stats recovered).\n"
    "# TYPE auditq_cluster_recovered_total counter\n"
    "auditq_cluster_recovered_total 70\n"
    "# HELP auditq_cluster_dead_lettered_total Jobs dead-lettered by all workers ({ns}:stats dead_lettered).\n"
    "# TYPE auditq_cluster_dead_lettered_total counter\n"
    "auditq_cluster_dead_lettered_total 3\n"
    "# HELP auditq_cluster_dead_trimmed_total Dead-letter records dropped by dead_letter_max ({ns}:stats dead_trimmed).\n"
    "# TYPE auditq_cluster_dead_trimmed_total counter\n"
    "auditq_cluster_dead_trimmed_total 1\n"
    "# HELP auditq_redis_key_wrong_type 1 while a Redis key auditq uses holds another type than it needs (type: what it holds, expected: what auditq needs; the worker log and /readyz give the fix), 0 once fixed. Only what uses the key waits.\n"
    "# TYPE auditq_redis_key_wrong_type gauge\n"
    "auditq_redis_key_wrong_type{key=\"{ns}:queue:low\",type=\"string\",expected=\"list\"} 1\n"
    "auditq_redis_key_wrong_type{key=\"{ns}:worker:a\\\"b\",type=\"unknown\",expected=\"hash\"} 0\n";

static void test_render_exact(void **state)
{
    metrics_thread th[2];
    metrics_queue_sample s;
    (void)state;

    /* A key currently wrong, and one fixed since (its type unknown: seen
     * only as a WRONGTYPE error); the key's quote is escaped. */
    metrics_wrongkey wrong[2] = {
        { "{ns}:queue:low", "string", "list", 1 },
        { "{ns}:worker:a\"b", "", "hash", 0 },
    };
    memset(th, 0, sizeof th);
    fill_threads(th);
    memset(&s, 0, sizeof s);
    s.depth[1] = 12;
    s.depth[2] = 3400;
    s.depth[3] = 5;
    s.oldest_age_ms[0] = -1;
    s.oldest_age_ms[1] = 1500;
    s.oldest_age_ms[2] = 93001;
    s.oldest_age_ms[3] = 0;
    s.inflight = 2000;
    s.retry = 6;
    s.dead = 9;
    s.workers_live = 2;
    s.workers_registered = 3;
    s.processed = 123456789;
    s.failed = 11;
    s.retried = 8;
    s.recovered = 70;
    s.dead_lettered = 3;
    s.dead_trimmed = 1;
    metrics_view v = {
        .version = "0.1.0", .worker_id = "h\"o\\st:7:abc", .namespace_ = "ns",
        .start_us = 1767225600000000LL, .now_us = 1767225700000000LL, .threads = th, .nthreads = 2,
        .recovered = 7, .reloads_ok = 5, .reloads_failed = 1, .ready = 1, .sample = &s,
        .sample_ok = 1, .sample_us = 1767225699750000LL, .wrong = wrong, .nwrong = 2,
    };
    char *text = render(&v);
    assert_string_equal(text, expected_full);
    free(text);

    assert_int_equal(metrics_oldest_ms(&s), 93001);
    assert_int_equal(metrics_queued(&s), 3417);
}

/* Before the first successful Redis read there are no queue numbers at
 * all (zeros would look like an empty, healthy queue). */
static void test_render_no_sample(void **state)
{
    metrics_thread th[1];
    (void)state;
    memset(th, 0, sizeof th);
    metrics_view v = {
        .version = "0.1.0", .worker_id = "w", .namespace_ = "ns", .threads = th, .nthreads = 1,
        .sample = NULL, .sample_ok = 0,
    };
    char *text = render(&v);
    assert_line(text, "auditq_queue_sample_ok 0");
    assert_line(text, "auditq_ready 0");
    assert_line(text, "auditq_thread_state{thread=\"0\",state=\"starting\"} 1");
    assert_null(strstr(text, "auditq_queue_depth"));
    assert_null(strstr(text, "auditq_queue_sample_age_seconds"));
    assert_null(strstr(text, "auditq_cluster_"));
    /* Ends with the sample_ok family, then the wrong-type family with no
     * key (nothing found wrong). */
    const char *tail = "# TYPE auditq_queue_sample_ok gauge\nauditq_queue_sample_ok 0\n"
                       "# HELP auditq_redis_key_wrong_type 1 while a Redis key auditq uses holds another "
                       "type than it needs (type: what it holds, expected: what auditq needs; the worker "
                       "log and /readyz give the fix), 0 once fixed. Only what uses the key waits.\n"
                       "# TYPE auditq_redis_key_wrong_type gauge\n";
    assert_string_equal(text + strlen(text) - strlen(tail), tail);
    free(text);
}

static void test_bucket_edges(void **state)
{
    static const struct {
        size_t jobs;
        int bucket;
    } b[] = {
        { 0, 0 }, { 1, 0 }, { 2, 1 }, { 5, 1 }, { 6, 2 }, { 1000, 6 }, { 1001, 7 },
        { 100000, 10 }, { 100001, 11 },
    };
    static const struct {
        int64_t us;
        int bucket;
    } w[] = {
        { -5, 0 }, { 0, 0 }, { 1000, 0 }, { 1001, 1 }, { 60000000, 14 }, { 60000001, 15 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        metrics_thread m;
        memset(&m, 0, sizeof m);
        metrics_observe_batch(&m, b[i].jobs);
        for (int k = 0; k <= METRICS_BATCH_BUCKETS; k++)
            if ((int)atomic_load(&m.batch_bucket[k]) != (k == b[i].bucket))
                fail_msg("batch of %zu: bucket %d holds %d", b[i].jobs, k, (int)atomic_load(&m.batch_bucket[k]));
    }
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        metrics_thread m;
        memset(&m, 0, sizeof m);
        metrics_observe_write(&m, w[i].us);
        for (int k = 0; k <= METRICS_WRITE_BUCKETS; k++)
            if ((int)atomic_load(&m.write_bucket[k]) != (k == w[i].bucket))
                fail_msg("write of %lld us: bucket %d holds %d", (long long)w[i].us, k,
                         (int)atomic_load(&m.write_bucket[k]));
    }
    assert_null(metrics_state_name(-1));
    assert_null(metrics_state_name(MST_COUNT));
    assert_string_equal(metrics_state_name(MST_BACKOFF), "backoff");
    assert_string_equal(metrics_state_name(MST_PARKED), "parked");
}

/* ---- concurrent observers ------------------------------------------------- */

#define OBS_PER_THREAD 200000

static atomic_int go;

static void *observer(void *arg)
{
    metrics_thread *m = arg;
    while (!atomic_load(&go))
        ;
    for (int i = 0; i < OBS_PER_THREAD; i++) {
        metrics_observe_batch(m, (size_t)(i % 2000));
        metrics_observe_write(m, i % 3000000);
        atomic_fetch_add(&m->processed, 1);
    }
    return NULL;
}

/* "name value" from text as an unsigned number. */
static unsigned long long value_of(const char *text, const char *name)
{
    char key[160];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    if (p == NULL)
        fail_msg("no %s", name);
    return strtoull(p + strlen(key), NULL, 10);
}

/* The observers and what they write are static, not on the test's stack, and
 * observers_teardown joins whatever was started: cmocka runs the teardown
 * also when an assertion fails (it longjmps out of the test body), so no
 * observer thread outlives the test or writes into a dead stack frame. */
static metrics_thread th[2];
static pthread_t tid[2];
static int nstarted;

static int observers_teardown(void **state)
{
    (void)state;
    atomic_store(&go, 1); /* release observers still spinning before the start */
    for (int i = 0; i < nstarted; i++)
        pthread_join(tid[i], NULL);
    nstarted = 0;
    return 0;
}

static void test_render_while_observing(void **state)
{
    int renders = 0;
    (void)state;

    memset(th, 0, sizeof th);
    atomic_store(&go, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&tid[i], NULL, observer, &th[i]), 0);
        nstarted = i + 1;
    }
    atomic_store(&go, 1);
    metrics_view v = { .version = "t", .worker_id = "w", .namespace_ = "ns", .threads = th, .nthreads = 2 };
    for (;;) {
        char *text = render(&v);
        unsigned long long done = value_of(text, "auditq_processed_total");
        /* Whatever the interleaving, each histogram is self-consistent. */
        assert_int_equal(value_of(text, "auditq_batch_size_bucket{le=\"+Inf\"}"),
                         value_of(text, "auditq_batch_size_count"));
        assert_int_equal(value_of(text, "auditq_pg_write_duration_seconds_bucket{le=\"+Inf\"}"),
                         value_of(text, "auditq_pg_write_duration_seconds_count"));
        free(text);
        renders++;
        if (done == 2ULL * OBS_PER_THREAD)
            break;
    }
    observers_teardown(NULL);
    char *text = render(&v);
    assert_int_equal(value_of(text, "auditq_batch_size_count"), 2 * OBS_PER_THREAD);
    assert_int_equal(value_of(text, "auditq_pg_write_duration_seconds_count"), 2 * OBS_PER_THREAD);
    /* sum of i % 2000 over 0..199999 = 100 * (0 + ... + 1999), per thread */
    assert_int_equal(value_of(text, "auditq_batch_size_sum"), 2ULL * 100 * 1999 * 2000 / 2);
    free(text);
    assert_true(renders >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_render_no_sample),
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test_teardown(test_render_while_observing, observers_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
