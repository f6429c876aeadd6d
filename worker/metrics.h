/* metrics.h -- the worker's numbers, rendered as Prometheus text exposition
 * format 0.0.4 for GET /metrics (worker/http.h serves it).
 *
 * Two sources:
 *   - this process: each writer thread owns one metrics_thread and updates
 *     it with relaxed atomic adds and stores (no lock, nothing shared with
 *     the other writers); the main thread only reads them, when it renders
 *     or logs its summary;
 *   - the whole namespace: a metrics_queue_sample read from Redis by the
 *     main thread on a timer (worker/sample.h), never on a scrape, so a
 *     scrape costs no Redis round trip and cannot stall on Redis.
 *
 * Histograms keep per-bucket (non-cumulative) counts. The renderer adds
 * them up and derives _count from the buckets, so a scrape that races a
 * writer still satisfies the format's rule that the +Inf bucket equals
 * _count; _sum may be one observation ahead or behind, which the format
 * allows.
 */
#ifndef AQ_METRICS_H
#define AQ_METRICS_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "keys.h"

/* What a writer thread is doing right now (auditq_thread_state). */
typedef enum metrics_state {
    MST_STARTING = 0, /* not yet through its first fetch */
    MST_IDLE,         /* every queue was empty: sleeping before the next poll */
    MST_FETCHING,     /* running the fetch script */
    MST_WRITING,      /* writing a batch to PostgreSQL */
    MST_SETTLING,     /* acknowledging a batch in Redis */
    MST_BACKOFF,      /* waiting to retry after a Redis or PostgreSQL failure */
    MST_STOPPED,      /* thread has exited */
    MST_PARKED,       /* gave its batch back (its PostgreSQL cannot take writes):
                         holds nothing, fetches nothing, probes once a second */
    MST_COUNT
} metrics_state;

/* Name of a state for the state="..." label; NULL if out of range. */
const char *metrics_state_name(int state);

/* Bucket upper bounds. Batch sizes are bounded by batch_size (<= 100000);
 * write times span a 1-row commit (~1 ms) to a statement_timeout. */
#define METRICS_BATCH_BUCKETS 11
#define METRICS_WRITE_BUCKETS 15
extern const double metrics_batch_bounds[METRICS_BATCH_BUCKETS];  /* jobs */
extern const double metrics_write_bounds[METRICS_WRITE_BUCKETS];  /* seconds */

/* One writer thread's numbers. Zero-initialise (calloc); written only by
 * its thread, read by the main thread. */
typedef struct metrics_thread {
    /* counters */
    atomic_uint_fast64_t processed;     /* jobs written and acknowledged */
    atomic_uint_fast64_t failed;        /* jobs retried or dead-lettered */
    atomic_uint_fast64_t retried;
    atomic_uint_fast64_t dead_lettered;
    atomic_uint_fast64_t batches;       /* batches settled */
    atomic_uint_fast64_t write_errors;  /* failed PostgreSQL write attempts */
    atomic_uint_fast64_t pg_transactions; /* transactions tried (pgw_stats.transactions) */
    atomic_uint_fast64_t pg_bisections;   /* probes and splits while isolating bad rows */
    atomic_uint_fast64_t pg_round_trips;  /* write round trips (pgw_stats.round_trips) */
    atomic_uint_fast64_t released;      /* jobs given back to their queue unwritten */
    /* gauges */
    atomic_uint_fast64_t inflight;      /* jobs of the batch in hand */
    atomic_int state;                   /* metrics_state */
    atomic_int pg_up;                   /* 1: PostgreSQL connection live */
    atomic_int redis_up;                /* 1: Redis connection live */
    atomic_int pg_fault;                /* pgw_fault of the last failure; 0 while pg_up */
    atomic_int_fast64_t last_batch_us;  /* wall clock of the last settle; 0 = none */
    /* histograms: per-bucket counts, [BUCKETS] is the +Inf overflow */
    atomic_uint_fast64_t batch_bucket[METRICS_BATCH_BUCKETS + 1];
    atomic_uint_fast64_t batch_sum;     /* jobs */
    atomic_uint_fast64_t write_bucket[METRICS_WRITE_BUCKETS + 1];
    atomic_uint_fast64_t write_sum_us;  /* microseconds */
} metrics_thread;

/* Writer-thread side (relaxed atomics; cheap enough for every batch). */
void metrics_set_state(metrics_thread *m, metrics_state s);
void metrics_observe_batch(metrics_thread *m, size_t jobs);
void metrics_observe_write(metrics_thread *m, int64_t us);

/* The process totals over all threads (main thread: summary, heartbeat). */
typedef struct metrics_totals {
    uint64_t processed, failed, retried, dead_lettered, batches, write_errors, inflight;
    uint64_t pg_transactions, pg_bisections, pg_round_trips, released;
    int pg_up_threads, redis_up_threads;
} metrics_totals;
void metrics_sum(const metrics_thread *th, int n, metrics_totals *out);

/* A Redis key holding another type than auditq needs (worker/keyhealth.h). */
#define METRICS_WRONG_MAX 16
typedef struct metrics_wrongkey {
    char key[AQ_KEY_MAX + 64];
    char type[16];                        /* what TYPE said; "" = unknown */
    char expected[8];                     /* list, hash or zset */
    int current;                          /* 1: still wrong; 0: fixed since */
} metrics_wrongkey;

/* The namespace as read from Redis by one sample (see worker/sample.h). */
typedef struct metrics_queue_sample {
    int64_t redis_time_ms;                /* Redis TIME at the sample */
    long long depth[AQ_PRIORITIES];
    long long oldest_age_ms[AQ_PRIORITIES]; /* -1: queue empty (or head undecodable) */
    long long inflight, retry, dead;
    long long workers_live, workers_registered;
    /* {ns}:stats, all workers together */
    long long processed, failed, retried, recovered, dead_lettered, dead_trimmed;
    /* keys of the wrong type: their numbers above read as 0 */
    size_t nwrong;
    metrics_wrongkey wrong[METRICS_WRONG_MAX];
} metrics_queue_sample;

/* Everything a render needs. The main thread fills it; pointers are
 * borrowed for the duration of the call. */
typedef struct metrics_view {
    const char *version;
    const char *worker_id;
    const char *namespace_;
    int64_t start_us;                     /* wall clock, process start */
    int64_t now_us;                       /* wall clock, now */
    const metrics_thread *threads;
    int nthreads;
    uint64_t recovered;                   /* jobs this process recovered from dead workers */
    uint64_t reloads_ok, reloads_failed;  /* SIGHUP outcomes */
    int ready;                            /* what /readyz answers: 1 = 200 */
    /* last Redis sample */
    const metrics_queue_sample *sample;   /* NULL: no sample has succeeded yet */
    int sample_ok;                        /* 1: the most recent attempt succeeded */
    int64_t sample_us;                    /* wall clock of the last successful sample */
    /* Redis keys found of the wrong type since start (current or fixed) */
    const metrics_wrongkey *wrong;
    size_t nwrong;
} metrics_view;

/* Appends the exposition text to out (aq_buf: the caller frees out->data).
 * Returns 0, or -1 on OOM (out may hold part of the text). */
int metrics_render(const metrics_view *v, aq_buf *out);

/* The largest queued job age in the sample, in ms; -1 if every queue is empty. */
long long metrics_oldest_ms(const metrics_queue_sample *s);
/* Jobs waiting in the four queues. */
long long metrics_queued(const metrics_queue_sample *s);
#endif
